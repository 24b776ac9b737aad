"""``/healthz`` answers anyone, so it says which component is unreachable but not why: the reason names
internal hosts and ports. Staff users and holders of the metrics token get the reason."""

import pytest

from livesync_project.settings import redis_channel_layer
from tests.support.daphne import free_port

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "a-metrics-token-for-the-health-test"


@pytest.fixture
def unreachable_redis(settings):
    port = free_port()
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(f"redis://127.0.0.1:{port}/0", "pubsub")}
    settings.LIVESYNC = {**settings.LIVESYNC, "METRICS_TOKEN": METRICS_TOKEN}
    return port


async def test_anonymous_callers_learn_only_that_a_component_is_unreachable(async_client, unreachable_redis):
    response = await async_client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "channel_layer": "unreachable"}
    assert str(unreachable_redis) not in response.content.decode()
    wrong = await async_client.get("/healthz", headers={"Authorization": "Bearer not-the-metrics-token"})
    assert wrong.json() == {"database": "ok", "channel_layer": "unreachable"}


async def test_the_metrics_token_and_staff_users_get_the_reason(async_client, unreachable_redis, django_user_model):
    from asgiref.sync import sync_to_async

    with_token = await async_client.get("/healthz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert with_token.status_code == 503
    assert with_token.json()["channel_layer"].startswith("unreachable: ")
    assert str(unreachable_redis) in with_token.json()["channel_layer"]

    user = await sync_to_async(django_user_model.objects.create_user)("member", password="x")
    await async_client.aforce_login(user)
    assert (await async_client.get("/healthz")).json()["channel_layer"] == "unreachable"
    user.is_staff = True
    await sync_to_async(user.save)()
    detailed = (await async_client.get("/healthz")).json()
    assert str(unreachable_redis) in detailed["channel_layer"], detailed
