from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from syncapp.urls import reference_urlpatterns

from . import demo

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before livesync's catch-all, which answers any other path with "Invalid path" as the reference does.
    path("demo", RedirectView.as_view(url="/demo/", query_string=True)),
    path("demo/", demo.demo, name="demo"),
    path("demo/server-todo/", demo.server_todo, name="demo-server-todo"),
    path("demo/<path:path>", demo.demo, name="demo-asset"),
    # A sync server only: every other path answers as the reference worker does.
    path("", include(reference_urlpatterns)),
]
