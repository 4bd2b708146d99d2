import pytest
from django.conf import settings
from django.test.utils import setup_databases, teardown_databases


@pytest.fixture(scope="session")
def django_db_setup(
    request, django_test_environment, django_db_blocker, django_db_keepdb
):
    """Always create the test database. pytest-django creates only the databases
    that collected tests declare through ``db``/``django_db``; a run of integration
    tests alone (which use ``live_db``) declares none and would otherwise fall
    through to the real database."""
    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            keepdb=django_db_keepdb,
            aliases={"default"},
        )
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=request.config.option.verbose)


@pytest.fixture
def live_db(django_db_setup, django_db_blocker):
    """Database access with real commits and no teardown flush: what a test writes is
    visible to other threads and processes (relay, executors, api). Tests that use
    it isolate themselves by creating their own customers."""
    assert settings.DATABASES["default"]["NAME"].startswith("test_")
    with django_db_blocker.unblock():
        yield
