"""Commands for the clinic's IT person (OPS-4). Names are stable: scripts rely on them.

flask --app app create-admin EMAIL [--name NAME] [--password-stdin]
flask --app app users create EMAIL --role ROLE [--name NAME] [--phone PHONE] [--password-stdin]
flask --app app users list
flask --app app users unlock EMAIL
"""

from __future__ import annotations

import secrets
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import delete, func, select
from sqlalchemy.orm import undefer

from models import DEFAULT_ROLES, Role, SignInThrottle, User, db
from models.user import ADMINISTRATOR
from services import audit, throttle
from services.users import UserInputError, by_email, create_user

users_cli = AppGroup("users", help="Create, list, unlock and reset staff users.")
policy_cli = AppGroup("policy", help="Show or change the clinic's MFA policy.")
keys_cli = AppGroup("keys", help="Encryption keys for second-factor secrets.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def seed_roles() -> None:
    """Make sure the default roles exist; admins may add more later."""
    existing = set(db.session.scalars(select(Role.name)))
    for name in DEFAULT_ROLES:
        if name not in existing:
            db.session.add(Role(name=name))
    db.session.flush()


def _create(email: str, password: str, role: str, name: str, phone: str | None) -> User:
    seed_roles()
    try:
        user = create_user(email, password, role=role, full_name=name, mobile=phone)
        db.session.flush()
    except UserInputError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    audit.record("user.created", subject=user, role=user.role.name, via="cli")
    db.session.commit()
    return user


@click.command("create-admin")
@with_appcontext
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(email: str, name: str, password_stdin: bool) -> None:
    """Create an Administrator."""
    user = _create(email, _read_password(password_stdin), ADMINISTRATOR, name, None)
    click.echo(f"Created administrator {user.email}.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, help="Administrator, Practitioner, Reception, Location...")
@click.option("--name", default="", help="Full name.")
@click.option("--phone", default=None, help="Mobile number, e.g. +61 412 345 678.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, name: str, phone: str | None, password_stdin: bool) -> None:
    """Create a staff user."""
    user = _create(email, _read_password(password_stdin), role, name, phone)
    click.echo(f"Created {user.role.name} {user.email}.")


@users_cli.command("list")
def users_list() -> None:
    """List users: email, role, active, last sign-in."""
    rows = db.session.scalars(
        select(User).options(undefer(User.last_sign_in_at)).order_by(func.lower(User.email))
    ).all()
    if not rows:
        click.echo("No users yet.")
        return
    width = max(len(u.email) for u in rows)
    for u in rows:
        last = u.last_sign_in_at.strftime("%Y-%m-%d %H:%M UTC") if u.last_sign_in_at else "never"
        state = "active" if u.active else "inactive"
        click.echo(f"{u.email:<{width}}  {u.role.name:<13}  {state:<8}  last sign-in {last}")


@users_cli.command("unlock")
@click.argument("email")
def users_unlock(email: str) -> None:
    """Clear password throttling for an email address."""
    db.session.execute(
        delete(SignInThrottle).where(SignInThrottle.key == throttle.email_key(email))
    )
    audit.record("user.unlocked", subject=by_email(email), via="cli")
    db.session.commit()
    click.echo(f"Unlocked {email.strip().lower()}.")


@click.command("bootstrap")
@with_appcontext
def bootstrap() -> None:
    """Seed roles and, if there is no Administrator yet, create one and print its password.

    `make run` calls this after migrating, so a fresh clone can be signed into at once.
    """
    seed_roles()
    has_admin = db.session.scalar(
        select(func.count(User.id)).join(Role).where(Role.name == ADMINISTRATOR)
    )
    if has_admin:
        db.session.commit()
        return
    email = current_app.config["MFA_FIRST_ADMIN_EMAIL"]
    password = secrets.token_urlsafe(12)
    user = _create(email, password, ADMINISTRATOR, "First administrator", None)
    click.echo(
        "\n  First administrator created. Sign in at http://127.0.0.1:5000 with\n"
        f"    email:    {user.email}\n    password: {password}\n"
        "  Keep it somewhere safe: it is not shown again.\n"
    )


def register(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(users_cli)
    app.cli.add_command(policy_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(bootstrap)
