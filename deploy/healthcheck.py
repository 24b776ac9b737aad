"""The replicas' health check: GET /healthz as a client of the deployment would send it.

Django answers 400 to a Host it does not serve, so the request names the first of DJANGO_ALLOWED_HOSTS
(a wildcard entry becomes a name it matches). Exits 0 when the database and the channel layer answer; else
prints the report, with the reasons when LIVESYNC_METRICS_TOKEN is set.
"""

import os
import sys
import urllib.error
import urllib.request


def host_header():
    first = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",")[0].strip()
    if first in ("", "*"):
        return "localhost"
    return "healthcheck" + first if first.startswith(".") else first


def main():
    port = os.environ.get("LIVESYNC_PORT", "8000")
    headers = {"Host": host_header()}
    # /healthz tells why a component is unreachable only to whom may read the metrics (else "unreachable").
    if os.environ.get("LIVESYNC_METRICS_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['LIVESYNC_METRICS_TOKEN']}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - a fixed http:// URL
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as error:
        print(f"unhealthy: {error.code} {error.read(2000).decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
