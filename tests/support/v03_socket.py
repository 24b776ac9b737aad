"""A raw 0.3 protocol client over a real WebSocket that records everything a socket receives.

Each ``SyncSocket`` reads in a background task and checks every ``PullRes`` it gets the way a client would rely
on it: from the cursor of its pull on, the seqNums it receives are strictly contiguous (no gap, no duplicate,
no reordering). Anything else is recorded in ``violations`` (the tests assert it stays empty) rather than
raised in the reader, so a test still sees the full picture.

Pushers push *logical batches*: ``size`` events sharing a ``batch`` marker in their args, so the stored history
can be checked for partial batches; a rejected push is rebased (wait until the socket's stream reached the head
the rejection names, then push again on top of it) and retried.
"""

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import websockets

PARENT_MISMATCH = re.compile(r"^Invalid parent event number\. Received e(\d+) but expected e(\d+)$")
EVENT_NAME = "v1.FaultEvent"


def store_url(base_url, store_id):
    return f"{base_url}/websocket?storeId={quote(store_id, safe='')}"


def make_batch(label, number, size, parent):
    """``size`` events on top of ``parent``, all marked as logical batch ``label``/``number``."""
    return [
        {
            "name": EVENT_NAME,
            "args": {"label": label, "batch": number, "index": index, "size": size},
            "seqNum": parent + index + 1,
            "parentSeqNum": parent + index,
            "clientId": label,
            "sessionId": f"{label}-session",
        }
        for index in range(size)
    ]


def batch_key(event):
    args = event["args"]
    return (args["label"], args["batch"])


class PushRejected(Exception):
    """The server answered a push with an error other than a parent mismatch."""


@dataclass
class PushOutcome:
    request_id: str
    parent: int
    size: int
    acked: bool
    message: str | None = None
    sent_at: float = 0.0
    answered_at: float = 0.0


@dataclass
class Pusher:
    """What one pushing socket did: its acknowledged logical batches, its push attempts, its rejections."""

    label: str
    acked: dict = field(default_factory=dict)  # (label, batch) -> (first seqNum, last seqNum, ack time)
    attempts: list = field(default_factory=list)
    rejections: list = field(default_factory=list)
    unanswered: list = field(default_factory=list)  # logical batches whose push got no answer (connection lost)
    stopped_by: str | None = None


class SyncSocket:
    """One WebSocket to a livesync process, read by a background task."""

    def __init__(self, name, url):
        self.name = name
        self.url = url
        self.ws = None
        self.frames = []  # (monotonic time, frame dict)
        self.cursor = None  # last seqNum of the contiguous stream; None until the first pull answer
        self.history = []  # every event received (after the pull started), in arrival order
        self.received_at = {}  # seqNum -> monotonic time of first arrival
        self.violations = []
        self.before_pull = []  # PullRes frames that arrived before the pull answer (recorded, not checked)
        self.acked_head = 0
        self.close_code = None
        self.close_reason = None
        self.closed_at = None
        self.closed = asyncio.Event()
        self._answers = {}
        self._pull_done = {}
        self._progress = asyncio.Condition()
        self._reader = None
        self._requests = 0
        self._pulling = None  # requestId of the pull whose last chunk has not arrived yet
        self._stash = []

    async def open(self, pull=True, cursor=0, timeout=10.0):
        self.ws = await asyncio.wait_for(
            websockets.connect(self.url, max_size=None, proxy=None, compression=None, ping_interval=None),
            timeout,
        )
        self._reader = asyncio.ensure_future(self._read())
        if pull:
            await self.pull(cursor, timeout)
        return self

    async def close(self):
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except Exception:  # noqa: BLE001 - it may already be gone
                pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 3)
            except Exception:  # noqa: BLE001
                self._reader.cancel()

    def next_request_id(self, prefix):
        self._requests += 1
        return f"{self.name}-{prefix}-{self._requests}"

    async def send(self, frame):
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    async def pull(self, cursor=0, timeout=10.0):
        """Pull from ``cursor`` and wait for the last chunk; the stream is checked for contiguity from here."""
        request_id = self.next_request_id("pull")
        done = self._pull_done[request_id] = asyncio.get_running_loop().create_future()
        self.cursor = cursor
        self._pulling = request_id
        frame = {"_tag": "WSMessage.PullReq", "requestId": request_id}
        if cursor:
            frame["cursor"] = cursor
        await self.send(frame)
        await asyncio.wait_for(done, timeout)

    async def request(self, frame, timeout=10.0):
        """Send ``frame`` and return the first answer to its requestId: ``PushAck``, ``Error``, or the last
        ``PullRes`` chunk of a pull (whose events are checked and recorded like any other)."""
        request_id = frame["requestId"]
        answer = self._answers[request_id] = asyncio.get_running_loop().create_future()
        try:
            await self.send(frame)
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._answers.pop(request_id, None)

    @property
    def head(self):
        """The highest seqNum this client knows is committed: its stream, or its own acknowledged pushes."""
        return max(self.cursor or 0, self.acked_head)

    async def push(self, batch, timeout=10.0):
        """Push ``batch`` and return its ``PushOutcome``; raises ConnectionClosed or TimeoutError without answer."""
        request_id = self.next_request_id("push")
        answer = self._answers[request_id] = asyncio.get_running_loop().create_future()
        outcome = PushOutcome(request_id, batch[0]["parentSeqNum"], len(batch), False, sent_at=time.monotonic())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await self.send({"_tag": "WSMessage.PushReq", "requestId": request_id, "batch": batch})
            done, _ = await asyncio.wait([answer, closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if answer not in done:
                if self.closed.is_set():
                    raise websockets.ConnectionClosed(None, None)
                raise TimeoutError(f"{self.name}: no answer to push {request_id} within {timeout} s")
            frame = answer.result()
        finally:
            closed.cancel()
            self._answers.pop(request_id, None)
        outcome.answered_at = time.monotonic()
        if frame["_tag"] == "WSMessage.PushAck":
            outcome.acked = True
            self.acked_head = max(self.acked_head, batch[-1]["seqNum"])
        else:
            outcome.message = frame.get("message")
        return outcome

    async def wait_for_cursor(self, seq_num, timeout):
        """True once the contiguous stream reached ``seq_num`` within ``timeout`` seconds."""
        try:
            async with self._progress:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: (self.cursor or 0) >= seq_num or self.closed.is_set()), timeout
                )
        except TimeoutError:
            return False
        return (self.cursor or 0) >= seq_num

    def seq_nums(self):
        return [event["seqNum"] for event in self.history]

    def frames_of(self, tag):
        return [frame for _, frame in self.frames if frame.get("_tag") == tag]

    async def _read(self):
        try:
            async for text in self.ws:
                now = time.monotonic()
                frame = json.loads(text)
                self.frames.append((now, frame))
                await self._handle(now, frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()
            async with self._progress:
                self._progress.notify_all()

    async def _handle(self, now, frame):
        tag = frame.get("_tag")
        if tag == "WSMessage.PullRes":
            self._take_events(now, frame)
            request = frame["requestId"]
            if request["context"] == "pull" and frame["remaining"] == 0:
                waiting_for_it = (
                    self._pull_done.pop(request["requestId"], None),
                    self._answers.get(request["requestId"]),
                )
                for waiting in waiting_for_it:
                    if waiting is not None and not waiting.done():
                        waiting.set_result(frame)
            async with self._progress:
                self._progress.notify_all()
        elif tag in ("WSMessage.PushAck", "WSMessage.Error"):
            answer = self._answers.get(frame.get("requestId"))
            if answer is not None and not answer.done():
                answer.set_result(frame)

    def _take_events(self, now, frame):
        if self.cursor is None:
            self.before_pull.append(frame)
            return
        request = frame["requestId"]
        if self._pulling is not None:
            # As the real client does: broadcasts that overtake the pull's answer are stashed, and what they
            # hold beyond the pull's last event follows it.
            if request["context"] != "pull" or request["requestId"] != self._pulling:
                self._stash.append(frame)
                return
            self._check_and_record(now, frame, [item["eventEncoded"] for item in frame["batch"]])
            if frame["remaining"] == 0:
                self._pulling = None
                stashed = [item["eventEncoded"] for held in self._stash for item in held["batch"]]
                self.before_pull.extend(self._stash)
                self._stash = []
                self._check_and_record(now, frame, [event for event in stashed if event["seqNum"] > self.cursor])
            return
        self._check_and_record(now, frame, [item["eventEncoded"] for item in frame["batch"]])

    def _check_and_record(self, now, frame, events):
        for event in events:
            seq_num = event["seqNum"]
            if seq_num != self.cursor + 1:
                kind = "duplicate" if seq_num <= self.cursor else "gap"
                self.violations.append(
                    f"{self.name}: {kind}: got e{seq_num} after e{self.cursor} "
                    f"({frame['requestId']['context']} {frame['requestId']['requestId']})"
                )
            self.cursor = max(self.cursor, seq_num)
            self.history.append(event)
            self.received_at.setdefault(seq_num, now)


async def push_batches(
    sock,
    label,
    count,
    size,
    pusher=None,
    rebase_timeout=10.0,
    push_timeout=10.0,
    pause=0.0,
    stop=None,
    max_attempts=200,
    start=0,
):
    """Push ``count`` logical batches of ``size`` events (an int, or a function of the batch number) from
    ``sock``, rebasing and retrying on parent mismatches.

    Batches are numbered from ``start``. Returns the ``Pusher`` record (``pusher`` if given, extended). Stops
    early (``stopped_by`` says why) when the connection is lost or ``stop`` (an asyncio.Event) is set; a push
    that was sent but never answered is listed in ``unanswered``.
    """
    pusher = pusher or Pusher(label)
    for number in range(start, start + count):
        for _ in range(max_attempts):
            if stop is not None and stop.is_set():
                pusher.stopped_by = "stop"
                return pusher
            batch = make_batch(label, number, size(number) if callable(size) else size, sock.head)
            try:
                outcome = await sock.push(batch, timeout=push_timeout)
            except websockets.ConnectionClosed:
                pusher.unanswered.append((label, number))
                pusher.stopped_by = "connection closed"
                return pusher
            pusher.attempts.append(outcome)
            if outcome.acked:
                pusher.acked[(label, number)] = (batch[0]["seqNum"], batch[-1]["seqNum"], outcome.answered_at)
                break
            mismatch = PARENT_MISMATCH.match(outcome.message or "")
            if mismatch is None:
                raise PushRejected(f"{sock.name}: push rejected: {outcome.message}")
            pusher.rejections.append(outcome.message)
            expected = int(mismatch.group(2))
            if not await sock.wait_for_cursor(expected, rebase_timeout):
                if sock.closed.is_set():
                    pusher.stopped_by = "connection closed"
                    return pusher
                raise AssertionError(
                    f"{sock.name}: rejected with head e{expected} but its stream stayed at e{sock.cursor} "
                    f"for {rebase_timeout} s"
                )
        else:
            raise AssertionError(f"{sock.name}: batch {number} still not accepted after {max_attempts} attempts")
        if pause:
            await asyncio.sleep(pause)
    return pusher


def check_whole_batches(events):
    """Problems with ``events`` (a stored or received history) as logical batches: every batch complete,
    contiguous and stored once, the history contiguous from e1. Returns a list of problems (empty: fine)."""
    problems = []
    seq_nums = [event["seqNum"] for event in events]
    if seq_nums != list(range(1, len(seq_nums) + 1)):
        problems.append(f"history is not e1..e{len(seq_nums)}: {_summarize(seq_nums)}")
    by_batch = {}
    for event in events:
        by_batch.setdefault(batch_key(event), []).append(event)
    for key, members in by_batch.items():
        size = members[0]["args"]["size"]
        indexes = [event["args"]["index"] for event in members]
        seqs = [event["seqNum"] for event in members]
        if indexes != list(range(size)):
            problems.append(f"batch {key} stored as indexes {indexes} (size {size})")
        elif seqs != list(range(seqs[0], seqs[0] + size)):
            problems.append(f"batch {key} not contiguous: {seqs}")
    return problems


def _summarize(seq_nums):
    if len(seq_nums) <= 20:
        return seq_nums
    return f"{seq_nums[:10]} … {seq_nums[-10:]} ({len(seq_nums)} events)"


async def open_sockets(specs, pull=True):
    """Open ``[(name, url), …]`` concurrently."""
    sockets = [SyncSocket(name, url) for name, url in specs]
    await asyncio.gather(*(sock.open(pull=pull) for sock in sockets))
    return sockets


async def close_all(sockets):
    await asyncio.gather(*(sock.close() for sock in sockets), return_exceptions=True)


async def fetch_history(url, name="verifier", timeout=15.0):
    """A fresh socket's full pull from e0: the stored history as the server serves it."""
    sock = SyncSocket(name, url)
    await sock.open(pull=True, timeout=timeout)
    await sock.close()
    assert not sock.violations, sock.violations
    return sock.history
