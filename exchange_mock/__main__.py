"""Entry point: ``python -m exchange_mock`` (configured by environment variables)."""

from exchange_mock.app import main

if __name__ == "__main__":
    raise SystemExit(main())
