"""The TodoMVC demo (``examples/todomvc``) at ``/demo/``: its Vite build, served by the daphne process it syncs with.

One process serves the page, its assets and the sync socket, so ``make run`` shows a working demo with nothing
else to start, and the page derives its sync URL from its own address.
"""

from django.conf import settings
from django.http import HttpResponseNotFound
from django.views.static import serve

NOT_BUILT = (
    "The TodoMVC demo is not built. Build it with `make demo` "
    "(or `npm ci && npm run build` in examples/todomvc; needs Node 20+), then reload.\n"
)


def demo(request, path=""):
    """``/demo/`` is the app's ``index.html``; ``/demo/assets/…`` its hashed scripts, styles and wasm."""
    root = settings.DEMO_ROOT
    if not (root / "index.html").is_file():
        return HttpResponseNotFound(NOT_BUILT, content_type="text/plain")
    response = serve(request, path or "index.html", document_root=root)
    if not path:
        # The page names assets by content hash: a rebuild must reach browsers that loaded the old page.
        response["Cache-Control"] = "no-cache"
    return response
