"""A QuickFIX (PyPI ``quickfix``) FIX 4.4 initiator, the reference engine the
interop tests run against the exchange's acceptor. A script, driven over
stdin/stdout by tests/exchange_mock/test_fix_interop.py.

Environment: FIX_PORT, FIX_WORKDIR (config, store and logs), FIX_SENDER
(BROKER-0), FIX_TARGET (EXCHANGE), FIX_USERNAME / FIX_PASSWORD and FIX_EPOCH
(put into the Logon when set), FIX_HEARTBTINT (30), FIX_RECONNECT (1).

stdout: one JSON object per line, ``{"event": ...}``: started, onCreate,
onLogon, onLogout, toAdmin, fromAdmin, toApp, fromApp (with ``msg``, SOH shown
as ``|``), sent, error, stopped.

stdin, one command per line:
  order <ClOrdID> <Symbol> <Side 1|2> <Qty> [<LimitPx>]   NewOrderSingle
  cancel <ClOrdID> <OrigClOrdID> <Symbol> <Side>           OrderCancelRequest
  status <ClOrdID> <Symbol> <Side>                          OrderStatusRequest
  quit (or EOF, or SIGTERM)                                 stop and exit 0
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import quickfix as fix

_out = threading.Lock()


def emit(event: str, **fields: object) -> None:
    # Callbacks run on QuickFIX's own thread: one lock keeps lines whole.
    line = json.dumps({"event": event, **fields}) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def text(message: fix.Message) -> str:
    return message.toString().replace("\x01", "|")


def write_settings(workdir: str) -> str:
    dictionary = os.path.join(sys.prefix, "share", "quickfix", "FIX44.xml")
    lines = [
        "[DEFAULT]",
        "ConnectionType=initiator",
        "SocketConnectHost=127.0.0.1",
        f"SocketConnectPort={os.environ['FIX_PORT']}",
        f"ReconnectInterval={os.environ.get('FIX_RECONNECT', '1')}",
        f"HeartBtInt={os.environ.get('FIX_HEARTBTINT', '30')}",
        f"FileStorePath={workdir}/store",
        f"FileLogPath={workdir}/log",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "",
        "[SESSION]",
        "BeginString=FIX.4.4",
        f"SenderCompID={os.environ.get('FIX_SENDER', 'BROKER-0')}",
        f"TargetCompID={os.environ.get('FIX_TARGET', 'EXCHANGE')}",
        "",
    ]
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "initiator.cfg")
    with open(path, "w") as settings:
        settings.write("\n".join(lines))
    return path


class Broker(fix.Application):
    def __init__(self) -> None:
        super().__init__()
        self.session_id = None

    def onCreate(self, session_id):
        self.session_id = session_id
        emit("onCreate", session=session_id.toString())

    def onLogon(self, session_id):
        emit("onLogon", session=session_id.toString())

    def onLogout(self, session_id):
        emit("onLogout", session=session_id.toString())

    def toAdmin(self, message, session_id):
        if message.getHeader().getField(35) == "A":
            username = os.environ.get("FIX_USERNAME")
            password = os.environ.get("FIX_PASSWORD")
            epoch = os.environ.get("FIX_EPOCH")
            if username:
                message.setField(553, username)
            if password:
                message.setField(554, password)
            if epoch:
                raw = f"epoch={epoch}"
                message.setField(95, str(len(raw)))
                message.setField(96, raw)
        emit("toAdmin", msg=text(message))

    def fromAdmin(self, message, session_id):
        emit("fromAdmin", msg=text(message))

    def toApp(self, message, session_id):
        emit("toApp", msg=text(message))

    def fromApp(self, message, session_id):
        emit("fromApp", msg=text(message))


def now() -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())


def build(command: list[str]) -> fix.Message:
    message = fix.Message()
    header = message.getHeader()
    kind, args = command[0], command[1:]
    if kind == "order":
        cl_ord_id, symbol, side, quantity, *price = args
        header.setField(35, "D")
        for tag, value in (
            (11, cl_ord_id),
            (21, "1"),
            (55, symbol),
            (54, side),
            (60, now()),
            (38, quantity),
            (40, "2" if price else "1"),
        ):
            message.setField(tag, value)
        if price:
            message.setField(44, price[0])
    elif kind == "cancel":
        cl_ord_id, original, symbol, side = args
        header.setField(35, "F")
        for tag, value in (
            (11, cl_ord_id),
            (41, original),
            (55, symbol),
            (54, side),
            (60, now()),
        ):
            message.setField(tag, value)
    elif kind == "status":
        cl_ord_id, symbol, side = args
        header.setField(35, "H")
        for tag, value in ((11, cl_ord_id), (55, symbol), (54, side)):
            message.setField(tag, value)
    else:
        raise ValueError(f"unknown command {kind!r}")
    return message


def main() -> None:
    workdir = os.path.abspath(os.environ["FIX_WORKDIR"])
    settings = fix.SessionSettings(write_settings(workdir))
    app = Broker()
    initiator = fix.SocketInitiator(
        app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def commands() -> None:
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "quit":
                break
            try:
                sent = fix.Session.sendToTarget(build(command), app.session_id)
                emit("sent", ok=bool(sent), command=command[0])
            except Exception as exc:  # reported to the test, which fails on it
                emit("error", error=f"{type(exc).__name__}: {exc}", line=line.strip())
        stop.set()

    initiator.start()
    emit("started")
    threading.Thread(target=commands, daemon=True).start()
    while not stop.wait(0.2):
        pass
    # QuickFIX 1.16's stop() can segfault when it races a disconnect in progress
    # (seen in about half the tries while the peer closed its socket): only stop
    # a logged-on initiator (a Logout round trip), then leave without the
    # interpreter's teardown.
    if initiator.isLoggedOn():
        initiator.stop()
    emit("stopped")
    os._exit(0)


if __name__ == "__main__":
    main()
