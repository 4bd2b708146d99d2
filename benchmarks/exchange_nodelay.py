"""exchange_mock with TCP_NODELAY on its accepted sockets: the one-line fix
recommended in BENCHMARKS.md (socketserver's ``disable_nagle_algorithm``). Used
only by ``python -m benchmarks --exchange-nodelay``, to show the fix's effect
before it lands in exchange_mock/server.py; the default run measures the
simulator as shipped."""

from exchange_mock import server
from exchange_mock.app import main

server.ExchangeRequestHandler.disable_nagle_algorithm = True

if __name__ == "__main__":
    raise SystemExit(main())
