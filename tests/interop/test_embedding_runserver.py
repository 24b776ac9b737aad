"""The tutorial's project under ``manage.py runserver``, as its readers start it, instead of daphne.

Django's own runserver serves WSGI, which carries no WebSocket: the project serves sync clients under it only
because its settings put ``"daphne"`` first in ``INSTALLED_APPS`` (daphne's runserver, ASGI, replaces Django's)
and set ``ASGI_APPLICATION``; ``manage.py check`` warns otherwise (``syncapp.W006``). The project is built as
``test_embedding.py`` builds it, from the tutorial's marked code blocks.
"""

import pytest

from tests.interop.conftest import INTEROP_DIR, V04_DIR, ScenarioRunner
from tests.interop.expectations import run_mixed_generations
from tests.interop.test_embedding import tutorial_site

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def runserver_site(tmp_path_factory, distributions):
    def runserver(python, port):
        # Without the autoreloader: one process, which terminate() ends, serves as the reloader's child would.
        return [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]

    with tutorial_site(tmp_path_factory.mktemp("runserver-site"), distributions, runserver, "runserver.log") as site:
        yield site


def test_real_clients_of_both_generations_converge_through_runserver(runserver_site, request, tmp_path):
    """Two 0.3.1 ``makeCfSync`` clients and a 0.4.0 ``makeWsSync`` and ``makeHttpSync`` client on one store."""
    assert "Starting ASGI/Daphne" in runserver_site.log_path.read_text(errors="replace")
    old_runner = ScenarioRunner(request.node, tmp_path, INTEROP_DIR)
    new_runner = ScenarioRunner(request.node, tmp_path, V04_DIR)
    run_mixed_generations(old_runner, new_runner, runserver_site, old_runner.new_store_id("runserver"))
