"""A small closed-loop HTTP/1.1 load generator, run as its own process.

`python -m bench.loadgen --port P --path /x --header 'K: V' --concurrency 32 --duration 8
--out result.json`: `concurrency` keep-alive connections, each sending the next GET as soon
as the previous answer is read. Raw asyncio streams on uvloop (when installed) keep the
generator's own cost per request low; it writes every latency and per-second counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field


@dataclass
class Run:
    """Shared state of one load run."""

    request: bytes
    host: str
    port: int
    measure_from: float
    stop_at: float
    latencies: list[float] = field(default_factory=list)
    windows: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    raise ValueError("response without Content-Length")


async def _worker(run: Run) -> None:
    reader, writer = await asyncio.open_connection(run.host, run.port)
    try:
        while True:
            started = time.perf_counter()
            if started >= run.stop_at:
                return
            writer.write(run.request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(head))
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                run.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(run.host, run.port)
                continue
            done = time.perf_counter()
            if started < run.measure_from:
                continue  # warm-up
            status = int(head[9:12])
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status != 200:
                run.errors += 1
                continue
            run.latencies.append(done - started)
            second = int(done - run.measure_from)
            run.windows[second] = run.windows.get(second, 0) + 1
    finally:
        writer.close()


async def load(
    host: str,
    port: int,
    path: str,
    headers: list[str],
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict[str, object]:
    """Run the load and return its raw results."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    now = time.perf_counter()
    run = Run(
        request="\r\n".join(lines).encode(),
        host=host,
        port=port,
        measure_from=now + warmup,
        stop_at=now + warmup + duration,
    )
    await asyncio.gather(*(_worker(run) for _ in range(concurrency)))
    full = [run.windows.get(s, 0) for s in range(int(duration))]
    return {
        "requests": len(run.latencies),
        "errors": run.errors,
        "statuses": run.statuses,
        "duration_s": duration,
        "rps": len(run.latencies) / duration,
        "windows": full,
        "latencies_s": [round(x, 6) for x in run.latencies],
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        load(
            args.host,
            args.port,
            args.path,
            args.header,
            args.concurrency,
            args.duration,
            args.warmup,
        )
    )
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
