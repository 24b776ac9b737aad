"""A clone of the repository alone runs the whole suite: nothing the project runs reads a folder beside it."""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE = {".py", ".mjs", ".js", ".ts", ".sh", ".toml", ".cfg", ".json"}
SKIPPED_DIRS = {".git", ".venv", "node_modules", "dist", "__pycache__", ".pytest_cache", "fixtures"}
# The folder of reference material that sits beside the repository on developers' machines (not in a clone).
REFERENCE_FOLDER = "shared"
OUTSIDE = re.compile(rf"\.\./{REFERENCE_FOLDER}|{REFERENCE_FOLDER}/protocol")


def project_files():
    for path in REPO_ROOT.rglob("*"):
        if any(part in SKIPPED_DIRS for part in path.relative_to(REPO_ROOT).parts):
            continue
        if path.is_file() and (path.suffix in CODE or path.name in ("Makefile", "run")) and path != Path(__file__):
            yield path


def test_no_project_file_reads_outside_the_repository():
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in project_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_the_reference_recordings_the_tests_replay_are_in_the_repository():
    recordings = sorted(path.name for path in (REPO_ROOT / "tests" / "fixtures").glob("ref-*-transcripts.json"))
    assert recordings == ["ref-0.3.1-transcripts.json", "ref-0.4.0-transcripts.json"]
