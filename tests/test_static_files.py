"""Static files: hashed names, pre-compressed, immutable caching, first load under 30 kB (UX-3)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import brotli
import pytest

from services import static_files
from tests.conftest import make_app

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSET_RE = re.compile(r'(?:src|href)="(/static/[^"]+)"')
HASHED_RE = re.compile(r"^/static/(?P<stem>.+)\.(?P<hash>[0-9a-f]{12})(?P<ext>\.[a-z]+)$")
ONE_YEAR = 365 * 24 * 60 * 60


def page_assets(client, path: str = "/sign-in") -> list[str]:
    return ASSET_RE.findall(client.get(path).get_data(as_text=True))


def original(url: str) -> bytes:
    """The file in static/ that a hashed URL stands for."""
    match = HASHED_RE.match(url)
    assert match, f"{url} has no content hash in its name"
    return (STATIC / f"{match['stem']}{match['ext']}").read_bytes()


def cache_directives(response) -> dict[str, str]:
    directives = {}
    for part in response.headers["Cache-Control"].split(","):
        name, _, value = part.strip().partition("=")
        directives[name.lower()] = value
    return directives


def test_pages_link_static_files_by_content_hash(client):
    assets = page_assets(client)
    assert [HASHED_RE.match(url)["stem"] for url in assets] == [
        "css/app",
        "vendor/htmx-2.0.11.min",
        "js/app",
    ]
    for url in assets:
        digest = hashlib.sha256(original(url)).hexdigest()
        assert HASHED_RE.match(url)["hash"] == digest[:12], url


def test_hashed_static_files_are_cached_at_least_a_year_as_immutable(client):
    for url in page_assets(client):
        response = client.get(url)
        assert response.status_code == 200
        directives = cache_directives(response)
        assert "public" in directives and "immutable" in directives, url
        assert int(directives["max-age"]) >= ONE_YEAR, url
        assert response.headers["Vary"] == "Accept-Encoding"
        response.close()


@pytest.mark.parametrize("encoding", ["br", "gzip", None])
def test_static_files_are_served_precompressed(client, encoding):
    decompress = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[encoding]
    headers = {"Accept-Encoding": encoding} if encoding else {}
    for url in page_assets(client):
        response = client.get(url, headers=headers)
        assert response.headers.get("Content-Encoding") == encoding, url
        body = response.get_data()
        assert decompress(body) == original(url), url
        if encoding:
            assert len(body) < len(original(url)) / 2, url
        response.close()


def test_plain_static_names_still_work_with_a_short_cache(client):
    response = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert response.get_data() == (STATIC / "vendor/htmx-2.0.11.min.js").read_bytes()
    directives = cache_directives(response)
    assert "immutable" not in directives and int(directives["max-age"]) <= 60
    response.close()


def test_static_responses_carry_the_security_headers(client):
    for url in [*page_assets(client), "/static/js/app.js"]:
        response = client.get(url, headers={"Accept-Encoding": "br"})
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin", url
        assert "default-src 'none'" in response.headers["Content-Security-Policy"], url
        assert "Access-Control-Allow-Origin" not in response.headers, url
        response.close()


def test_compression_happens_once_at_start_not_per_request_or_per_process(
    app, client, database_url, monkeypatch
):
    """The build made for this app is reused: serving and a second app compress nothing."""

    def no_compressing(*args, **kwargs):
        raise AssertionError("compressed again")

    monkeypatch.setattr(brotli, "compress", no_compressing)
    monkeypatch.setattr(gzip, "compress", no_compressing)
    for url in page_assets(client):
        response = client.get(url, headers={"Accept-Encoding": "br"})
        assert response.headers["Content-Encoding"] == "br"
        response.close()
    second = make_app(database_url).test_client()
    assert page_assets(second) == page_assets(client)


def test_a_changed_file_gets_a_new_name_and_the_old_copy_stays(tmp_path):
    source, build = tmp_path / "static", tmp_path / "build"
    (source / "css").mkdir(parents=True)
    (source / "css" / "a.css").write_text("body { color: black; }\n" * 50)
    first = static_files.build(source, build)["css/a.css"]
    assert re.fullmatch(r"css/a\.[0-9a-f]{12}\.css", first)
    (source / "css" / "a.css").write_text("body { color: navy; }\n" * 50)
    second = static_files.build(source, build)["css/a.css"]
    assert second != first
    for name in (first, second):
        copy = build / name
        assert brotli.decompress((build / f"{name}.br").read_bytes()) == copy.read_bytes()
        assert gzip.decompress((build / f"{name}.gz").read_bytes()) == copy.read_bytes()
    files = {path.relative_to(build).as_posix() for path in build.rglob("*") if path.is_file()}
    assert files == {name + suffix for name in (first, second) for suffix in ("", ".br", ".gz")}


def test_sign_in_page_first_load_is_under_30_kb_as_served(client):
    """UX-3: the page (gzip-compressed, as the proxy serves it) and its files as the app
    serves them to a browser that accepts brotli."""
    page = client.get("/sign-in")
    assets = ASSET_RE.findall(page.get_data(as_text=True))
    assert len(assets) == 3  # css, htmx, app.js: nothing from a CDN
    total = len(gzip.compress(page.get_data(), 9))
    for url in assets:
        response = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert response.status_code == 200
        total += len(response.get_data())
        response.close()
    assert total < 30 * 1024, total
