"""A host project's URLconf as the README's embedding section writes it: its own views, livesync under sync/."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def own_api(request):
    return HttpResponse(f"host view: {request.method}")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("my/own/api/", own_api),
    path("sync/", include("syncapp.urls")),
]
