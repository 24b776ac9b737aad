"""Public: HTTP routes of the sync endpoint, for a project's ``urls.py``.

``urlpatterns`` is what a project includes under a prefix of its own
(``path("sync/", include("syncapp.urls"))``): the reference's info text at the
prefix, ``healthz``, ``metrics`` (off until configured), and the plain-HTTP
answer of ``websocket``. Every other URL
stays the project's, with Django's own 404s and ``APPEND_SLASH``.

``reference_urlpatterns`` is for a server that is only a sync server (the
example project): as on the reference worker, any path ending in ``/websocket``
is the sync endpoint and every other path is answered ``Invalid path``.
"""

from django.urls import URLPattern, path, re_path

from .server import views

urlpatterns: list[URLPattern] = [
    path("", views.info, name="livesync-info"),
    path("healthz", views.healthz, name="livesync-healthz"),
    path("metrics", views.metrics_view, name="livesync-metrics"),
    path("websocket", views.websocket_without_upgrade, name="livesync-websocket-http"),
]

reference_urlpatterns: list[URLPattern] = [
    path("", views.info),
    path("healthz", views.healthz),
    path("metrics", views.metrics_view),
    re_path(r"^(?:.*/)?websocket$", views.websocket_without_upgrade),
    re_path(r"^.*$", views.invalid_path, name="livesync-invalid-path"),
]
