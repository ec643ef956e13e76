"""The short human table of a run."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) < 0.1:
            return f"{value:.3f}"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(doc: dict[str, Any]) -> Table:
    """One row per figure: value, baseline, ratio, target."""
    m = doc["machine"]
    title = (
        f"Hangar benchmarks ({doc['mode']}): {m['nproc']} cores, {m['memory_gib']} GiB, "
        f"kernel {m['kernel']}, cgroup {m['cgroup']}"
    )
    out = Table(title=title, title_justify="left")
    for column in ("figure", "unit", "n", "p50", "p95", "base p50", "base p95", "ratio"):
        out.add_column(column, justify="left" if column == "figure" else "right")
    out.add_column("target")
    for fig in doc["figures"]:
        if "skipped" in fig:
            out.add_row(fig["name"], "", "", "", "", "", "", "", str(fig["skipped"])[:60])
            continue
        out.add_row(
            fig["name"],
            fig["unit"],
            _num(fig["samples"]),
            _num(fig["p50"]),
            _num(fig["p95"]),
            _num(fig["baseline_p50"]),
            _num(fig["baseline_p95"]),
            _num(fig["ratio"]),
            fig["target"],
        )
    return out
