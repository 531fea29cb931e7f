"""Commands for the clinic's IT person (OPS-4). Names are stable: scripts rely on them.

flask --app app create-admin EMAIL [--name NAME] [--password-stdin]
flask --app app users create EMAIL --role ROLE [--name NAME] [--phone PHONE] [--password-stdin]
flask --app app users list
flask --app app users unlock EMAIL
flask --app app users bypass EMAIL [--hours N]
flask --app app users reset-mfa EMAIL
flask --app app users set-password EMAIL [--password-stdin]
flask --app app policy set [--mode off|optional|required] [--methods totp,email,sms]
                           [--remember-days N] [--support-contact TEXT]
                           [--admins-app-only|--admins-any-method] [--code-minutes N]
                           [--admins-may-remember|--admins-not-remembered]
                           [--same-location|--no-same-location] [--same-location-days N]
flask --app app policy show
flask --app app users override EMAIL default|required|exempt
flask --app app rollout set ROLE --mode default|off|optional|required [--from YYYY-MM-DD]
flask --app app rollout show
flask --app app rollout notify [--dry-run] [--days 14,1]
flask --app app keys rotate [--retire-old] | generate | reencrypt
flask --app app api-users create NAME [--role ROLE]
flask --app app api-tokens create NAME --label LABEL [--days N]
flask --app app api-tokens list
flask --app app api-tokens revoke ID
flask --app app audit export [--since YYYY-MM-DD] > audit.csv
flask --app app audit purge --before YYYY-MM-DD [--yes]
"""

from __future__ import annotations

import secrets
import sys
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from models import DEFAULT_ROLES, ApiToken, MfaFactor, MfaSetup, Role, User, db
from models.policy import MODES
from models.types import utcnow
from models.user import ADMINISTRATOR, OVERRIDES, ROLE_MODES
from services import (
    account,
    api_access,
    audit,
    audit_log,
    bypass,
    crypto,
    localtime,
    notify,
    overrides,
    policy,
    readiness,
    rollout,
    rollout_notices,
)
from services.api_access import ApiAccessError
from services.links import external_url
from services.users import UserInputError, by_email, create_user, role_named

users_cli = AppGroup(
    "users", help="Create, list, unlock and reset staff users; grant a one-time bypass."
)
policy_cli = AppGroup("policy", help="Show or change the clinic's MFA policy.")
rollout_cli = AppGroup("rollout", help="Roll two-step sign-in out role by role.")
keys_cli = AppGroup("keys", help="Encryption keys for second-factor secrets.")
audit_cli = AppGroup("audit", help="Export the audit log; purge old events (retention).")


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


def _user(email: str) -> User:
    user = by_email(email)
    if user is None:
        raise click.ClickException(f"No user with the email {email.strip().lower()}.")
    return user


@users_cli.command("unlock")
@click.argument("email")
def users_unlock(email: str) -> None:
    """Clear password throttling and any second-factor lock for an email address."""
    unlocked = account.unlock(email)
    audit.record(
        "user.unlocked",
        subject=by_email(email),
        via="cli",
        password=unlocked.password,
        second_factor=unlocked.second_factor,
    )
    db.session.commit()
    click.echo(f"Unlocked {email.strip().lower()}.")


@users_cli.command("bypass")
@click.argument("email")
@click.option(
    "--hours",
    type=int,
    default=bypass.DEFAULT_HOURS,
    show_default=True,
    help=f"How long the grant holds, 1 to {bypass.MAX_HOURS}.",
)
def users_bypass(email: str, hours: int) -> None:
    """Let someone who lost their phone sign in once without a code, into setup (ADM-6).

    Their factors, recovery codes, remembered devices and trusted addresses are cleared and
    their sessions end at once; their own rule (override) is left as it is.
    """
    user = _user(email)
    try:
        until = bypass.grant(user, hours, actor=None)
    except UserInputError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record(
        "admin.bypass_granted", subject=user, via="cli", hours=hours, until=until.isoformat()
    )
    db.session.commit()
    notify.changed_by_admin(user, "bypass_granted", by=None, until=localtime.when(until))
    db.session.commit()
    click.echo(
        f"{user.email} may sign in once without a code until {localtime.when(until)}, "
        "straight into setting it up again. They were emailed."
    )


@users_cli.command("reset-mfa")
@click.argument("email")
def users_reset_mfa(email: str) -> None:
    """Remove a user's factors, recovery codes and remembered devices; end their sessions."""
    user = _user(email)
    account.reset_mfa(user)
    audit.record("mfa.reset", subject=user, via="cli")
    db.session.commit()
    notify.factor_removed(user, by_admin=True)
    db.session.commit()
    click.echo(f"Two-step sign-in reset for {user.email}; they set it up again if required.")


@users_cli.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_set_password(email: str, password_stdin: bool) -> None:
    """Set a user's password; their sessions and remembered devices end."""
    user = _user(email)
    try:
        account.change_password(user, _read_password(password_stdin))
    except UserInputError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("password.changed", subject=user, via="cli")
    db.session.commit()
    notify.password_changed(user, sign_in_url=external_url("auth.sign_in"), by_admin=True)
    db.session.commit()
    click.echo(f"Password changed for {user.email}; their sessions and devices are signed out.")


@users_cli.command("override")
@click.argument("email")
@click.argument("override", type=click.Choice(OVERRIDES))
def users_override(email: str, override: str) -> None:
    """Set one person's rule: default (clinic and role), required, or exempt."""
    user = _user(email)
    change = overrides.set_for(
        user, override=override, same_location=overrides.same_location_choice(user)
    )
    audit.record_change("admin.user_rules_changed", change, subject=user, via="cli")
    db.session.commit()
    click.echo(f"{user.email}: {overrides.OVERRIDE_LABELS[override].lower()}.")


@rollout_cli.command("set")
@click.argument("role_name", metavar="ROLE")
@click.option("--mode", type=click.Choice(ROLE_MODES), required=True)
@click.option(
    "--from",
    "required_from",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Go-live date (YYYY-MM-DD, the clinic's calendar) for --mode required.",
)
def rollout_set(role_name: str, mode: str, required_from: datetime | None) -> None:
    """Give a role its own rule, e.g. `rollout set Reception --mode required --from 2027-02-01`."""
    try:
        role = role_named(role_name)
        change = rollout.set_role(role, mode, required_from.date() if required_from else None)
    except (UserInputError, policy.PolicyError) as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record_change("admin.role_policy_changed", change, via="cli", role=role.name)
    db.session.commit()
    _print_rollout()


@rollout_cli.command("show")
def rollout_show() -> None:
    """Each role's rule, go-live date and how many people are set up."""
    _print_rollout()


def _print_rollout() -> None:
    clinic = policy.current()
    counts = readiness.by_role(clinic)
    today = localtime.today()
    click.echo(f"clinic mode: {clinic.mode}")
    for role in rollout.roles():
        rule = rollout.ROLE_MODE_LABELS[role.mfa_mode].lower()
        if role.mfa_required_from:
            left = (role.mfa_required_from - today).days
            when = f"in {left} days" if left > 0 else "live"
            rule += f" from {role.mfa_required_from.isoformat()} ({when})"
        tally = counts.get(role.id, {})
        numbers = ", ".join(f"{tally.get(s, 0)} {s.replace('_', ' ')}" for s in readiness.STANDINGS)
        click.echo(f"{role.name:<14} {rule:<40} {numbers}")
    db.session.commit()


@policy_cli.command("show")
def policy_show() -> None:
    """Print the current policy."""
    p = policy.current()
    db.session.commit()
    click.echo(f"mode:            {p.mode}")
    click.echo(f"methods:         {','.join(p.methods)}")
    click.echo(f"remember-days:   {p.remember_days}{' (off)' if p.remember_days == 0 else ''}")
    click.echo(f"support-contact: {p.support_contact or '(none)'}")
    click.echo(f"admins-app-only: {'yes' if p.admins_app_only else 'no'}")
    click.echo(f"code-minutes:    {p.code_valid_minutes}")
    click.echo(f"admins-remember: {'yes' if p.admins_may_remember else 'no'}")
    same_place = f"yes, {p.same_location_days} days" if p.same_location else "no"
    click.echo(f"same-location:   {same_place}")


@policy_cli.command("set")
@click.option("--mode", type=click.Choice(MODES), default=None)
@click.option("--methods", default=None, help="Comma-separated: " + ",".join(policy.METHOD_LABELS))
@click.option("--remember-days", type=int, default=None, help="0 (off) to 90.")
@click.option("--support-contact", default=None, help="Shown on every MFA screen.")
@click.option(
    "--admins-app-only/--admins-any-method",
    default=None,
    help="Whether Administrators may only use an authenticator app (default: yes).",
)
@click.option("--code-minutes", type=int, default=None, help="Email/SMS code lifetime, 1 to 10.")
@click.option(
    "--admins-may-remember/--admins-not-remembered",
    default=None,
    help="Whether Administrators may have a device remembered (default: no).",
)
@click.option(
    "--same-location/--no-same-location",
    default=None,
    help="Prompt only once from the same address (default: no; never for Administrators).",
)
@click.option("--same-location-days", type=int, default=None, help="1 to 90 (default 30).")
@click.pass_context
def policy_set(
    ctx: click.Context,
    mode: str | None,
    methods: str | None,
    remember_days: int | None,
    support_contact: str | None,
    admins_app_only: bool | None,
    code_minutes: int | None,
    admins_may_remember: bool | None,
    same_location: bool | None,
    same_location_days: int | None,
) -> None:
    """Change the policy; options not given stay as they are."""
    try:
        change = policy.update(
            mode=mode,
            methods=methods,
            remember_days=remember_days,
            support_contact=support_contact,
            admins_app_only=admins_app_only,
            code_valid_minutes=code_minutes,
            admins_may_remember=admins_may_remember,
            same_location=same_location,
            same_location_days=same_location_days,
        )
    except policy.PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record_change("policy.changed", change, via="cli")
    db.session.commit()
    ctx.invoke(policy_show)


@keys_cli.command("rotate")
@click.option("--retire-old", is_flag=True, help="Drop the old keys once nothing uses them.")
def keys_rotate(retire_old: bool) -> None:
    """Make a new encryption key, re-encrypt every secret with it, keep old keys readable.

    Running workers notice the changed key file and read both keys, so nobody is locked out.
    """
    if crypto.keyring().source == "environment":
        raise click.ClickException(
            "Keys come from MFA_ENCRYPTION_KEYS. Put a new key first in that list (make one with"
            " `flask --app app keys generate`), restart, then run `flask --app app keys reencrypt`."
        )
    crypto.add_primary_key()
    count = _reencrypt_all()
    if retire_old:
        crypto.retire_old_keys()
    retired = " Old keys retired." if retire_old else ""
    click.echo(f"New key in use; {count} secrets re-encrypted.{retired}")


@keys_cli.command("generate")
def keys_generate() -> None:
    """Print a new encryption key, for MFA_ENCRYPTION_KEYS."""
    click.echo(crypto.new_fernet_key())


@keys_cli.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt every secret with the newest key."""
    click.echo(f"{_reencrypt_all()} secrets re-encrypted.")


def _reencrypt_all() -> int:
    count = 0
    factors = db.session.scalars(select(MfaFactor).where(MfaFactor.secret_encrypted.is_not(None)))
    for factor in factors:
        factor.secret_encrypted = crypto.reencrypt(factor.secret_encrypted)
        count += 1
    for setup in db.session.scalars(select(MfaSetup)):
        if setup.secret_encrypted:
            setup.secret_encrypted = crypto.reencrypt(setup.secret_encrypted)
            count += 1
        if setup.recovery_codes_encrypted:
            setup.recovery_codes_encrypted = crypto.reencrypt(setup.recovery_codes_encrypted)
    audit.record("keys.rotated", via="cli", secrets=count)
    db.session.commit()
    return count


def _notice_days(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return rollout_notices.parse_days(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@rollout_cli.command("notify")
@click.option("--dry-run", is_flag=True, help="List who would be emailed; send nothing.")
@click.option(
    "--days",
    callback=_notice_days,
    help="Days before go-live to send a notice, e.g. 14,1 (default: MFA_ROLLOUT_NOTICE_DAYS).",
)
def rollout_notify(dry_run: bool, days: tuple[int, ...] | None) -> None:
    """Email the notices due today before each role's go-live date. Run it daily from cron.

    A notice missed (the server was off, the person joined the role late) goes out late; one
    the mail server refused is tried again at the next run.
    """
    if dry_run:
        owed = rollout_notices.due(days)
        for notice in owed:
            click.echo(
                f"{notice.user.email}  {notice.role.name}  go-live "
                f"{notice.go_live.isoformat()}  {notice.days_before}-day notice"
            )
        db.session.rollback()  # a dry run writes nothing, not even a first policy row
        click.echo(f"Dry run: {len(owed)} would be emailed; nothing was sent.")
        return
    outcome = rollout_notices.send_due(days)
    click.echo(f"Rollout notices: sent {outcome.sent}, failed {outcome.failed}.")
    if outcome.failed:
        # Still exit 0: nothing is lost (no claim is kept, so the next run sends it) and each
        # failure is in the audit log; stderr is what cron mails when stdout is discarded.
        click.echo(
            f"{outcome.failed} could not be sent (mail server refused or down); "
            "they are tried again at the next run.",
            err=True,
        )


# API users and tokens (ADM-10). The token's secret goes alone to stdout, once, so a script
# can take it (TOKEN=$(flask api-tokens create ...)); everything else goes to stderr.
api_users_cli = AppGroup("api-users", help="API users: accounts that read the API with tokens.")
api_tokens_cli = AppGroup("api-tokens", help="API tokens: create (shown once), list, revoke.")


@api_users_cli.command("create")
@click.argument("name")
@click.option(
    "--role",
    default=api_access.DEFAULT_ROLE,
    show_default=True,
    help="The role the API lists it under (any but Administrator).",
)
def api_users_create(name: str, role: str) -> None:
    """Create an API user: no password, never signs in, never asked for a second factor."""
    try:
        user = api_access.create_user(name, role, via="cli")
    except ApiAccessError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Created API user {user.full_name!r} ({user.role.name}).")


@api_tokens_cli.command("create")
@click.argument("name")
@click.option("--label", required=True, help="Where it will be used, to recognise it later.")
@click.option(
    "--days",
    type=int,
    default=api_access.DEFAULT_TOKEN_DAYS,
    show_default=True,
    help=f"Valid for this many days, at most {api_access.MAX_TOKEN_DAYS}.",
)
def api_tokens_create(name: str, label: str, days: int) -> None:
    """Create a token for the API user NAME and print it: it is never shown again."""
    user = api_access.by_name(name)
    if user is None:
        raise click.ClickException(f"No API user called {name!r}.")
    try:
        issued = api_access.issue(user, label, days, via="cli")
    except ApiAccessError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    expires = localtime.day_of(issued.token.expires_at)
    click.echo(
        f"Token {issued.token.id} for {user.full_name!r}, valid until {expires}. "
        "Copy it now: it is not shown again.",
        err=True,
    )
    click.echo(issued.secret)


@api_tokens_cli.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def api_tokens_revoke(token_id: int) -> None:
    """Revoke token ID (as `api-tokens list` shows it) from now on."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"No API token with the id {token_id}.")
    revoked = api_access.revoke(token, via="cli")
    db.session.commit()
    state = "revoked" if revoked else "was already revoked"
    click.echo(f"Token {token.id} ({token.label!r}) of {token.user.full_name!r} {state}.")


@api_tokens_cli.command("list")
def api_tokens_list() -> None:
    """Every token: id, API user, label, status, expiry, last use."""
    tokens = api_access.all_tokens()
    db.session.commit()
    if not tokens:
        click.echo("No API tokens yet.")
        return
    now = utcnow()
    for token in tokens:
        used = (
            f"last used {token.last_used_at:%Y-%m-%d %H:%M} UTC from {token.last_used_ip}"
            if token.last_used_at
            else "never used"
        )
        click.echo(
            f"{token.id:>4}  {token.user.full_name:<24}  {token.label:<24}  "
            f"{token.status(now):<7}  expires {token.expires_at:%Y-%m-%d}  {used}"
        )


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


_CLINIC_DAY = click.DateTime(formats=["%Y-%m-%d"])


@audit_cli.command("export")
@click.option("--since", type=_CLINIC_DAY, default=None, help="First clinic day (YYYY-MM-DD).")
def audit_export(since: datetime | None) -> None:
    """Write the audit log as CSV to standard output, newest first (the same file as the admin
    page's "Download as CSV"): `flask --app app audit export > audit.csv`."""
    filters = audit_log.Filters(from_day=since.date() if since else None)
    audit.record("audit.exported", filters=filters.args(), via="cli")
    db.session.commit()
    out = sys.stdout.buffer
    for chunk in audit_log.csv_chunks(filters):
        out.write(chunk.encode("utf-8"))  # UTF-8 whatever the terminal's locale
    out.flush()


@audit_cli.command("purge")
@click.option(
    "--before",
    type=_CLINIC_DAY,
    required=True,
    help="Delete events from before this clinic day (YYYY-MM-DD).",
)
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
def audit_purge(before: datetime, yes: bool) -> None:
    """Delete old audit events (retention): the one way events are ever removed. The database
    allows it only under the purge's own permit, and the purge itself is recorded after."""
    day = before.date()
    if day > localtime.today():
        raise click.ClickException(
            f"{day.isoformat()} is after today: choose today or an earlier day."
        )
    count = audit.count_before(day)
    if not count:
        db.session.rollback()
        click.echo(f"No audit events from before {day.isoformat()}; nothing deleted.")
        return
    if not yes:
        click.confirm(
            f"Delete {count} audit events from before {day.isoformat()} "
            f"({current_app.config['MFA_TIME_ZONE']})? This cannot be undone.",
            abort=True,
        )
    deleted = audit.purge(day)
    db.session.commit()
    click.echo(
        f"Deleted {deleted} audit events from before {day.isoformat()}; the purge is recorded."
    )


def register(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(users_cli)
    app.cli.add_command(policy_cli)
    app.cli.add_command(rollout_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(bootstrap)
    app.cli.add_command(api_users_cli)
    app.cli.add_command(api_tokens_cli)
