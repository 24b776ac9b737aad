"""Tests of what livesync and its example project defend by default (SECURITY.md)."""


def pytest_configure(config):
    # Until pyproject.toml registers it (the run uses --strict-markers).
    config.addinivalue_line("markers", "security: what livesync and the example project defend by default")
