"""UX-2 without a browser: what the field macro writes for screen readers. (axe-core runs on
every page state of the browser tests, see tests/browser/conftest.py.)"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.test_wizard import start_setup


class Fields(HTMLParser):
    """The attributes of every visible form control, by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.ids: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.by_id[found.get("id") or ""] = found


def assert_no_none_attributes(html: str, expected: set[str]) -> None:
    fields = Fields(html)
    assert expected <= set(fields.by_id), fields.by_id
    assert '="None"' not in html
    for field_id in expected:
        attrs = fields.by_id[field_id]
        assert "aria-invalid" not in attrs, attrs
        assert "aria-describedby" not in attrs, attrs


@pytest.fixture
def required(set_policy, make_user):
    set_policy(mode="required", methods="totp,email,sms")
    return make_user()


def test_fields_without_errors_have_no_aria_invalid_or_describedby(client, auth, required):
    assert_no_none_attributes(client.get("/sign-in").get_data(as_text=True), {"email", "password"})
    assert_no_none_attributes(client.get("/forgot-password").get_data(as_text=True), {"email"})
    start_setup(client, auth)
    page = client.get("/mfa/setup/app/code").get_data(as_text=True)
    assert_no_none_attributes(page, {"code"})
    assert auth.post("/mfa/setup", {"method": "email"}).headers["Location"] == "/mfa/setup/email"
    page = client.get("/mfa/setup/email").get_data(as_text=True)
    assert_no_none_attributes(page, {"email"})


def test_field_with_an_error_points_at_it(client, auth, required):
    start_setup(client, auth)
    response = auth.post("/mfa/setup/app/code", {"code": "000000"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    fields = Fields(html)
    code = fields.by_id["code"]
    assert code["aria-invalid"] == "true"
    assert code["aria-describedby"] == "code-error"
    assert 'id="code-error">That code did not work' in html


def test_hint_is_described_without_marking_the_field_invalid(client, auth, required):
    auth.login()
    assert auth.post("/mfa/setup", {"method": "sms"}).headers["Location"] == "/mfa/setup/sms"
    html = client.get("/mfa/setup/sms").get_data(as_text=True)
    number = Fields(html).by_id["number"]
    assert number["aria-describedby"] == "number-hint" and "number-hint" in Fields(html).ids
    assert "aria-invalid" not in number
