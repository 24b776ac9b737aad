"""CORS headers as the reference worker sends them when ``enableCORS`` is on (``LIVESYNC["ENABLE_CORS"]``)."""

from .. import conf


def cors_headers(requested_headers):
    """The Access-Control-* headers to add (none unless enabled); ``requested_headers`` is the preflight's list."""
    if not conf.get("ENABLE_CORS"):
        return {}
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": requested_headers or "*",
    }
