"""Results JSON → BENCHMARKS.md (tables, targets, PNG plots embedded).

One module per job, each importing only those listed before it:

- ``values``: look values up in a results dict and format them as page text
- ``targets``: the targets and their verdicts (``evaluate_targets``)
- ``figures``: the figure catalogue, where each shown figure is in the JSON
- ``plots``: the PNG plots (matplotlib)
- ``tables``: the Markdown tables
- ``prose``: the paragraphs on the missed targets, and the method
- ``comparison``: the Before / after section, from changes.json
- ``page``: the page laid out and written (``render``)
- ``cli``: ``python -m benchmarks.report benchmarks/results/<name>.json``
"""

# What benchmarks.report offered as a single module stays importable from it, so
# its callers (python -m benchmarks, the tests) need not know the modules.
from benchmarks.report.cli import main
from benchmarks.report.comparison import (
    BEFORE_AFTER_FIGURES,
    CHANGES_FILE,
    comparisons_for,
)
from benchmarks.report.figures import CPU_WINDOWS, FIGURES, FIXED_REFERENCES, PROFILES
from benchmarks.report.page import PAGE, render
from benchmarks.report.prose import SLOW_EXCHANGE_RTT_MS
from benchmarks.report.targets import TARGETS, Target, evaluate_targets
from benchmarks.report.values import SECTION_ORDER

__all__ = [
    "BEFORE_AFTER_FIGURES",
    "CHANGES_FILE",
    "CPU_WINDOWS",
    "FIGURES",
    "FIXED_REFERENCES",
    "PAGE",
    "PROFILES",
    "SECTION_ORDER",
    "SLOW_EXCHANGE_RTT_MS",
    "TARGETS",
    "Target",
    "comparisons_for",
    "evaluate_targets",
    "main",
    "render",
]
