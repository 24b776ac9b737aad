"""The distribution users install: ``django-livesync``, which carries the ``syncapp`` package and nothing else."""

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
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: channels") for line in requires)
    assert not any("pytest" in line or "selenium" in line for line in requires), "test packages are runtime deps"
    assert any('extra == "postgres"' in line and "psycopg" in line for line in requires)


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
        shown = subprocess.run([str(bin_dir / "pip"), "show", "-f", "django-livesync"], capture_output=True, text=True)
        assert shown.returncode == 0 and "syncapp/consumers.py" in shown.stdout
