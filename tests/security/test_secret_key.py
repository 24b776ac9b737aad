"""Forgeable tokens: a SECRET_KEY that is public (the example project's development fallback) or weaker than
Django asks for (``django.core.checks.security.base``: 50 characters, 5 different ones) signs sessions and
livesync's tokens that anyone can forge. ``manage.py check`` says so as an error with DEBUG off, and the example
project refuses to start with one."""

import pytest
from django.core import checks

from syncapp import checks as syncapp_checks
from tests.support.daphne import REPO_ROOT, DaphneServer

pytestmark = pytest.mark.security

DEVELOPMENT_KEY = "insecure-development-key-change-me"
STRONG_KEY = "a-strong-production-secret-key-of-more-than-fifty-characters-0123456789"
WEAK_KEYS = {
    "the example's fallback": DEVELOPMENT_KEY,
    "49 characters": "abcdefghij" * 4 + "abcdefghi",
    "4 different characters": "abcd" * 20,
}


def messages(settings, *, debug, key, livesync, fallbacks=()):
    settings.DEBUG = debug
    settings.SECRET_KEY = key
    settings.SECRET_KEY_FALLBACKS = list(fallbacks)
    settings.LIVESYNC = livesync
    return sorted((m.id, m.msg) for m in checks.run_checks() if m.id.startswith("syncapp"))


@pytest.mark.parametrize("key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_debug_off_with_a_public_or_weak_secret_key_is_an_error(settings, key):
    found = messages(settings, debug=False, key=key, livesync={"ALLOW_ANONYMOUS": True})
    assert [message_id for message_id, _ in found] == ["syncapp.E014"]
    assert key not in found[0][1], "the check must not print the key"
    assert messages(settings, debug=False, key=STRONG_KEY, livesync={"ALLOW_ANONYMOUS": True}) == []
    # With DEBUG on and no validator trusting the key, Django's deploy checks are enough.
    assert messages(settings, debug=True, key=key, livesync={}) == []


def test_a_weak_key_among_the_fallbacks_is_an_error_too(settings):
    found = messages(settings, debug=False, key=STRONG_KEY, livesync={"ALLOW_ANONYMOUS": True}, fallbacks=["short"])
    assert [message_id for message_id, _ in found] == ["syncapp.E014"]
    assert "SECRET_KEY_FALLBACKS[0]" in found[0][1]


@pytest.mark.parametrize("validator", ["syncapp.tokens.validate_token", "syncapp.access.user_access"])
def test_a_validator_trusting_what_a_weak_key_signs_is_an_error_and_with_debug_on_a_warning(settings, validator):
    livesync = {"VALIDATE_PAYLOAD": validator}
    [(message_id, message)] = messages(settings, debug=False, key=DEVELOPMENT_KEY, livesync=livesync)
    assert message_id == "syncapp.E014" and validator in message
    [(message_id, message)] = messages(settings, debug=True, key=DEVELOPMENT_KEY, livesync=livesync)
    assert message_id == "syncapp.W005" and validator in message
    assert messages(settings, debug=False, key=STRONG_KEY, livesync=livesync) == []
    assert messages(settings, debug=True, key=STRONG_KEY, livesync=livesync) == []


def test_the_validator_is_recognised_as_a_callable_too(settings):
    from syncapp.tokens import validate_token

    found = messages(settings, debug=True, key="short", livesync={"VALIDATE_PAYLOAD": validate_token})
    assert [message_id for message_id, _ in found] == ["syncapp.W005"]


def test_an_open_server_with_debug_off_is_an_error_unless_allowed(settings):
    assert [m for m, _ in messages(settings, debug=False, key=STRONG_KEY, livesync={})] == ["syncapp.E013"]
    assert messages(settings, debug=False, key=STRONG_KEY, livesync={"ALLOW_ANONYMOUS": True}) == []


def test_the_example_fallback_is_the_key_the_check_knows():
    assert f'"{DEVELOPMENT_KEY}"' in (REPO_ROOT / "livesync_project" / "settings.py").read_text()
    assert DEVELOPMENT_KEY in syncapp_checks.PUBLIC_SECRET_KEYS


@pytest.mark.parametrize("key", [None, "too-short-for-production"], ids=["unset", "short"])
def test_the_example_project_refuses_to_start_with_debug_off_and_a_public_or_weak_key(tmp_path, key):
    """daphne as the image starts it (DJANGO_DEBUG=false) does not serve a single request."""
    settings = {"DJANGO_DEBUG": "false", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    if key is not None:
        settings["DJANGO_SECRET_KEY"] = key
    server = DaphneServer(tmp_path / "daphne.log", settings, ready_timeout=20)
    try:
        with pytest.raises(RuntimeError, match="exited with 1 before serving"):
            server.start()
    finally:
        server.stop()
    assert "DJANGO_SECRET_KEY must be set to a secret of your own" in server.log_tail(200)
