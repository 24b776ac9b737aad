"""The TodoMVC demo (``examples/todomvc``) at ``/demo/``: its Vite build, served by the daphne process it syncs with.

One process serves the page, its assets and the sync socket, so ``make run`` shows a working demo with nothing
else to start, and the page derives its sync URL from its own address. ``/demo/server-todo/`` shows Django
code taking part in a store: a staff member adds a todo from the server.
"""

import uuid

from django import forms
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotFound
from django.shortcuts import render
from django.utils import timezone
from django.views.static import serve

from syncapp import events
from syncapp.access import user_access
from syncapp.context import READ_ONLY, SyncContext

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


class ServerTodoForm(forms.Form):
    store_id = forms.CharField(label="storeId", max_length=255)
    text = forms.CharField(label="Todo", max_length=500)


def _may_write(user, store_id):
    """Why ``user`` may not write to ``store_id`` as a syncing client could not (StoreAccess), or None."""
    try:
        verdict = user_access(None, SyncContext(store_id, None, "server", user=user))
    except PermissionError as refused:
        return str(refused)
    return f"{user.get_username()} may only read store {store_id!r}" if verdict == READ_ONLY else None


@staff_member_required
def server_todo(request):
    """Add a todo to a demo store as the server: the event the demo's own windows commit for one.

    A staff login is not enough: the user needs the admin's permission to change stores, and the store access
    a syncing client of theirs would need to write (``StoreAccess``); CREATE_STORES applies as to any commit.
    """
    if not request.user.has_perm("syncapp.change_store"):
        raise PermissionDenied("adding a todo from the server needs the permission to change stores")
    added = None
    if request.method == "POST":
        form = ServerTodoForm(request.POST)
        if form.is_valid():
            store_id, text = form.cleaned_data["store_id"], form.cleaned_data["text"]
            created = {"id": str(uuid.uuid4()), "text": text, "createdAt": events.js_date(timezone.now())}
            try:
                if refusal := _may_write(request.user, store_id):
                    raise events.CommitRefused(refusal)
                events.commit(store_id, [("v1.TodoCreated", created)])
            except events.CommitRefused as refused:
                form.add_error("store_id", str(refused))
            else:
                added = text
                form = ServerTodoForm(initial={"store_id": store_id})
    else:
        form = ServerTodoForm(initial={"store_id": request.GET.get("storeId", "")})
    store_id = form["store_id"].value()
    return render(request, "demo/server_todo.html", {"form": form, "added": added, "store_id": store_id})
