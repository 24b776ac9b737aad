"""The Store admin in a real browser: headless Debian Chromium against a real daphne process.

A client pushes through the real WebSocket endpoint and stays connected, a
second store comes in through ``livesync_import``; then the browser logs in,
reads the store list and a store's events, and filters them. Screenshots go to
``test-artifacts/`` at the repository root (git-ignored) and to the test's
``tmp_path``.
"""

import json
import shutil
import subprocess
import sys

import pytest
import websockets.sync.client

from tests.support.browser import start_chromium
from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.databases import sqlite_database
from tests.support.v03_client import connection_path, events

ARTIFACTS = REPO_ROOT / "test-artifacts"
PASSWORD = "browser-test-password"
LIVE_STORE = "browser-live-store"
IMPORTED_STORE = "browser-imported-store"


pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("browser_setup")]


def manage(database_url, *args, **env):
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": database_url, **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium-profile", (1400, 1000))
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    database_url = sqlite_database(tmp_path)
    manage(
        database_url,
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=admin@example.com",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    log = tmp_path / "import.ndjson"
    log.write_text(
        "".join(
            json.dumps({**event, "createdAt": f"2025-06-0{1 + event['seqNum'] // 10}T09:30:00.000Z"}) + "\n"
            for event in events(1, 25, name="v1.TodoImported", client_id="d1-client")
        )
    )
    manage(database_url, "livesync_import", IMPORTED_STORE, str(log))
    with DaphneServer(tmp_path / "daphne.log", {"DATABASE_URL": database_url}) as daphne:
        yield daphne


def screenshot(driver, tmp_path, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    shutil.copy(path, tmp_path / name)
    return path


def table_rows(driver, table_id):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")] for row in rows]


def click_and_wait(driver, element, url_part):
    """Click, then wait until the browser has navigated to a URL containing ``url_part``."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(element))
    WebDriverWait(driver, 15).until(expected_conditions.url_contains(url_part))


def test_store_list_and_events_render_in_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url = server.url + connection_path(LIVE_STORE)
    with websockets.sync.client.connect(url) as socket:
        for request_id, batch in (
            ("push-1", events(1, 30, client_id="phone")),
            ("push-2", events(31, 60, name="v1.TodoCompleted", client_id="laptop")),
        ):
            socket.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": request_id, "batch": batch}))
            assert json.loads(socket.recv(timeout=10)) == {"_tag": "WSMessage.PushAck", "requestId": request_id}
            socket.recv(timeout=10)  # the push's own broadcast

        browser.get(server.http_url + "/admin/login/?next=/admin/syncapp/store/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"), "/admin/syncapp/store/")

        rows = {row[1]: row for row in table_rows(browser, "result_list")}  # cell 0 is the action checkbox
        assert set(rows) == {LIVE_STORE, IMPORTED_STORE}
        assert rows[LIVE_STORE][2:5] == ["eventlog_7_browser_live_store", "60", "60"]
        assert rows[LIVE_STORE][-1] == "1"  # this test's socket, counted by the server's hub
        assert rows[IMPORTED_STORE][3:5] == ["25", "25"]
        list_shot = screenshot(browser, tmp_path, "admin-store-list.png")

    click_and_wait(browser, browser.find_element(By.LINK_TEXT, LIVE_STORE), "/change/")
    assert "Page 1 of 2 (60 events)" in browser.find_element(By.ID, "store-events").text
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "store-events"))
    rows = table_rows(browser, "event-list")
    assert rows[0][:3] == ["e1", "e0", "v1.TodoCreated"]
    assert rows[0][3] == '{\n  "id": "todo-1",\n  "text": "todo 1"\n}'
    assert rows[0][4:6] == ["phone", "session"]
    events_shot = screenshot(browser, tmp_path, "admin-store-events.png")

    browser.find_element(By.ID, "event-client-id").send_keys("laptop")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#event-filters input[type=submit]"), "laptop")
    rows = table_rows(browser, "event-list")
    assert [row[0] for row in rows] == [f"e{n}" for n in range(31, 61)]
    assert {row[4] for row in rows} == {"laptop"}

    browser.get(server.http_url + "/admin/syncapp/store/")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, IMPORTED_STORE), "/change/")
    rows = table_rows(browser, "event-list")
    assert rows[0][2] == "v1.TodoImported" and rows[0][-1] == "2025-06-01T09:30:00.000Z"

    print(f"screenshots: {list_shot} {events_shot}")
