"""Process wiring: configuration, components, signals, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import sqlite3
import sys
import threading
from types import FrameType

from exchange_mock.clock import ExchangeClock, MarketHours, MarketTimer
from exchange_mock.config import Config, ConfigError
from exchange_mock.engine import Exchange
from exchange_mock.faults import Faults
from exchange_mock.fixserver import FixAcceptor
from exchange_mock.logfmt import configure, log_event
from exchange_mock.quotes import QuoteBook, QuoteTicker
from exchange_mock.server import MARKET_DATA_ROUTES, ExchangeHTTPServer
from exchange_mock.store import OrderStore

logger = logging.getLogger("exchange_mock")


def main() -> int:
    """Run the exchange until SIGTERM/SIGINT; 0 on a clean stop, 1/2 on errors."""
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"exchange_mock: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure(config.log_level)

    try:
        store = OrderStore(config.store_path)
    except sqlite3.Error as exc:
        log_event(
            logger, "store_error", logging.ERROR, store=config.store_path, error=exc
        )
        return 1
    clock = ExchangeClock(config.clock_start, config.clock_speed)
    hours = MarketHours(config.market_open, config.market_close, config.always_open)
    quotes = QuoteBook(seed=config.seed, clock=clock.now, touch_size=config.touch_size)
    faults = Faults()
    exchange = Exchange(quotes, store, clock.now, hours=hours, faults=faults)
    servers: list[ExchangeHTTPServer] = []
    port = config.port
    try:
        servers.append(
            ExchangeHTTPServer(
                (config.host, port), exchange, faults, admin_token=config.admin_token
            )
        )
        if config.quotes_port is not None:
            port = config.quotes_port
            # Market data only: no orders, no admin, no /metrics.
            servers.append(
                ExchangeHTTPServer(
                    (config.host, port),
                    exchange,
                    faults,
                    route_table=MARKET_DATA_ROUTES,
                    serves_metrics=False,
                )
            )
    except OSError as exc:
        log_event(
            logger, "bind_error", logging.ERROR, host=config.host, port=port, error=exc
        )
        for bound in servers:
            bound.server_close()
        store.close()
        return 1
    server = servers[0]
    try:
        fix = FixAcceptor(
            (config.fix_host, config.fix_port),
            exchange,
            faults,
            comp_id=config.fix_comp_id,
            username=config.fix_username,
            password=config.fix_password,
        )
    except OSError as exc:
        log_event(
            logger,
            "bind_error",
            logging.ERROR,
            host=config.fix_host,
            port=config.fix_port,
            error=exc,
        )
        for bound in servers:
            bound.server_close()
        store.close()
        return 1
    server.fix_acceptor = fix  # its counters in /metrics

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the main thread does the shutdown work.
        log_event(logger, "signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ticker = QuoteTicker(quotes, config.tick_seconds)
    timer = MarketTimer(clock, hours, exchange.open_market, exchange.close_market)
    # serve_forever in its own thread: server.shutdown() must be called from
    # another thread, and the main thread has to stay free for signals.
    serving = [
        threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"http-accept-{listener.server_port}",
        )
        for listener in servers
    ]
    for thread in serving:
        thread.start()
    fix.start()
    ticker.start()
    timer.start()
    status = exchange.clock_status()
    log_event(
        logger,
        "listening",
        address=server.url,
        quotes_address=servers[1].url if len(servers) > 1 else None,
        admin_token=config.admin_token is not None,
        fix_address="{}:{}".format(*fix.address),
        fix_comp_id=config.fix_comp_id,
        fix_credentials=config.fix_username is not None
        or config.fix_password is not None,
        store=config.store_path,
        orders=store.count(),
        seed=config.seed,
        tick_seconds=config.tick_seconds,
        touch_size=config.touch_size,
        now=status["now"],
        clock_speed=config.clock_speed,
        always_open=config.always_open,
        market_open=status["is_open"],
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log_event(logger, "stopping")
        timer.stop()
        ticker.stop()
        fix.stop()  # Logouts first, while the store is still open
        for listener in servers:
            listener.stop()
        for thread in serving:
            thread.join()
        store.close()
        log_event(logger, "stopped")
    return 0
