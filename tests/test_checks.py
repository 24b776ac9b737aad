import sys

import pytest
from django.core import checks

from livesync_project.settings import redis_channel_layer


def ids(settings_override, settings, debug=True):
    settings.DEBUG = debug
    settings.LIVESYNC = settings_override
    return sorted(message.id for message in checks.run_checks() if message.id.startswith("syncapp"))


def test_a_correct_configuration_passes(settings):
    assert (
        ids({"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all", "ADMIN_SECRET": "s3cret"}, settings, debug=False)
        == []
    )


def test_unimportable_and_uncallable_hooks_are_errors(settings):
    assert ids({"ON_PUSH": "tests.support.hooks.nope", "ON_PULL": "tests.support.hooks.seen"}, settings) == [
        "syncapp.E002",
        "syncapp.E003",
    ]


def test_unknown_keys_and_bad_numbers_are_errors(settings):
    assert ids({"PULL_CHUNK_SIZ": 5, "PULL_CHUNK_SIZE": 0}, settings) == ["syncapp.E001", "syncapp.E004"]


def test_the_store_cache_and_the_database_pool_must_be_positive_whole_numbers(settings):
    assert ids({"STORE_CACHE_SIZE": 0}, settings) == ["syncapp.E004"]
    assert ids({"DATABASE_THREADS": 2.5}, settings) == ["syncapp.E004"]
    assert ids({"DATABASE_THREADS": None, "STORE_CACHE_SIZE": 100}, settings) == []


def test_spare_tables_are_a_whole_number_zero_included(settings):
    assert ids({"SPARE_TABLES": -1}, settings) == ["syncapp.E004"]
    assert ids({"SPARE_TABLES": True}, settings) == ["syncapp.E004"]
    assert ids({"SPARE_TABLES": 0}, settings) == []


def test_production_without_validator_is_an_error_unless_anonymous_access_is_meant(settings):
    assert ids({}, settings, debug=False) == ["syncapp.E013"]
    assert ids({"ALLOW_ANONYMOUS": True}, settings, debug=False) == []
    assert ids({}, settings, debug=True) == []


def test_a_missing_default_channel_layer_is_an_error(settings):
    settings.CHANNEL_LAYERS = {}
    assert ids({}, settings) == ["syncapp.E008"]
    del settings.CHANNEL_LAYERS
    assert ids({}, settings) == ["syncapp.E008"]


def test_write_buffer_too_small_for_the_largest_frames_and_a_bad_header_timeout_are_errors(settings):
    assert ids({"SOCKET_WRITE_BUFFER_BYTES": 2_000_000, "REQUEST_HEADER_TIMEOUT": 0}, settings) == [
        "syncapp.E006",
        "syncapp.E007",
    ]
    assert ids({"SOCKET_WRITE_BUFFER_BYTES": 3_000_000, "MAX_MESSAGE_BYTES": 1_000_000}, settings) == []


def test_no_validator_error_when_every_endpoint_has_its_own(settings, monkeypatch):
    import sys

    from syncapp.server import mounts

    monkeypatch.setattr(mounts, "_mounts", [])
    monkeypatch.delitem(sys.modules, "tests.support.guarded_asgi", raising=False)
    settings.ASGI_APPLICATION = "tests.support.guarded_asgi.application"
    assert ids({}, settings, debug=False) == []
    mounts.record("0.3 websocket", None)
    assert ids({}, settings, debug=False) == ["syncapp.E013"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12's wait_for makes no task of its own")
def test_a_socket_timeout_on_the_pubsub_layers_redis_warns_on_python_3_11(settings):
    layer = redis_channel_layer("redis://127.0.0.1:6379/0", "pubsub")
    settings.CHANNEL_LAYERS = {"default": layer}
    assert ids({}, settings) == []
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
    assert ids({}, settings) == ["syncapp.W003"]
    settings.CHANNEL_LAYERS = {
        "default": {**layer, "CONFIG": {"hosts": [{"address": "redis://h", "socket_timeout": 3}]}}
    }
    assert ids({}, settings) == ["syncapp.W003"]
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer("redis://127.0.0.1:6379/0", "core")}
    assert ids({}, settings) == []


def runserver_warnings():
    return [message for message in checks.run_checks() if message.id == "syncapp.W006"]


def test_a_runserver_that_would_serve_wsgi_warns_and_names_the_fix(settings):
    without_daphne = [app for app in settings.INSTALLED_APPS if app != "daphne"]
    settings.INSTALLED_APPS = without_daphne
    (warning,) = runserver_warnings()
    assert '"daphne" is not in INSTALLED_APPS' in warning.msg
    assert 'Put "daphne" first in INSTALLED_APPS' in warning.hint and "ASGI_APPLICATION" in warning.hint
    # Appended, daphne comes after staticfiles, whose runserver (WSGI) is the one manage.py runs.
    settings.INSTALLED_APPS = [*without_daphne, "daphne"]
    (warning,) = runserver_warnings()
    assert '"daphne" comes after django.contrib.staticfiles' in warning.msg
    settings.INSTALLED_APPS = ["daphne", *without_daphne]
    assert runserver_warnings() == []


def test_a_runserver_without_an_asgi_application_warns(settings):
    del settings.ASGI_APPLICATION
    (warning,) = runserver_warnings()
    assert "ASGI_APPLICATION is not set" in warning.msg
