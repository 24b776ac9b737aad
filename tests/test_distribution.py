"""The distribution users install: ``django-livestore-sync``, which carries the ``syncapp`` package and nothing else."""

import subprocess
import sys
import zipfile

from tests.support.daphne import REPO_ROOT
from tests.support.distribution import fresh_virtualenv


def test_the_wheel_holds_syncapp_with_its_migrations_and_templates_only(distributions):
    wheel, _ = distributions
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"syncapp", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "syncapp/migrations/0001_initial.py" in names
    assert "syncapp/templates/syncapp/admin/store_events.html" in names
    assert "syncapp/management/commands/livesync_export.py" in names
    assert "syncapp/py.typed" in names, "type checkers would ignore syncapp's annotations"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    fields = [line.split(": ", 1) for line in metadata.splitlines() if ": " in line and not line.startswith(" ")]
    assert ["Name", "django-livestore-sync"] in fields
    assert ["License-Expression", "BSD-3-Clause"] in fields
    assert {value.split(",")[0] for key, value in fields if key == "Project-URL"} == {
        "Documentation",
        "Changelog",
        "Source",
        "Issues",
    }
    classifiers = {value for key, value in fields if key == "Classifier"}
    assert {"Framework :: Django :: 5.2", "Framework :: Django :: 6.0", "Framework :: Django :: 6.1"} <= classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= classifiers
    requires = [value for key, value in fields if key == "Requires-Dist"]
    assert not any("pytest" in line or "selenium" in line for line in requires), "test packages are runtime deps"
    # One process on the in-memory layer and SQLite needs no Redis, PostgreSQL or Prometheus client.
    base = [line for line in requires if "extra ==" not in line]
    assert not any(name in line for line in base for name in ("channels-redis", "psycopg", "prometheus"))
    assert not any("<6" in line for line in base if line.startswith("Django")), "today's Django is refused"
    for extra, package in (("redis", "channels-redis"), ("postgres", "psycopg"), ("metrics", "prometheus-client")):
        assert any(f'extra == "{extra}"' in line and line.startswith(package) for line in requires), extra


def test_twine_accepts_the_wheel_and_the_sdist(distributions):
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pip_installs_a_clean_clone_and_a_git_url(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    for requirement in (str(clone), f"git+file://{clone}"):
        bin_dir = fresh_virtualenv(tmp_path / f"venv-{len(list(tmp_path.iterdir()))}", "--no-deps", requirement)
        pip_show = [str(bin_dir / "pip"), "show", "-f", "django-livestore-sync"]
        shown = subprocess.run(pip_show, capture_output=True, text=True)
        assert shown.returncode == 0 and "syncapp/consumers.py" in shown.stdout


def test_every_install_line_in_the_docs_names_the_distribution():
    """``django-livesync`` on PyPI is someone else's 2019 project: an install line naming it installs that."""
    docs = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]
    lines = [line for path in docs for line in path.read_text().splitlines() if "pip install" in line]
    ours = [line for line in lines if "django-livestore-sync" in line or '".[' in line or "pip install ." in line]
    assert ours, "no install line found"
    assert not any("django-livesync" in line for line in lines), lines
