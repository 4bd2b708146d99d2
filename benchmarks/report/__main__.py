"""``python -m benchmarks.report <results.json>``: the command the page itself
gives for regenerating it; see benchmarks/report/cli.py."""

from benchmarks.report.cli import main

if __name__ == "__main__":
    main()
