"""Secrets at rest (FAC-7): a copy of the database alone lets nobody pass the second step."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyotp
import sqlalchemy as sa
import time_machine

from models import Base, db
from services import recovery

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def dump_everything(app) -> str:
    """Every value of every column of every table, as text (bytes as hex and raw)."""
    out: list[str] = []
    with app.app_context():
        for table in Base.metadata.sorted_tables:
            for row in db.session.execute(sa.select(table)).all():
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value.hex())
                        out.append(value.decode("latin-1"))
                    else:
                        out.append(str(value))
    return "\n".join(out)


def test_database_holds_no_usable_secret(app, client, auth, make_user, set_policy):
    set_policy(mode="required", remember_days=90)
    make_user()
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.post("/mfa/setup", {"method": "totp"})
        page = client.get("/mfa/setup/app").get_data(as_text=True)
        grouped = re.search(r"<code>([A-Z2-7 ]+)</code>", page).group(1)
        secret = grouped.replace(" ", "")
        # Mid-setup: the secret being enrolled is in the database, encrypted.
        assert secret not in dump_everything(app)
        auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)})
        codes_page = client.get("/mfa/setup/recovery-codes").get_data(as_text=True)
        codes = re.findall(r"<code>([A-Z2-7]{5}-[A-Z2-7]{5})</code>", codes_page)
        assert len(codes) == 10
        mid = dump_everything(app)
        for code in codes:
            assert code not in mid and code.replace("-", "") not in mid
        auth.post("/mfa/setup/recovery-codes")
        response = auth.post("/mfa/setup/remember", {"remember": "yes"})
        device_token = next(
            c.split(";")[0].split("=", 1)[1]
            for c in response.headers.getlist("Set-Cookie")
            if "mfa_device=" in c
        )
        auth.post("/mfa/setup/done")
        session_cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value

    dump = dump_everything(app)
    for needle in [secret, grouped, device_token, *codes, *(c.replace("-", "") for c in codes)]:
        assert needle not in dump
        assert needle.lower() not in dump.lower()
    # The session token inside the signed cookie is not stored either.
    serializer = app.session_interface.get_signing_serializer(app)
    token = serializer.loads(session_cookie)["sid"]
    assert token not in dump
    # And the hashes are keyed: recomputing them needs a key that is not in the database.
    with app.app_context():
        assert recovery._hash(1, codes[0].replace("-", "")).hex() in dump
        assert app.config["MFA_HASH_KEY"] not in dump
        assert app.config["MFA_ENCRYPTION_KEYS"] not in dump
