"""Frames and HTTP answers recorded from the reference server, kept in ``tests/fixtures``.

They are part of the repository, so a clone alone replays them; a missing file fails the tests that read it.
"""

import json
import re
from functools import lru_cache
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

_CREATED_AT = re.compile(r'"createdAt":"[0-9T:.\-]+Z"')


@lru_cache(maxsize=None)
def _load(version):
    return {p["name"]: p for p in json.loads((FIXTURES / f"ref-{version}-transcripts.json").read_text())["probes"]}


def probe(name, version="0.3.1"):
    return _load(version)[name]["transcript"]


def normalize(frame):
    """A frame with its push times blanked: they are the one part two servers can't share."""
    return _CREATED_AT.sub('"createdAt":"<createdAt>"', frame)
