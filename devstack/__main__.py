"""``python -m devstack {up,down,status,env,install}``: the local stack manager.

Exit codes: 0 success; 1 a service failed (message, log path and log tail on
stderr); 2 bad usage; 3 ``status`` found a service not up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devstack import commands


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=(
            "Run PostgreSQL, ZooKeeper, Kafka and Redis locally (state in .stack/, or "
            "$STACK_DIR). A service whose variable (DATABASE_URL, ZOOKEEPER_HOSTS, "
            "KAFKA_BOOTSTRAP_SERVERS, REDIS_URL) is set to another address is "
            "external: only checked, never started or stopped."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser("up", help="install what is missing, start what is not up")
    p_up.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="append the names of the services this call started to FILE",
    )
    p_down = sub.add_parser("down", help="stop the local services")
    p_down.add_argument(
        "--only-from",
        type=Path,
        metavar="FILE",
        help="stop only the services named in FILE (as written by up --record)",
    )
    sub.add_parser("status", help="show each service; exit 3 unless all are up")
    sub.add_parser("env", help="print the env file (export lines)")
    sub.add_parser("install", help="install Debian packages and Java jars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[stack] %(message)s")
    # Client libraries narrate every refused connection while we wait on purpose.
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    if args.command == "up":
        return commands.up(record=args.record)
    if args.command == "down":
        return commands.down(only_from=args.only_from)
    if args.command == "status":
        return commands.status()
    if args.command == "env":
        return commands.print_env()
    return commands.install_all()


if __name__ == "__main__":
    sys.exit(main())
