"""The local stack run as root in a private directory: PostgreSQL runs as its own
user, which must be able to reach the data directory."""

from devstack import postgres


def test_private_ancestors_get_the_search_bit_only(tmp_path, monkeypatch):
    private = tmp_path / "private"
    stack = private / "checkout" / ".stack"
    stack.mkdir(parents=True)
    private.chmod(0o700)
    monkeypatch.setattr(postgres, "_as_root", lambda: True)

    postgres._allow_traverse_to(stack, within=tmp_path)

    assert private.stat().st_mode & 0o777 == 0o701  # passable, not listable
    assert (private / "checkout").stat().st_mode & 0o001


def test_nothing_changes_when_not_root(tmp_path, monkeypatch):
    private = tmp_path / "private"
    (private / ".stack").mkdir(parents=True)
    private.chmod(0o700)
    monkeypatch.setattr(postgres, "_as_root", lambda: False)

    postgres._allow_traverse_to(private / ".stack", within=tmp_path)

    assert private.stat().st_mode & 0o777 == 0o700
