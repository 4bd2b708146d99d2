"""Local infrastructure for development and tests: ``python -m broker.stack``.

Starts real PostgreSQL, ZooKeeper, Kafka and Redis processes on this machine (no
Docker), or checks external deployments named by environment variables, and writes the
addresses in force to ``<stack dir>/env``. Importing this package starts nothing; the
light entry point for other code is :mod:`broker.stack.env`.
"""
