"""Frames and HTTP answers recorded from the reference server (``shared/protocol/fixtures``)."""

import json
import os
import re
from functools import lru_cache
from pathlib import Path

FIXTURES = Path(
    os.environ.get("LIVESYNC_PROTOCOL_FIXTURES", Path(__file__).resolve().parents[2] / "shared/protocol/fixtures")
)

_CREATED_AT = re.compile(r'"createdAt":"[0-9T:.\-]+Z"')


@lru_cache(maxsize=None)
def _load(version):
    return {p["name"]: p for p in json.loads((FIXTURES / f"ref-{version}-transcripts.json").read_text())["probes"]}


def available(version="0.3.1"):
    return (FIXTURES / f"ref-{version}-transcripts.json").exists()


def probe(name, version="0.3.1"):
    return _load(version)[name]["transcript"]


def normalize(frame):
    """A frame with its push times blanked: they are the one part two servers can't share."""
    return _CREATED_AT.sub('"createdAt":"<createdAt>"', frame)
