"""Checks that the Node load generator (``bench/node/frames.mjs``) builds the same bytes as ``bench.frames`` and
``bench.frames04``, which ``bench.verify_frames`` and ``bench.verify_frames04`` check against the real clients.
So both generators send the real clients' frames, and a difference between them is not in what they send.

    python -m bench.verify_node_frames      # exit 0 when every frame is identical
"""

import json
import subprocess
import sys

from bench import frames, frames04
from bench.servers import REPO_ROOT

STORES = ["bench-1", "store with spaces", "ünïcode/?&=+%", "a*b-c.d_e~f!g'h(i)j"]

# (case for frames.mjs, the same frame built by the Python builders)
CASES = [
    *(
        (
            {"kind": "storeUrl03", "base": "ws://h:1", "store": s, "payload": frames.PAYLOAD},
            frames.store_url("ws://h:1", s),
        )
        for s in STORES
    ),
    (
        {"kind": "storeUrl03", "base": "ws://h:1", "store": "x", "payload": None},
        frames.store_url("ws://h:1", "x", None),
    ),
    *(
        ({"kind": "requestId", "prefix": p, "number": n}, frames.request_id(p, n))
        for p in ("pull-", "push-")
        for n in (0, 7, 123456)
    ),
    (
        {"kind": "todoPush", "reqId": "push-1", "first": 1, "count": 1, "clientId": "c", "sessionId": "c-session"},
        frames.todo_push("push-1", 1, 1, "c", "c-session"),
    ),
    (
        {"kind": "todoPush", "reqId": "push-2", "first": 41, "count": 3, "clientId": "bench-9", "sessionId": "s"},
        frames.todo_push("push-2", 41, 3, "bench-9", "s"),
    ),
    ({"kind": "pullReq", "reqId": "pull-0", "cursor": None}, frames.pull_req("pull-0")),
    ({"kind": "pullReq", "reqId": "pull-1", "cursor": 42}, frames.pull_req("pull-1", 42)),
    ({"kind": "ping03"}, frames.PING),
    *(
        (
            {"kind": "storeUrl04", "base": "ws://h:1", "store": s, "payload": frames.PAYLOAD},
            frames04.store_url("ws://h:1", s),
        )
        for s in STORES
    ),
    ({"kind": "ping04"}, frames04.PING),
    *(
        (
            {"kind": "pull04", "id": i, "store": "s1", "live": True, "cursor": None, "backendId": None},
            frames04.pull(i, "s1"),
        )
        for i in ("0", "1", "1234")
    ),
    (
        {"kind": "pull04", "id": "3", "store": "s1", "live": False, "cursor": 17, "backendId": "b-1"},
        frames04.pull("3", "s1", live=False, cursor=17, backend_id="b-1"),
    ),
    *(
        (
            {
                "kind": "push04",
                "id": i,
                "store": "s2",
                "first": first,
                "count": count,
                "clientId": "bench-3",
                "backendId": b,
            },
            frames04.push(
                i,
                "s2",
                [frames.todo_event(n, "bench-3", "bench-3-session") for n in range(first, first + count)],
                backend_id=b,
            ),
        )
        for i, first, count, b in (("1", 1, 1, None), ("2", 2, 10, "backend-x"), ("99", 500, 2, "y"))
    ),
    ({"kind": "ack04", "requestId": "0"}, frames04.ack("0")),
]


def main():
    completed = subprocess.run(
        ["node", str(REPO_ROOT / "bench" / "node" / "frames.mjs")],
        input=json.dumps([case for case, _ in CASES]),
        capture_output=True,
        text=True,
        check=True,
    )
    built = json.loads(completed.stdout)
    different = [(case, node, python) for (case, python), node in zip(CASES, built, strict=True) if node != python]
    for case, node, python in different:
        print(f"DIFFERENT {case['kind']}:\n  node   {node}\n  python {python}")
    print(f"{len(CASES) - len(different)} of {len(CASES)} frames identical")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
