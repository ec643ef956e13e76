"""The supervisor ships as one zip archive that a stock Python runs, with one table of ops."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from hangar.agent.supervisor import ARCHIVE_NAME, archive
from hangar.agent.supervisor.sandbox import codes, files, init, processes
from hangar.agent.supervisor.sandbox import wire as proto


def test_the_archive_is_deterministic_and_holds_every_module() -> None:
    data = archive()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names[0] == "__main__.py"
    assert {"hangar_supervisor/wire.py", "hangar_supervisor/init.py"} <= set(names)
    archive.cache_clear()
    assert archive() == data


def test_the_operation_table_is_explicit() -> None:
    assert set(init.OPS) == {"exec", "spawn", "pty", "read", "write", "list", "mkdir", "remove"}
    assert init.OPS["exec"] is processes.op_exec
    assert init.OPS["read"] is files.op_read
    assert codes.NOT_FOUND not in codes.PATH_ERRORS  # the client maps it on its own


def test_a_stock_python_runs_the_archive(tmp_path: Path) -> None:
    """Run as the sandbox runs it (`python3 -I -B supervisor.pyz CONFIG`) and ping it."""
    pyz = tmp_path / ARCHIVE_NAME
    pyz.write_bytes(archive())
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "socket_dir": str(tmp_path),
                "uid": os.getuid(),
                "gid": os.getgid(),
                "user": "nobody",
                "home": str(tmp_path),
                "env": {},
            }
        )
    )
    proc = subprocess.Popen([sys.executable, "-I", "-B", str(pyz), str(config)])
    try:
        path = tmp_path / proto.SOCKET_NAME
        deadline = time.monotonic() + 10
        while not path.exists():
            assert proc.poll() is None, "the supervisor exited"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b'{"op": "ping"}\n')
            head = sock.recv(proto.FRAME.size, socket.MSG_WAITALL)
            kind, size = proto.FRAME.unpack(head)
            body = json.loads(sock.recv(size, socket.MSG_WAITALL))
        assert kind == proto.RESULT
        assert body["ppid"] == proc.pid  # answered by the handler it forked
    finally:
        proc.terminate()
        proc.wait(timeout=10)
