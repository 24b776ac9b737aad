"""``/demo/``: the demo's build as Django serves it, on a stand-in build (no Node or browser needed)."""

import pytest
from django.test import Client

INDEX = '<!doctype html><script type="module" src="/demo/assets/index-abc.js"></script>'


@pytest.fixture
def build(tmp_path, settings):
    settings.DEMO_ROOT = tmp_path
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('demo')")
    (tmp_path / "assets" / "wa-sqlite-abc.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "index.html").write_text(INDEX)
    return tmp_path


def test_page_and_assets_are_served(client, build):
    page = client.get("/demo/?storeId=groceries")
    assert page.status_code == 200
    assert b"".join(page.streaming_content).decode() == INDEX
    assert page["Content-Type"].startswith("text/html")
    # A rebuild renames the assets, so the page itself must be revalidated.
    assert page["Cache-Control"] == "no-cache"

    script = client.get("/demo/assets/index-abc.js")
    assert script.status_code == 200 and script["Content-Type"].startswith("text/javascript")
    # Browsers compile wasm from a stream only when it is served as application/wasm.
    assert client.get("/demo/assets/wa-sqlite-abc.wasm")["Content-Type"] == "application/wasm"


def test_missing_files_and_paths_outside_the_build_are_not_served(build):
    client = Client(raise_request_exception=False)
    assert client.get("/demo/assets/missing.js").status_code == 404
    # Django refuses a path that leaves the build (SuspiciousFileOperation: 400).
    assert client.get("/demo/%2e%2e/manage.py").status_code == 400


def test_without_a_build_the_page_says_how_to_build_it(client, settings, tmp_path):
    settings.DEMO_ROOT = tmp_path / "dist"
    response = client.get("/demo/")
    assert response.status_code == 404
    assert "make demo" in response.content.decode()


def test_the_demo_path_redirects_to_the_page(client, build):
    response = client.get("/demo?storeId=groceries")
    assert response.status_code == 302 and response["Location"] == "/demo/?storeId=groceries"
