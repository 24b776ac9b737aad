"""The TodoMVC demo (LiveStore 0.3.1 in the browser, synced through livesync) as two people would use it.

Each window is a separate headless Chromium (own OPFS store, own leader worker, own WebSocket) on the same
storeId, served by one real daphne process. The tests assert on the list each window shows.

Offline is a real network cut: Chromium's DevTools offline mode (what playwright's ``setOffline`` and
chromedriver's network conditions use) only affects the page, not LiveStore's leader worker, whose WebSocket
keeps syncing. So the window that goes offline reaches daphne through a ``TcpProxy`` that the test cuts.
"""

import base64
import time

import pytest

from tests.support.proxy import TcpProxy

from .conftest import ARTIFACTS
from .todo_window import wait_until_synced

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("browser_setup"), pytest.mark.timeout(150)]

# How long a window that should not see a change is watched before concluding it did not.
QUIET_PERIOD_S = 1.0


def wait_for_todos(windows, expected):
    """Until every window shows exactly ``expected``; returns the seconds it took, or fails with what each shows."""
    started = time.monotonic()
    for window in windows:
        window.wait_for(lambda window=window: window.todos() == expected)
    shown = {window.name: window.todos() for window in windows}
    assert all(todos == expected for todos in shown.values()), f"expected {expected}, windows show {shown}"
    return time.monotonic() - started


def side_by_side(window, shots, path):
    """One image of both windows with their names above them, rendered by ``window`` (which it navigates away)."""
    cells = "".join(
        f'<figure><figcaption>{name}</figcaption><img src="data:image/png;base64,{data}"></figure>'
        for name, data in ((name, base64.b64encode(shot.read_bytes()).decode()) for name, shot in shots)
    )
    page = (
        "<!doctype html><style>body{margin:0;padding:16px;display:inline-flex;gap:16px;background:#ddd;"
        "font:15px system-ui,sans-serif}figure{margin:0}figcaption{padding:0 0 6px 4px;color:#333}"
        "img{display:block;border:1px solid #999}</style>" + cells
    )
    driver = window.driver
    driver.get("data:text/html;base64," + base64.b64encode(page.encode()).decode())
    width, height, frame = driver.execute_script(
        "return [document.body.offsetWidth, document.body.offsetHeight, window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(width, height + frame)
    return window.screenshot(path)


def test_two_windows_add_complete_and_delete(open_window, store_url, screenshot, observe):
    first = open_window("window 1", store_url())
    second = open_window("window 2", store_url())
    assert first.todos() == second.todos() == []

    for text in ("Buy milk", "Walk the dog", "Book flights"):
        first.add(text)
    added = [("Buy milk", False), ("Walk the dog", False), ("Book flights", False)]
    observe("added in window 1, shown in window 2", wait_for_todos([second], added))

    second.toggle("Buy milk")
    completed = [("Buy milk", True), ("Walk the dog", False), ("Book flights", False)]
    observe("completed in window 2, shown in window 1", wait_for_todos([first], completed))

    first.delete("Walk the dog")
    second.add("Call the plumber")
    wait_for_todos([first, second], [("Buy milk", True), ("Book flights", False), ("Call the plumber", False)])
    for window in (first, second):
        wait_until_synced(window, head=6)

    shots = [
        (window.name, screenshot(window, f"todomvc-{window.name.replace(' ', '-')}.png")) for window in (first, second)
    ]
    side_by_side(first, shots, ARTIFACTS / "todomvc-two-windows.png")


def test_offline_window_catches_up(open_window, store_url, server, screenshot, observe):
    with TcpProxy.for_url(server.http_url) as proxy:
        online = open_window("online window", store_url())
        offline = open_window("offline window", store_url(f"http://127.0.0.1:{proxy.port}"))
        online.add("Water the plants")
        wait_for_todos([online, offline], [("Water the plants", False)])

        proxy.cut()
        cut_at = time.monotonic()
        offline.toggle("Water the plants")
        offline.add("Fix the bike")
        assert offline.wait_for(lambda: offline.sync_state() == (2, 1)), offline.sync_status()
        online.add("Pay the rent")
        wait_until_synced(online, head=2)
        time.sleep(QUIET_PERIOD_S)
        assert online.todos() == [("Water the plants", False), ("Pay the rent", False)]
        assert offline.todos() == [("Water the plants", True), ("Fix the bike", False)]
        assert offline.sync_state() == (2, 1), offline.sync_status()

        proxy.restore()
        # The 0.3.1 client's reconnect backoff doubles while it is cut off: the wait after a restore grows with this.
        observe("offline for", time.monotonic() - cut_at)
        converged = [("Water the plants", True), ("Fix the bike", False), ("Pay the rent", False)]
        observe("reconnected, both windows converged", wait_for_todos([online, offline], converged))
        for window in (online, offline):
            wait_until_synced(window, head=4)
        screenshot(offline, "todomvc-after-reconnect.png")


def test_reload_keeps_the_list(open_window, store_url, observe):
    first = open_window("window 1", store_url())
    first.add("Renew passport")
    first.add("Buy stamps")
    first.toggle("Buy stamps")
    expected = [("Renew passport", False), ("Buy stamps", True)]
    wait_for_todos([first], expected)
    # Reloaded only once the server has every change: see examples/todomvc/README.md on reloading too early.
    wait_until_synced(first, head=3)

    started = time.monotonic()
    first.reload()
    observe("reload until the list shows", time.monotonic() - started)
    assert first.todos() == expected

    # The reloaded window still syncs both ways with a window that joins afterwards.
    second = open_window("window 2", store_url())
    wait_for_todos([second], expected)
    second.add("Post the letter")
    first.toggle("Renew passport")
    wait_for_todos([first, second], [("Renew passport", True), ("Buy stamps", True), ("Post the letter", False)])


def test_a_todo_added_by_the_server_shows_in_an_open_window(open_window, store_url, server, tmp_path, observe):
    """A staff member adds a todo on the example project's server-side page (``syncapp.events.commit``); the
    window showing the store displays it without a reload, after its own todo."""
    import subprocess
    import sys

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support.browser import start_chromium
    from tests.support.daphne import REPO_ROOT, server_environment

    created = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username=staff", "--email=s@example.com"],
        cwd=REPO_ROOT,
        env=server_environment({**server.settings, "DJANGO_SUPERUSER_PASSWORD": "server-todo-password"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0 or "already taken" in created.stderr, created.stderr
    url = store_url()
    store_id = url.split("storeId=", 1)[1]
    window = open_window("window 1", url)
    window.add("Added in the window")
    wait_until_synced(window, head=1)

    staff = start_chromium(tmp_path / "profile-staff", (900, 700))
    try:
        staff.get(f"{server.http_url}/admin/login/?next=/demo/server-todo/%3FstoreId%3D{store_id}")
        staff.find_element(By.ID, "id_username").send_keys("staff")
        staff.find_element(By.ID, "id_password").send_keys("server-todo-password")
        staff.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        # Each click loads a page: wait for what the next one shows, not for the click.
        arrived = WebDriverWait(staff, 20)
        arrived.until(expected_conditions.presence_of_element_located((By.ID, "id_text"))).send_keys(
            "Added by the server"
        )
        started = time.monotonic()
        staff.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        added = arrived.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".added")))
        assert "Added “Added by the server”" in added.text
    finally:
        staff.quit()
    wait_for_todos([window], [("Added in the window", False), ("Added by the server", False)])
    observe("added on the server, shown in the window", time.monotonic() - started)
    wait_until_synced(window, head=2)
