"""Page or partial from the same URL (STYLE.md htmx rules)."""

from __future__ import annotations

from tests.conftest import PASSWORD


def test_plain_request_gets_the_page(client):
    body = client.get("/sign-in").get_data(as_text=True)
    assert body.startswith("<!doctype html>")
    assert 'id="sign-in-form"' in body


def test_htmx_request_gets_the_partial(client):
    response = client.get("/sign-in", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith("<form")
    assert {"HX-Request", "HX-Boosted", "HX-History-Restore-Request"} <= set(response.vary)


def test_boosted_and_history_restore_get_the_page(client):
    for extra in ({"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}):
        body = client.get("/sign-in", headers={"HX-Request": "true", **extra}).get_data(
            as_text=True
        )
        assert body.startswith("<!doctype html>")


def test_failed_htmx_sign_in_answers_422_with_the_form(client, auth, make_user):
    make_user()
    token = auth.csrf_token()
    response = client.post(
        "/sign-in",
        data={"csrf_token": token, "email": "nurse@clinic.example", "password": "wrong one here"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith("<form") and 'role="alert"' in body


def test_successful_htmx_sign_in_redirects_with_hx_redirect(client, auth, make_user):
    make_user()
    token = auth.csrf_token()
    response = client.post(
        "/sign-in",
        data={"csrf_token": token, "email": "nurse@clinic.example", "password": PASSWORD},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/"


def test_error_pages_as_page_and_partial(client):
    for status, path in ((404, "/nowhere"), (405, "/sign-out")):
        page = client.get(path)
        partial = client.get(path, headers={"HX-Request": "true"})
        assert page.status_code == partial.status_code == status
        assert "<html" in page.get_data(as_text=True)
        assert "<html" not in partial.get_data(as_text=True)


def test_every_error_page_as_page_and_partial(app):
    """400, 403, 404, 422, 429 and 500 render as pages and, for htmx, as partials."""
    from flask import abort

    @app.get("/boom/<int:code>")
    def boom(code: int):
        if code == 500:
            raise RuntimeError("kaboom")
        abort(code)

    client = app.test_client()
    for code in (400, 403, 404, 422, 429, 500):
        page = client.get(f"/boom/{code}")
        partial = client.get(f"/boom/{code}", headers={"HX-Request": "true"})
        assert page.status_code == partial.status_code == code
        assert "<html" in page.get_data(as_text=True)
        body = partial.get_data(as_text=True)
        assert "<html" not in body and f"Error {code}" in body and 'role="alert"' in body
        assert "kaboom" not in page.get_data(as_text=True)
