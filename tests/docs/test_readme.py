"""The README is also the PyPI long description: short, every link and image absolute, its links into the docs
site naming pages that exist, and the code it shows the tutorial's own (which tests/interop/test_embedding.py runs).
"""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
SITE = "https://livesync-dev.github.io/django-livestore-sync/"
MARKDOWN_TARGET = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>|\b(?:src|href)=\"([^\"]+)\"")


def targets():
    return [next(group for group in found if group) for found in MARKDOWN_TARGET.findall(README.read_text())]


def code_blocks(text, language):
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_is_at_most_12_kb():
    assert len(README.read_bytes()) <= 12_000


def test_every_link_and_image_is_absolute():
    found = targets()
    assert any("docs/todomvc-two-windows.png" in target for target in found), "the two-window picture is gone"
    assert [target for target in found if not target.startswith("https://")] == []


def test_its_links_into_the_docs_name_pages_that_exist():
    pages = [target.removeprefix(SITE).split("#")[0] for target in targets() if target.startswith(SITE)]
    assert pages, "the README links nowhere into the docs"
    missing = [page for page in pages if page and not (REPO_ROOT / "docs" / page).with_suffix(".md").is_file()]
    assert missing == []


def test_its_embed_is_the_tutorials():
    tutorial = "\n".join(code_blocks((REPO_ROOT / "docs" / "tutorial.md").read_text(), "python"))
    tutorial_lines = {line.strip() for line in tutorial.splitlines()}
    shown = [line.strip() for block in code_blocks(README.read_text(), "python") for line in block.splitlines()]
    shown = [line for line in shown if line and not line.startswith("#")]
    assert shown, "the README shows no embed"
    assert [line for line in shown if line not in tutorial_lines] == []


def test_its_set_up_commands_are_make_targets():
    makefile = (REPO_ROOT / "Makefile").read_text()
    lines = [line for block in code_blocks(README.read_text(), "sh") for line in block.splitlines()]
    commands = [line.split("#")[0].split() for line in lines]
    targets_run = [command[1] for command in commands if command[:1] == ["make"]]
    assert targets_run == ["run", "test"]
    assert all(re.search(rf"^{target}:", makefile, re.M) for target in targets_run)
