"""The documentation names only commands and settings the project really has."""

import re
from pathlib import Path

from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "OPERATIONS.md"]


def test_every_manage_py_command_in_the_docs_exists():
    commands = set(get_commands())
    for doc in DOCS:
        for name in re.findall(r"manage\.py (\w+)", doc.read_text()):
            assert name in commands, f"{doc.name}: manage.py {name}"


def test_every_make_target_in_the_docs_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    for doc in DOCS:
        for name in re.findall(r"`make (\w+)", doc.read_text()):
            assert name in targets, f"{doc.name}: make {name}"


def test_every_test_the_security_page_cites_exists():
    """docs/SECURITY.md proves each claim with a test: the test must exist."""
    page = (ROOT / "docs" / "SECURITY.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", page)
    assert cited
    for path, name in cited:
        source = ROOT / path
        assert source.is_file(), path
        if name:
            assert re.search(rf"def {name}\(", source.read_text()), f"{path}::{name}"
    for name in re.findall(r"`(test_\w+)`", page):
        assert any(
            re.search(rf"def {name}\(", test.read_text())
            for test in (ROOT / "tests").rglob("test_*.py")
        ), name
