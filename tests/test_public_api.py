"""The public API (``syncapp.PUBLIC_API``) imports as listed, and the docs name no other syncapp import.

A module moved or a name renamed breaks users' imports and import strings: this test fails first. And a
docs page that tells users to import something not listed would make an internal name public by accident.
"""

import importlib
import re
from pathlib import Path

import syncapp

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_public_name_imports_from_its_module():
    missing = [
        f"{module}.{name}"
        for module, names in syncapp.PUBLIC_API.items()
        for name in names
        if not hasattr(importlib.import_module(module), name)
    ]
    assert missing == []


def test_every_name_the_docs_tell_users_to_import_is_public():
    public = {f"{module}.{name}" for module, names in syncapp.PUBLIC_API.items() for name in names}
    told = set()
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        for module, names in re.findall(r"from (syncapp(?:\.\w+)+) import ([\w, ]+)", text):
            told |= {f"{module}.{name.strip()}" for name in names.split(",") if name.strip()}
        # Import strings in settings: "syncapp.access.user_access".
        told |= {
            name
            for name in re.findall(r"[\"'](syncapp(?:\.\w+)+)[\"']", text)
            if name.rpartition(".")[0] in syncapp.PUBLIC_API
        }
    assert sorted(told - public) == []
