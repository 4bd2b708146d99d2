#!/usr/bin/env python
"""Django's command-line entry point for every role (api, relay, executor, ...)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings.local")
    if sys.argv[1:2] == ["api"] and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn workers each count their own requests; prometheus_client sums
        # them from files in this directory. It must be set before the library is
        # first imported (Django's checks import it), hence here.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="broker-metrics-"
        )
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
