"""A seeded clinic for tests that count people: every mix of factors, exempt and
deactivated people, Administrators and bad mobile numbers."""

from __future__ import annotations

import random

import sqlalchemy as sa

from models import MfaFactor, Role, User, db


def seed_clinic(app, count: int = 300) -> dict[str, set[int]]:
    """A clinic of ``count`` people with every mix of factors, some exempt, some admins,
    some with bad mobile numbers. Returns ids by trait, for the expected numbers."""
    rng = random.Random(8)
    traits: dict[str, set[int]] = {
        "totp": set(),
        "email": set(),
        "sms": set(),
        "exempt": set(),
        "admin": set(),
        "no_mobile": set(),
        "inactive": set(),
    }
    mobiles = ["+61412345678", None, "", "+61298765432", "not a number", "+61 412 000 111"]
    with app.app_context():
        roles = {r.name: r for r in db.session.scalars(sa.select(Role))}
        pw = db.session.scalar(sa.select(User.password_hash))
        for n in range(count):
            role = "Administrator" if n % 25 == 0 else rng.choice(["Practitioner", "Reception"])
            mobile = rng.choice(mobiles)
            user = User(
                email=f"person{n}@clinic.example",
                full_name=f"Person {n}",
                password_hash=pw,
                role=roles[role],
                mobile_number=mobile or None,
                mfa_override="exempt" if n % 17 == 0 else "default",
                active=n % 41 != 0,
            )
            db.session.add(user)
            db.session.flush()
            kinds = [k for k in ("totp", "email", "sms") if rng.random() < 0.35]
            for i, kind in enumerate(kinds):
                db.session.add(MfaFactor(user_id=user.id, kind=kind, is_default=i == 0))
                traits[kind].add(user.id)
            if role == "Administrator":
                traits["admin"].add(user.id)
            if user.mfa_override == "exempt":
                traits["exempt"].add(user.id)
            if mobile not in ("+61412345678", "+61 412 000 111"):
                traits["no_mobile"].add(user.id)
            if not user.active:
                traits["inactive"].add(user.id)
        db.session.commit()
    return traits
