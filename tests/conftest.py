import pytest


@pytest.fixture
def live_db(django_db_setup, django_db_blocker):
    """Database access with real commits and no teardown flush: what a test writes is
    visible to other threads and processes (relay, executors, api). Tests that use
    it isolate themselves by creating their own customers."""
    with django_db_blocker.unblock():
        yield
