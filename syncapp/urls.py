"""HTTP routes of the sync endpoint; include them last, since the catch-all answers ``Invalid path``."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.info, name="livesync-info"),
    path("healthz", views.healthz, name="livesync-healthz"),
    re_path(r"^(?:.*/)?websocket$", views.websocket_without_upgrade, name="livesync-websocket-http"),
    re_path(r"^.*$", views.invalid_path, name="livesync-invalid-path"),
]
