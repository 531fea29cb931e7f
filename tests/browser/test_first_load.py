"""UX-3 in real Chromium: the sign-in page's first load as received on the wire, and a second
visit that takes every static file from the browser's cache."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LIMIT = 30 * 1024


@pytest.fixture
def fresh_page(browser):
    """JavaScript on (scripts are only fetched then) and an empty cache."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def paths_served(live_server) -> list[str]:
    """Every path that reaches the live server, static files included."""
    paths: list[str] = []
    inner = live_server.app.wsgi_app  # WhiteNoise, wrapping Flask

    def count(environ, start_response):
        paths.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    live_server.app.wsgi_app = count
    return paths


def test_sign_in_first_load_is_under_30_kb_on_the_wire(fresh_page, live_server):
    finished = []
    fresh_page.on("requestfinished", lambda request: finished.append(request))
    fresh_page.goto(live_server.url + "/sign-in")
    fresh_page.wait_for_load_state("networkidle")

    total = 0
    for request in finished:
        sizes = request.sizes()  # as received: headers plus the body still encoded
        received = sizes["responseHeadersSize"] + sizes["responseBodySize"]
        total += received
        encoding = request.response().headers.get("content-encoding", "-")
        print(f"{received:>7} B  {encoding:<5} {request.url}")
        if "/static/" in request.url:
            assert encoding in ("br", "gzip"), request.url
    print(f"{total:>7} B  sign-in first load ({len(finished)} responses)")
    assert sum("/static/" in request.url for request in finished) == 3
    assert total < LIMIT, total


def test_second_visit_fetches_no_static_file(fresh_page, live_server, paths_served):
    def static_requests() -> list[str]:
        return [path for path in paths_served if path.startswith("/static/")]

    fresh_page.goto(live_server.url + "/sign-in")
    fresh_page.wait_for_load_state("networkidle")
    assert len(static_requests()) == 3

    paths_served.clear()
    fresh_page.goto(live_server.url + "/sign-in")
    fresh_page.wait_for_load_state("networkidle")
    assert paths_served == ["/sign-in"]  # the page itself is no-store; its files are cached
    assert fresh_page.evaluate("typeof htmx") == "object"  # and they were really used

    paths_served.clear()
    fresh_page.reload()
    fresh_page.wait_for_load_state("networkidle")
    assert static_requests() == []  # immutable: even a reload does not revalidate them
