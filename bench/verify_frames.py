"""Check once that the load generator sends exactly what the real LiveStore 0.3.1 client sends.

    .venv/bin/python -m bench.verify_frames [--reference]

Runs an unmodified client (``bench/verify_frames.mjs``, through the interop harness in ``tests/interop``)
against livesync on a fresh SQLite database (and, with ``--reference``, against the reference too), records
the socket URL and the text of every frame it sends, and rebuilds each one with ``bench.frames`` from the
values the client used (its request ids, client and session ids, todo ids). Every rebuilt frame must equal
the recorded one byte for byte; the script says which differ and exits 1 if any does. It also reports the
WebSocket extensions each server negotiated with the client (the load generator offers none).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import uuid

from bench import frames
from bench.servers import REPO_ROOT, LivesyncServer, ReferenceServer, reference_problem

NODE_SCRIPT = REPO_ROOT / "bench" / "verify_frames.mjs"


def record(url, store_id):
    completed = subprocess.run(
        ["node", str(NODE_SCRIPT), "--url", url, "--store-id", store_id, "--token", frames.AUTH_TOKEN],
        check=False,  # a failed client is reported from its output below
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the client printed no result (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    recording = json.loads(lines[-1])
    if "error" in recording:
        raise RuntimeError(f"the client failed: {recording['error']}\n{completed.stderr[-3000:]}")
    return recording


def rebuild(text, client_id, session_id):
    """The frame ``bench.frames`` builds for the values in the client's frame ``text``."""
    frame = json.loads(text)
    tag = frame.get("_tag")
    if tag == "WSMessage.Ping":
        return frames.PING
    if tag == "WSMessage.PullReq":
        return frames.pull_req(frame["requestId"], frame.get("cursor"))
    if tag == "WSMessage.PushReq":
        events = [
            frames.todo_event(event["seqNum"], client_id, session_id, todo_id=event["args"]["id"])
            for event in frame["batch"]
        ]
        return frames.push_req(frame["requestId"], events)
    return None


def check(server_name, url):
    store_id = f"verify-{uuid.uuid4().hex[:8]}"
    recording = record(url, store_id)
    problems = []
    expected_url = frames.store_url(url, store_id)
    for opened in recording["urls"]:
        if opened != expected_url:
            problems.append(f"socket URL differs:\n  client: {opened}\n  bench:  {expected_url}")
    counts = {}
    for text in recording["sent"]:
        tag = json.loads(text).get("_tag")
        counts[tag] = counts.get(tag, 0) + 1
        rebuilt = rebuild(text, recording["clientId"], recording["sessionId"])
        if rebuilt is None:
            problems.append(f"the client sent a frame the bench cannot build: {text[:200]}")
        elif rebuilt != text:
            problems.append(f"{tag} differs:\n  client: {text[:300]}\n  bench:  {rebuilt[:300]}")
    pushes = [json.loads(t) for t in recording["sent"] if '"WSMessage.PushReq"' in t]
    print(
        f"{server_name}: the real client synced={recording['synced']}, opened {len(recording['urls'])} socket(s), "
        f"sent {counts}; push batch sizes {[len(p['batch']) for p in pushes]}; "
        f"negotiated extensions {recording['extensions']!r}"
    )
    if not recording["synced"]:
        problems.append("the real client did not sync all 11 events")
    if not pushes:
        problems.append("the real client sent no PushReq")
    for problem in problems:
        print(f"  MISMATCH {problem}")
    if not problems:
        print(f"  OK: URL and all {len(recording['sent'])} frames equal the load generator's, byte for byte")
    return not problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true", help="also record the client against the reference")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as directory:
        with LivesyncServer("sqlite", workdir=directory) as server:
            ok &= check(server.name, server.url)
        if args.reference:
            problem = reference_problem()
            if problem:
                print(f"reference: unavailable ({problem})")
            else:
                with ReferenceServer(workdir=directory) as server:
                    ok &= check(server.name, server.url)
    print("frames verified" if ok else "frames differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
