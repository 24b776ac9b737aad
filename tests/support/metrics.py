"""A real daphne process's ``/metrics``, as a test reads it (the process started with ``METRICS_SETTINGS``)."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "test-metrics-token-0123456789"
METRICS_SETTINGS = {"LIVESYNC_METRICS_TOKEN": METRICS_TOKEN}


def samples(http_url):
    """Every sample of the process at ``http_url``: ``[(name, labels, value)]``."""
    request = urllib.request.Request(f"{http_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric(http_url, name, **labels):
    """The sample ``name`` with exactly ``labels`` (0 when the process has none)."""
    return next((value for sample, got, value in samples(http_url) if sample == name and got == labels), 0.0)


def metric_total(http_url, name):
    """The sum of every sample ``name``, whatever its labels."""
    return sum(value for sample, _, value in samples(http_url) if sample == name)
