"""HTTP load generator for PlaceTrade: asyncio with a pool of keep-alive connections
and a minimal HTTP/1.1 client (the load generator shares the machine with the
system under test, so it must cost as little CPU per request as possible).

- ``closed_loop``: N workers, each sends the next request as soon as the previous
  one answered, for a duration (throughput at concurrency N).
- ``open_loop``: requests are *scheduled* at a fixed rate whatever the answers do,
  and latency is measured from the scheduled time (no coordinated omission: a
  request that waits for a free connection counts the wait).

Customers are used round-robin, so with many customers the account-row lock is
never the contended resource; their cash is large, so buying power never refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from benchmarks.system import SYMBOLS, BenchCustomer


@dataclass
class Sample:
    scheduled: float  # perf_counter when it was due (open loop) or sent
    sent: float  # perf_counter when it went on the wire
    done: float  # perf_counter when the whole answer was read
    status: int  # HTTP status, 0 for a transport error
    trade_id: str | None = None
    wall_sent: float = 0.0  # time.time() at send, to relate to database timestamps

    @property
    def latency(self) -> float:
        return self.done - self.scheduled

    @property
    def service_time(self) -> float:
        return self.done - self.sent


@dataclass
class LoadResult:
    mode: str
    duration: float
    warmup: float
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0  # perf_counter at start
    offered_rate: float | None = None
    concurrency: int | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def measured(self) -> list[Sample]:
        """Samples that finished inside the window after the warm-up."""
        low = self.started + self.warmup
        high = self.started + self.duration
        return [s for s in self.samples if low <= s.done <= high]

    def ok(self) -> list[Sample]:
        return [s for s in self.measured() if s.status == 201]

    def throughput(self) -> float:
        window = self.duration - self.warmup
        return len(self.ok()) / window if window > 0 else 0.0

    def latencies(self) -> list[float]:
        return [s.latency for s in self.ok()]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sample in self.samples:
            counts[str(sample.status)] = counts.get(str(sample.status), 0) + 1
        return counts

    def trade_ids(self) -> list[str]:
        return [s.trade_id for s in self.samples if s.trade_id]


class HttpError(Exception):
    pass


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send one request; one retry on a fresh connection if the server had
        closed an idle keep-alive connection before reading anything of it."""
        for attempt in (0, 1):
            if self.writer is None:
                await self.open()
            try:
                self.writer.write(head + body)
                await self.writer.drain()
                return await self._read_response()
            except _IdleClosed:
                self.close()
                if attempt:
                    raise HttpError("connection closed twice") from None
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                self.close()
                raise HttpError(repr(exc)) from exc
        raise AssertionError("unreachable")

    async def _read_response(self) -> tuple[int, bytes]:
        status_line = await self.reader.readline()
        if not status_line:
            raise _IdleClosed()
        parts = status_line.split(None, 2)
        status = int(parts[1])
        length = None
        chunked = False
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = b""
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readline()
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, body


class _IdleClosed(Exception):
    pass


class PlaceTradeClient:
    """Builds PlaceTrade requests for a rotating set of customers."""

    def __init__(self, api_url: str, customers: Sequence[BenchCustomer]) -> None:
        parts = urlsplit(api_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._customers = itertools.cycle(customers)
        self._symbols = itertools.cycle(SYMBOLS)
        self._path = "/api/v1/trades"

    def next_request(self) -> tuple[bytes, bytes]:
        customer = next(self._customers)
        body = json.dumps(
            {
                "symbol": next(self._symbols),
                "side": "buy",
                "quantity": "1",
                "type": "market",
            },
            separators=(",", ":"),
        ).encode()
        head = (
            f"POST {self._path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {customer.token}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        return head, body


def _trade_id(status: int, body: bytes) -> str | None:
    if status != 201:
        return None
    try:
        return json.loads(body)["id"]
    except (ValueError, KeyError, TypeError):
        return None


async def _send(
    client: PlaceTradeClient, conn: _Connection, scheduled: float, result: LoadResult
) -> None:
    head, body = client.next_request()
    sent = time.perf_counter()
    wall = time.time()
    try:
        status, answer = await conn.request(head, body)
    except HttpError as exc:
        status, answer = 0, b""
        key = str(exc)[:80]
        result.errors[key] = result.errors.get(key, 0) + 1
    result.samples.append(
        Sample(
            scheduled=scheduled,
            sent=sent,
            done=time.perf_counter(),
            status=status,
            trade_id=_trade_id(status, answer),
            wall_sent=wall,
        )
    )


async def _closed_loop(
    client: PlaceTradeClient,
    concurrency: int,
    duration: float,
    warmup: float,
    tick: Callable[[LoadResult], None] | None,
    max_requests: int | None = None,
) -> LoadResult:
    result = LoadResult(
        mode="closed", duration=duration, warmup=warmup, concurrency=concurrency
    )
    result.started = time.perf_counter()
    end = result.started + duration
    budget = itertools.count(1)

    async def worker() -> None:
        conn = _Connection(client.host, client.port)
        try:
            while time.perf_counter() < end:
                if max_requests is not None and next(budget) > max_requests:
                    return
                now = time.perf_counter()
                await _send(client, conn, now, result)
        finally:
            conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await _ticker(workers, result, tick)
    return result


async def _open_loop(
    client: PlaceTradeClient,
    rate: float,
    duration: float,
    warmup: float,
    max_connections: int,
    tick: Callable[[LoadResult], None] | None,
) -> LoadResult:
    result = LoadResult(
        mode="open", duration=duration, warmup=warmup, offered_rate=rate
    )
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    opened = 0
    slots = asyncio.Semaphore(max_connections)
    interval = 1.0 / rate
    result.started = time.perf_counter()
    end = result.started + duration
    tasks: set[asyncio.Task] = set()

    async def one(scheduled: float) -> None:
        nonlocal opened
        async with slots:  # waiting here counts in the latency (scheduled time)
            try:
                conn = idle.get_nowait()
            except asyncio.QueueEmpty:
                opened += 1
                conn = _Connection(client.host, client.port)
            try:
                await _send(client, conn, scheduled, result)
            finally:
                idle.put_nowait(conn)

    async def scheduler() -> None:
        for n in itertools.count():
            due = result.started + n * interval
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    sched = asyncio.create_task(scheduler())
    await _ticker([sched], result, tick)
    # Answers still due are waited for (bounded), then counted as they are.
    if tasks:
        await asyncio.wait(list(tasks), timeout=30)
        for task in list(tasks):
            task.cancel()
    while not idle.empty():
        idle.get_nowait().close()
    return result


async def _ticker(
    tasks: list[asyncio.Task],
    result: LoadResult,
    tick: Callable[[LoadResult], None] | None,
) -> None:
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.5)
        if tick is not None:
            tick(result)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            task.result()


def closed_loop(
    api_url: str,
    customers: Sequence[BenchCustomer],
    *,
    concurrency: int,
    duration: float,
    warmup: float = 1.0,
    tick: Callable[[LoadResult], None] | None = None,
    max_requests: int | None = None,
) -> LoadResult:
    """``max_requests``: stop after sending that many (a burst of fixed size)."""
    client = PlaceTradeClient(api_url, customers)
    return asyncio.run(
        _closed_loop(client, concurrency, duration, warmup, tick, max_requests)
    )


def open_loop(
    api_url: str,
    customers: Sequence[BenchCustomer],
    *,
    rate: float,
    duration: float,
    warmup: float = 1.0,
    max_connections: int = 256,
    tick: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    client = PlaceTradeClient(api_url, customers)
    return asyncio.run(
        _open_loop(client, rate, duration, warmup, max_connections, tick)
    )


def place_one(api_url: str, customer: BenchCustomer, timeout: float = 30) -> str:
    """One PlaceTrade, synchronously; returns the trade id (raises on non-201)."""
    client = PlaceTradeClient(api_url, [customer])

    async def go() -> tuple[int, bytes]:
        conn = _Connection(client.host, client.port)
        try:
            head, body = client.next_request()
            return await asyncio.wait_for(conn.request(head, body), timeout)
        finally:
            conn.close()

    status, body = asyncio.run(go())
    trade_id = _trade_id(status, body)
    if trade_id is None:
        raise HttpError(f"PlaceTrade answered {status}: {body[:300]!r}")
    return trade_id
