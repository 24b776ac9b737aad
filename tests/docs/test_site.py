"""The documentation site: it builds with warnings as errors, a broken link or anchor fails that build, and the
built pages load nothing from the network (the site is read offline as well)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the site is built from: the pages, the configuration, and the files the changelog and security pages include.
SOURCES = ("docs", "mkdocs.yml", "CHANGELOG.md", "SECURITY.md")
# A tag that makes the browser fetch something: a script, a stylesheet or icon, an image, a frame. (A canonical
# link only names the page's address.)
FETCHED = re.compile(
    r"""<(?:script|link(?! rel="canonical")|img|iframe|source)\b[^>]*\b(?:src|href)=["']((?:https?:)?//[^"']+)"""
)


def build(root, site_dir):
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


def copy_sources(destination):
    for name in SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        else:
            shutil.copy(source, destination / name)


def test_the_site_builds_strictly_and_fetches_nothing_from_the_network(tmp_path):
    built = build(REPO_ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    pages = sorted((tmp_path / "site").rglob("*.html"))
    assert {"index.html", "tutorial.html", "reference/settings.html", "changelog.html"} <= {
        str(page.relative_to(tmp_path / "site")) for page in pages
    }
    fetched = {str(page.name): FETCHED.findall(page.read_text()) for page in pages}
    assert {name: urls for name, urls in fetched.items() if urls} == {}
    changelog = (tmp_path / "site" / "changelog.html").read_text()
    assert "The first release." in changelog, "the changelog page does not include CHANGELOG.md"


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    copy_sources(tmp_path)
    for broken in ("[a page](howto/no-such-page.md)", "[an anchor](tutorial.md#no-such-step)"):
        index = tmp_path / "docs" / "index.md"
        original = index.read_text()
        index.write_text(original + f"\n{broken}\n")
        built = build(tmp_path, tmp_path / "site")
        index.write_text(original)
        assert built.returncode != 0, f"{broken} did not fail the build"
        assert "Aborted with 1 warnings in strict mode" in built.stdout + built.stderr, built.stdout + built.stderr
