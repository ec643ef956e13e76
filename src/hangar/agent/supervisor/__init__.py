"""The in-sandbox supervisor (a stdlib-only program, `sandbox/`) and the agent's client for it.

The supervisor is split by concern (`wire`, `processes`, `files`, `init`) and shipped into each
sandbox as one read-only zip archive that the template's Python runs directly.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

SOURCES = Path(__file__).with_name("sandbox")
ARCHIVE_NAME = "supervisor.pyz"
PACKAGE = "hangar_supervisor"  # its name inside the archive
_MAIN = f"from {PACKAGE}.init import main\n\nmain()\n"
# Fixed timestamps: the same sources always make the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _EPOCH)
    info.external_attr = 0o444 << 16
    archive.writestr(info, data)


@functools.cache
def archive() -> bytes:
    """The supervisor as a runnable zip archive (`python3 -I -B supervisor.pyz CONFIG`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, "__main__.py", _MAIN.encode())
        for module in sorted(SOURCES.glob("*.py")):
            _add(zf, f"{PACKAGE}/{module.name}", module.read_bytes())
    return buffer.getvalue()


__all__ = ["ARCHIVE_NAME", "SOURCES", "archive"]
