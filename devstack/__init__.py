"""Local tooling, never shipped in the image: the local stack (``python -m devstack``),
the demo (``manage.py demo``), the process launcher and the one ``wait_until`` that
the demo, the tests and the benchmarks share, and the deploy tests' kustomize.

The stack starts real PostgreSQL, ZooKeeper, Kafka and Redis processes on this
machine (no Docker), or checks external deployments named by environment variables,
and writes the addresses in force to ``<stack dir>/env``. Importing this package
starts nothing; the light entry point for other code is :mod:`devstack.env`.
"""
