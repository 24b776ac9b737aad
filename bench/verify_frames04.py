"""Check that the load generator's 0.4 frames are the real LiveStore 0.4.0 ws client's.

    .venv/bin/python -m bench.verify_frames04 [FIXTURES_DIR]

Reads the frames the real client sent in the recorded ws sessions (``ref-0.4.0-transcripts.json`` in
``tests/fixtures``, or the directory given) and rebuilds each one with ``bench.frames04`` from its values. Every
rebuilt frame must equal the recorded one as text: the same keys in the same order at every level. Two things are
taken from the recording instead of compared: the todo's ``args`` (the app's data) and the trace fields, whose values
are random; the no-op tracer's ids must still have the length the bench gives them. Exits 1 on any difference.
"""

import json
import sys
from pathlib import Path

from bench import frames, frames04
from bench.servers import REPO_ROOT

FIXTURE = "ref-0.4.0-transcripts.json"
TRACE_FIELDS = ("traceId", "spanId", "sampled")


def fixtures_dir(argv):
    if argv:
        return Path(argv[0])
    return REPO_ROOT / "tests" / "fixtures"


def rebuild(frame):
    """The text ``bench.frames04`` builds from the values of the client's ``frame`` (None: not a bench frame)."""
    tag = frame.get("_tag")
    if tag == "Ping":
        return frames04.PING
    if tag == "Ack":
        return frames04.ack(frame["requestId"])
    if tag != "Request":
        return None
    body = frame["payload"]
    if frame["tag"] == "SyncWsRpc.Pull":
        cursor = body["cursor"].get("value") or {}
        text = frames04.pull(
            frame["id"],
            body["storeId"],
            live=body["live"],
            cursor=cursor.get("eventSequenceNumber"),
            backend_id=cursor.get("backendId"),
            payload=body.get("payload"),
        )
    elif frame["tag"] == "SyncWsRpc.Push":
        events = []
        for event in body["batch"]:
            rebuilt = frames.todo_event(event["seqNum"], event["clientId"], event["sessionId"])
            rebuilt["args"] = event["args"]
            events.append(rebuilt)
        text = frames04.push(
            frame["id"], body["storeId"], events, backend_id=body["backendId"].get("value"), payload=body.get("payload")
        )
    else:
        return None
    rebuilt = json.loads(text)
    for field in TRACE_FIELDS:
        rebuilt[field] = frame[field]
    return frames.compact(rebuilt)


def trace_shape_problem(frame):
    """The recorded app uses LiveStore's no-op tracer: its ids must be as long as the bench's."""
    for field, prefix in (("traceId", frames04.TRACE_PREFIX), ("spanId", frames04.SPAN_PREFIX)):
        value = frame[field]
        if value.startswith(prefix) and len(value) != len(prefix) + len(frames04.cuid(0)):
            return f"{field} {value!r} is not {prefix} + a 25-character cuid"
    return None


def main(argv=None):
    path = fixtures_dir(sys.argv[1:] if argv is None else argv) / FIXTURE
    recording = json.loads(path.read_text())
    problems, counts = [], {}
    for scenario in recording["scenarios"]:
        if scenario["transport"] != "ws":
            continue  # the http sessions and the hand-written raw-edge frames are not the ws client's
        for exchange in scenario["exchanges"]:
            if exchange.get("kind") != "ws":
                continue
            url = frames04.store_url("", scenario["storeId"])
            if exchange["url"] != url:
                problems.append(f"{scenario['name']}: URL differs:\n  client: {exchange['url']}\n  bench:  {url}")
            for recorded in exchange["frames"]:
                if recorded["dir"] != "c2s":
                    continue
                frame = recorded["json"]
                kind = frame.get("tag", frame.get("_tag"))
                counts[kind] = counts.get(kind, 0) + 1
                if kind == "Interrupt":
                    continue  # the load generator never abandons a stream
                text, rebuilt = frames.compact(frame), rebuild(frame)
                if rebuilt is None:
                    problems.append(f"{scenario['name']}: a frame the bench cannot build: {text[:200]}")
                elif rebuilt != text:
                    problems.append(
                        f"{scenario['name']} {kind} differs:\n  client: {text[:300]}\n  bench:  {rebuilt[:300]}"
                    )
                elif frame.get("_tag") == "Request" and trace_shape_problem(frame):
                    problems.append(f"{scenario['name']}: {trace_shape_problem(frame)}")
    print(f"{path.name}: the real client sent {counts}")
    for problem in problems:
        print(f"  MISMATCH {problem}")
    print("0.4 frames verified" if not problems else "0.4 frames differ")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
