"""The package as users get it: the wheel and sdist built from this checkout, and a fresh virtualenv with the wheel."""

import subprocess
import sys
import venv
from pathlib import Path

from tests.support.daphne import REPO_ROOT


def build(outdir):
    """``python -m build`` of the checkout into ``outdir``; returns (wheel path, sdist path)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = Path(outdir).glob("*.whl")
    (sdist,) = Path(outdir).glob("*.tar.gz")
    return wheel, sdist


def fresh_virtualenv(directory, *requirements):
    """A new virtualenv in ``directory`` with ``requirements`` installed by pip; returns its bin directory."""
    venv.create(directory, with_pip=True)
    bin_dir = Path(directory) / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *map(str, requirements)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return bin_dir
