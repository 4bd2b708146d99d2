"""Reading a results dict and writing its values as page text: the lookups and
formatters every part of the report shares (so they import nothing else of it).
"""

from __future__ import annotations

import math
from pathlib import Path

# A results file's sections in the order the page names them; the page and the
# Before / after section both list disturbed sections in it.
SECTION_ORDER = (
    "diagnostics",
    "placement",
    "relay",
    "end_to_end",
    "fix",
    "failover",
    "scale",
)


def _get(results: dict, path: str):
    """``a.b.0.c`` → results["a"]["b"][0]["c"], None where anything is missing."""
    node = results
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def _stage(results: dict, prefix: str) -> dict:
    for stage in _get(results, "diagnostics.stages") or []:
        if stage["stage"].startswith(prefix):
            return stage
    return {}


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{(' ' + unit) if unit else ''}"


def _pct(share) -> str:
    return "—" if share is None else f"{share * 100:.0f} %"


def _rel(path: Path, page: Path) -> str:
    try:
        return str(path.resolve().relative_to(page.resolve().parent))
    except ValueError:
        return str(path)


def _code(run: dict) -> str:
    text = f"`{run['git_commit']}`"
    # The measured code first, the benchmark's own files after it.
    changed = sorted(
        run.get("git_uncommitted") or [],
        key=lambda path: path.startswith("benchmarks/") or path == "BENCHMARKS.md",
    )
    if changed:
        shown = ", ".join(changed[:8]) + (", …" if len(changed) > 8 else "")
        text += f" with uncommitted changes to {shown}"
    return text
