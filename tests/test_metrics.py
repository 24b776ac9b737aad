"""``/metrics``: who may read it, and labels that never name a store. (Real processes: tests/faults/test_metrics.py.)"""

import pytest
from django.core import checks
from django.test import Client

from tests.support.v03_client import events

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

TOKEN = "a-metrics-token-of-some-length"


def scrape(settings, livesync, **request):
    settings.LIVESYNC = {**settings.LIVESYNC, **livesync}
    return Client().get("/metrics", **request)


def test_metrics_are_off_until_configured(settings):
    response = scrape(settings, {})
    assert response.status_code == 404 and b"METRICS_TOKEN" in response.content


def test_a_token_is_required_once_set(settings):
    assert scrape(settings, {"METRICS_TOKEN": TOKEN}).status_code == 401
    assert scrape(settings, {"METRICS_TOKEN": TOKEN}, headers={"Authorization": "Bearer nope"}).status_code == 401
    allowed = scrape(settings, {"METRICS_TOKEN": TOKEN}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and allowed["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE livesync_pushes_total counter" in allowed.content


def test_allowed_addresses_admit_those_networks_only(settings):
    allowed = {"METRICS_ALLOWED_ADDRESSES": ["10.0.0.0/8", "127.0.0.1"]}
    assert scrape(settings, allowed).status_code == 200
    assert scrape(settings, allowed, REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(settings, allowed, REMOTE_ADDR="192.168.1.9").status_code == 403
    both = {**allowed, "METRICS_TOKEN": TOKEN}
    assert scrape(settings, both).status_code == 401
    assert (
        scrape(settings, both, REMOTE_ADDR="192.168.1.9", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 403
    )


async def test_no_label_names_a_store(connect, store_id, settings):
    client = await connect()
    await client.push("push-1", events(1, 2))
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    await client.recv()
    settings.LIVESYNC = {**settings.LIVESYNC, "METRICS_TOKEN": TOKEN}
    from asgiref.sync import sync_to_async

    body = (await sync_to_async(Client().get)("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).content
    assert b'livesync_pushes_total{generation="0.3",outcome="acknowledged"}' in body
    assert store_id.encode() not in body


def test_a_short_token_and_a_bad_network_are_errors(settings):
    def ids(livesync):
        settings.LIVESYNC = {"ALLOW_ANONYMOUS": True, **livesync}  # DEBUG is off: an open server is syncapp.E013
        return sorted(message.id for message in checks.run_checks() if message.id.startswith("syncapp.E"))

    assert ids({"METRICS_TOKEN": TOKEN, "METRICS_ALLOWED_ADDRESSES": ["::1", "10.0.0.0/8"]}) == []
    assert ids({"METRICS_TOKEN": "short"}) == ["syncapp.E011"]
    assert ids({"METRICS_ALLOWED_ADDRESSES": ["not-an-address"]}) == ["syncapp.E011"]
    assert ids({"METRICS_ALLOWED_ADDRESSES": "10.0.0.0/8"}) == ["syncapp.E011"]


def test_the_dashboard_and_the_prometheus_config_name_only_what_livesync_exports():
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    deploy = Path(__file__).resolve().parents[1] / "deploy"
    # A counter's family is named without the "_total" its samples carry.
    exported = {family.name + ("_total" if family.type == "counter" else "") for family in REGISTRY.collect()}
    dashboard = json.loads((deploy / "grafana" / "livesync.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expr in expressions for name in re.findall(r"\b((?:livesync|process)_[a-z_]+)", expr)}
    assert len(dashboard["panels"]) >= 10 and named
    # Histograms' buckets show up as <name>_bucket once observed; their family is what must exist.
    assert {re.sub(r"_(bucket|sum|count)$", "", name) for name in named} <= exported
    assert "livesync" in (deploy / "prometheus.yml").read_text()
