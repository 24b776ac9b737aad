"""One browser window of the TodoMVC demo, driven the way a person uses it.

Every window is its own headless Chromium with its own profile: its own OPFS databases, its own LiveStore
leader worker and its own WebSocket to livesync, as two people on two machines would have.
"""

from tests.support.browser import start_chromium
from tests.support.polling import wait_until

# The outer size: headless Chromium still reserves ~140 px of it for the (invisible) browser frame.
WINDOW_SIZE = (560, 600)
BOOT_TIMEOUT_S = 30
WAIT_TIMEOUT_S = 20
POLL_S = 0.05

# What the user sees in the list, in order: (text, completed) per todo, read in one pass so a re-render
# cannot interleave with the read.
READ_TODOS = """
return Array.from(document.querySelectorAll('.todo-list li'), (item) => [
  item.querySelector('label').textContent,
  item.classList.contains('completed'),
])
"""


class TodoWindow:
    def __init__(self, name, profile_dir):
        self.name = name
        self.console = []
        # The page's and its workers' console, attached to the report when a test fails.
        self.driver = start_chromium(profile_dir, WINDOW_SIZE, capture_console=True)

    def open(self, url):
        self.driver.get(url)
        self.wait_until_ready()

    def reload(self):
        self.driver.refresh()
        self.wait_until_ready()

    def wait_until_ready(self):
        """Until LiveStore has booted and the list shows the store's state (the page sets ``data-ready``)."""
        state = self.wait_for(
            lambda: self.driver.execute_script("return document.body.dataset.ready"), timeout=BOOT_TIMEOUT_S
        )
        assert state == "true", f"{self.name}: {self.sync_status()}"

    # What the user sees.

    def todos(self):
        return [tuple(todo) for todo in self.driver.execute_script(READ_TODOS)]

    def sync_status(self):
        return self.driver.execute_script("return document.querySelector('.sync-status').textContent")

    def sync_state(self):
        """``(waiting, server_head)`` from the status line: this window's changes the server has not confirmed,
        and the last event the server confirmed to it."""
        dataset = self.driver.execute_script("return {...document.querySelector('.sync-status').dataset}")
        return int(dataset.get("waiting", -1)), int(dataset.get("serverHead", -1))

    # What the user does.

    def add(self, text):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.driver.find_element(By.CSS_SELECTOR, ".new-todo").send_keys(text, Keys.ENTER)

    def toggle(self, text):
        self._click(text, "input[@class='toggle']")

    def delete(self, text):
        self._click(text, "button[@class='destroy']")

    def _click(self, text, control):
        """Clicks ``control`` in the todo labelled ``text``, once it is shown. The list is redrawn on every
        change, so an element found just before a sync update is gone by the click: then it is found again."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        xpath = f"//ul[@class='todo-list']/li[label[text()='{text}']]/{control}"

        def click():
            try:
                self.driver.find_element(By.XPATH, xpath).click()
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            return True

        assert self.wait_for(click), f"{self.name}: no todo {text!r} to click, the list shows {self.todos()}"

    # Waiting and evidence.

    def wait_for(self, condition, timeout=WAIT_TIMEOUT_S):
        """Polls ``condition`` until it returns something truthy or ``timeout`` passes; returns its last value."""
        return wait_until(condition, timeout, POLL_S)

    def screenshot(self, path):
        assert self.driver.save_screenshot(str(path)), f"{self.name}: screenshot failed"
        return path

    def collect_console(self):
        """Everything logged since the last call (chromedriver hands each entry out once), appended to ``console``."""
        self.console += [
            f"{entry['source']} {entry['level']} {entry['message']}" for entry in self.driver.get_log("browser")
        ]
        return self.console

    def close(self):
        self.driver.quit()


def wait_until_synced(window, head):
    """Until the server has confirmed every change of ``window`` and ``head`` events in all.

    Waiting for the head as well as for nothing waiting: a commit reaches the leader worker asynchronously, so
    "nothing waiting" alone can be read before the commit is counted.
    """
    assert window.wait_for(lambda: window.sync_state() == (0, head)), f"{window.name}: {window.sync_status()}"
