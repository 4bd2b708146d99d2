"""Results JSON → BENCHMARKS.md (tables, targets, PNG plots embedded).

``python -m benchmarks.report benchmarks/results/<name>.json`` regenerates the page
and the plots from a results file alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.report.page import PAGE, render


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__
    )
    parser.add_argument("results", type=Path)
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args()
    print(render(args.results, args.page))
