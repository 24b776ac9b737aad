"""A user logged into the Django admin syncs the demo on a store they may write, and is refused on another.

The server runs ``syncapp.access.user_access``: the session cookie the browser sends with the demo's WebSocket
is all the client needs, and ``StoreAccess`` rows (as the admin manages them) decide which stores it may sync.
"""

import subprocess
import sys
import time
import uuid

import pytest

from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.databases import sqlite_database

from .todo_window import TodoWindow, wait_until_synced

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("browser_setup"), pytest.mark.timeout(150)]

PASSWORD = "a-password-for-the-access-test"
# How long a refused window is watched for a confirmation that must not come.
REFUSED_WATCH_S = 3.0

SETUP = """
from django.contrib.auth.models import User
from syncapp.models import StoreAccess
alice = User.objects.create_user("alice", password={password!r}, is_staff=True)
StoreAccess.objects.create(pattern="allowed-*", user=alice, access=StoreAccess.WRITE)
"""


@pytest.fixture(scope="module")
def access_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("access-server")
    database_url = sqlite_database(directory)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP.format(password=PASSWORD)],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": database_url}),
        check=True,
        capture_output=True,
    )
    settings = {"DATABASE_URL": database_url, "LIVESYNC_VALIDATE_PAYLOAD": "syncapp.access.user_access"}
    with DaphneServer(directory / "daphne.log", settings) as server:
        yield server


def log_in(window, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    driver = window.driver
    driver.get(f"{server.http_url}/admin/login/?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(driver, 15).until(expected_conditions.url_to_be(f"{server.http_url}/admin/"))


def test_a_logged_in_user_syncs_the_stores_they_may_write_and_is_refused_elsewhere(access_server, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    window = TodoWindow("alice", tmp_path / "profile-alice")
    try:
        log_in(window, access_server)
        window.open(f"{access_server.http_url}/demo/?storeId=allowed-{suffix}")
        window.add("written by alice")
        wait_until_synced(window, 1)

        window.open(f"{access_server.http_url}/demo/?storeId=forbidden-{suffix}")
        window.add("not allowed")
        time.sleep(REFUSED_WATCH_S)
        assert window.sync_state() == (1, 0), window.sync_status()
    finally:
        window.close()
    log = access_server.log_path.read_text(errors="replace")
    assert f"refused a 0.3 websocket request for store 'forbidden-{suffix}'" in log
    assert "alice may not sync store" in log
    assert f"refused a 0.3 websocket request for store 'allowed-{suffix}'" not in log
