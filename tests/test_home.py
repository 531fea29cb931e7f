"""The signed-in home page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine


@pytest.mark.parametrize(
    ("signed_in_at", "shown"),
    [
        (datetime(2026, 11, 23, 22, 30, tzinfo=UTC), "09:30 on Tuesday 24 November 2026 (AEDT)"),
        (datetime(2026, 6, 1, 22, 30, tzinfo=UTC), "08:30 on Tuesday 2 June 2026 (AEST)"),
    ],
)
def test_signed_in_time_is_in_the_clinics_time_zone(
    app, client, auth, make_user, signed_in_at, shown
):
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    make_user()
    with time_machine.travel(signed_in_at, tick=False):
        assert auth.login().headers["Location"] == "/"
        page = client.get("/").get_data(as_text=True)
    # Read by people in Sydney time; for machines the stored UTC instant.
    assert f'<time datetime="{signed_in_at.isoformat()}">{shown}</time>' in page
    assert "UTC" not in page
