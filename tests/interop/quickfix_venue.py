"""A plain QuickFIX 4.4 acceptor (the reference engine, PyPI ``quickfix``) as a
venue for the interop tests: it knows nothing of this project — no epoch, no
custom tag. Run as a process: ``python tests/interop/quickfix_venue.py``.

Environment: ``VENUE_PORT``, ``VENUE_WORKDIR`` (config, file store, logs),
``VENUE_COMP_ID`` (its own CompID, default EXCHANGE), ``VENUE_SESSIONS`` (the
initiators' CompIDs, comma-separated), ``VENUE_USERNAME``/``VENUE_PASSWORD``
(checked against the Logon's 553/554). Prints one JSON line per event; the first
is ``{"event": "listening"}``.

Orders: a limit order is acknowledged (ExecType 0) and filled at once at its
limit price (ExecType F); a market order is filled at ``VENUE_MARKET_PX``.
Cancels of a filled order get an OrderCancelReject (too late); status requests an
ExecutionReport 150=I.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time

import quickfix as fix

_print_lock = threading.Lock()
_order_ids = itertools.count(1)
_exec_ids = itertools.count(1)


def emit(event: str, **fields) -> None:
    """One JSON line per event (callbacks run on the engine's thread)."""
    with _print_lock:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


def _dictionary() -> str:
    for base in (sys.prefix, "/usr/local", "/usr"):
        path = os.path.join(base, "share", "quickfix", "FIX44.xml")
        if os.path.exists(path):
            return path
    raise SystemExit("FIX44.xml not found (pip install quickfix)")


def _config(workdir: str) -> str:
    sessions = os.environ["VENUE_SESSIONS"].split(",")
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={os.environ['VENUE_PORT']}",
        "SocketReuseAddress=Y",
        f"FileStorePath={workdir}/store",
        f"FileLogPath={workdir}/log",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={_dictionary()}",
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "PersistMessages=Y",
        f"SenderCompID={os.environ.get('VENUE_COMP_ID', 'EXCHANGE')}",
        "BeginString=FIX.4.4",
    ]
    for target in sessions:
        lines += ["", "[SESSION]", f"TargetCompID={target}"]
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "venue.cfg")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _get(message: fix.FieldMap, tag: int) -> str | None:
    return message.getField(tag) if message.isSetField(tag) else None


class Order:
    def __init__(self, message: fix.Message) -> None:
        self.order_id = f"QF-{next(_order_ids)}"
        self.cl_ord_id = message.getField(11)
        self.symbol = message.getField(55)
        self.side = message.getField(54)
        self.quantity = message.getField(38)
        self.ord_type = message.getField(40)
        self.price = _get(message, 44)
        self.cum = "0"
        self.avg = "0"
        self.status = "0"


class Venue(fix.Application):
    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, Order] = {}
        self.credentials = (
            os.environ.get("VENUE_USERNAME", ""),
            os.environ.get("VENUE_PASSWORD", ""),
        )
        self.market_px = os.environ.get("VENUE_MARKET_PX", "100")

    def onCreate(self, session):
        emit("created", session=session.toString())

    def onLogon(self, session):
        emit("logon", session=session.toString())

    def onLogout(self, session):
        emit("logout", session=session.toString())

    def toAdmin(self, message, session):
        pass

    def toApp(self, message, session):
        pass

    def fromAdmin(self, message, session):
        if message.getHeader().getField(35) == "A":
            given = (_get(message, 553) or "", _get(message, 554) or "")
            if given != self.credentials:
                emit("logon_refused", username=given[0])
                raise fix.RejectLogon("invalid credentials")

    def fromApp(self, message, session):
        kind = message.getHeader().getField(35)
        emit("received", msg_type=kind, cl_ord_id=_get(message, 11))
        if kind == "D":
            self._new_order(message, session)
        elif kind == "F":
            self._cancel(message, session)
        elif kind == "H":
            self._status(message, session)
        else:
            raise fix.UnsupportedMessageType()

    def _report(self, order: Order, exec_type: str, last_qty="0", last_px="0"):
        report = fix.Message()
        report.getHeader().setField(35, "8")
        for tag, value in (
            (37, order.order_id),
            (11, order.cl_ord_id),
            (17, f"QFE-{next(_exec_ids)}"),
            (150, exec_type),
            (39, order.status),
            (55, order.symbol),
            (54, order.side),
            (38, order.quantity),
            (40, order.ord_type),
            (32, last_qty),
            (31, last_px),
            (14, order.cum),
            (151, "0" if order.status in ("2", "4", "8") else order.quantity),
            (6, order.avg),
            (60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())),
        ):
            report.setField(tag, value)
        return report

    def _new_order(self, message, session) -> None:
        order = self.orders.get(message.getField(11))
        if order is not None:  # a resend (PossResend): the order as it is
            fix.Session.sendToTarget(self._report(order, "I"), session)
            return
        order = Order(message)
        self.orders[order.cl_ord_id] = order
        fix.Session.sendToTarget(self._report(order, "0"), session)
        price = order.price if order.ord_type == "2" else self.market_px
        order.cum, order.avg, order.status = order.quantity, price, "2"
        fix.Session.sendToTarget(
            self._report(order, "F", last_qty=order.quantity, last_px=price), session
        )

    def _cancel(self, message, session) -> None:
        order = self.orders.get(message.getField(41))
        reject = fix.Message()
        reject.getHeader().setField(35, "9")
        reject.setField(37, order.order_id if order else "NONE")
        reject.setField(11, message.getField(11))
        reject.setField(41, message.getField(41))
        reject.setField(39, order.status if order else "8")
        reject.setField(434, "1")
        reject.setField(102, "0" if order else "1")
        fix.Session.sendToTarget(reject, session)

    def _status(self, message, session) -> None:
        order = self.orders.get(message.getField(11))
        if order is None:
            order = Order(message)
            order.quantity, order.ord_type, order.status = "0", "1", "8"
            report = self._report(order, "I")
            report.setField(103, "5")
            fix.Session.sendToTarget(report, session)
            return
        fix.Session.sendToTarget(self._report(order, "I"), session)


def main() -> None:
    workdir = os.path.abspath(os.environ["VENUE_WORKDIR"])
    settings = fix.SessionSettings(_config(workdir))
    acceptor = fix.SocketAcceptor(
        Venue(),
        fix.FileStoreFactory(settings),
        settings,
        fix.FileLogFactory(settings),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    acceptor.start()
    emit("listening", port=int(os.environ["VENUE_PORT"]))
    while not stop.wait(0.2):
        pass
    # QuickFIX 1.16's Acceptor.stop() can crash while a peer is disconnecting;
    # its file store is written as it goes, so only stop a logged-on session.
    time.sleep(0.2)
    if acceptor.isLoggedOn():
        acceptor.stop(True)
    emit("stopped")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
