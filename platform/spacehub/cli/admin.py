"""Admin commands that work on the data dir (users, tokens), and the guard that keeps them on the right one.

They write the platform's database directly, so they must act on the same data dir as the running server: a
second terminal without the server's SPACEHUB_DATA_DIR would otherwise write to another (default) one, silently.
An admin command that finds a platform answering at its URL whose database is not the command's own (each
database has a random id, which /health reports) refuses, saying which data dir and database it has. This holds
for one `serve` as for separate roles on several machines sharing one PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

from spacehub import accounts
from spacehub.cli.client import saved_credentials
from spacehub.context import Platform
from spacehub.servepid import running_serve
from spacehub.settings import Settings
from spacehub.store.db import Database
from spacehub.store.models import Token, User


def _installation_at(url: str) -> tuple[bool, str | None]:
    """Does a platform answer there (any status: a 503 of one whose Redis is down is a platform all the same),
    and the id of the database it uses (None when it cannot say)."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/health", timeout=2)
    except httpx.HTTPError:
        return False, None
    try:
        installation = answer.json().get("installation")
    except (ValueError, AttributeError):
        return True, None
    return True, installation if isinstance(installation, str) else None


def _own_installation(settings: Settings) -> str | None:
    """The id of this command's database, read without creating anything (None: no such database yet)."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return None
    db = Database(url.render_as_string(hide_password=False), pool_size=1, connect_timeout_s=5)
    try:
        return db.installation_id()
    finally:
        db.engine.dispose()


def open_guarded(settings: Settings) -> Platform:
    """The platform of this command's data dir, once it is sure a running server uses the same database.

    A server reports its database's id at /health; one whose database is down cannot, and is taken for this
    command's only if it is the `serve` of this data dir (its pid file).
    """
    url = (settings.url or saved_credentials().get("url") or settings.base_url).rstrip("/")
    answering, theirs = _installation_at(url)
    if answering and theirs != _own_installation(settings) and (theirs is not None or running_serve(settings) is None):
        raise click.ClickException(
            f"the spacehub answering at {url} uses another database than this command "
            f"({settings.data_dir}, {make_url(settings.effective_database_url).render_as_string()}); nothing was "
            "changed. Run the command with the server's data dir (and database URL), e.g. "
            "SPACEHUB_DATA_DIR=<the server's data dir> spacehub ...")
    return Platform.open(settings)


def read_password(password: str | None) -> str:
    """The password given, or one asked for (hidden, twice); held to the web UI's minimum length."""
    from spacehub.web.accounts import MIN_PASSWORD

    if password is None:
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def register(users: click.Group, token: click.Group, _settings: Callable[[], Settings]) -> None:
    """Add the data-dir admin commands to the CLI's `users` and `token` groups."""

    @users.command("passwd")
    @click.argument("name")
    @click.option("--password", help="The new password (prompted for, hidden, when not given).")
    def users_passwd(name: str, password: str | None) -> None:
        """Set NAME's password for signing in to the web UI."""
        platform = open_guarded(_settings())
        secret = read_password(password)
        with platform.db.session() as session:
            accounts.set_password(accounts.get_user(session, name), secret)
        click.echo(f"Password of {name} set")

    @users.command("list")
    def users_list() -> None:
        """Every user: name, admin or not, whether they can sign in to the web UI."""
        platform = open_guarded(_settings())
        with platform.db.session() as session:
            for user in session.scalars(select(User).order_by(User.name_key)):
                flags = [word for word, on in (("admin", user.is_admin), ("password", bool(user.password_hash)))
                         if on]
                click.echo(f"{user.name}\t{', '.join(flags) or '-'}")

    @token.command("list")
    @click.option("--user", "user_name", help="Only this user's tokens.")
    def token_list(user_name: str | None) -> None:
        """API tokens (never their secrets): id, owner, name, first characters, created, last used, expiry."""
        platform = open_guarded(_settings())
        with platform.db.session() as session:
            query = select(Token).join(User).order_by(Token.id)
            if user_name:
                query = query.where(User.id == accounts.get_user(session, user_name).id)
            click.echo("id\tuser\tname\tstarts\tcreated\tlast used\texpires")
            for row in session.scalars(query):
                used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
                expires = row.expires_at.isoformat(timespec="seconds") if row.expires_at else "never"
                click.echo(f"{row.id}\t{row.user.name}\t{row.name}\t{row.prefix}…\t"
                           f"{row.created_at.isoformat(timespec='seconds')}\t{used}\t{expires}")

    @token.command("revoke")
    @click.argument("token_id", type=int)
    def token_revoke(token_id: int) -> None:
        """Revoke the token TOKEN_ID (from `token list`)."""
        platform = open_guarded(_settings())
        with platform.db.session() as session:
            row = session.get(Token, token_id)
            if row is None:
                raise click.ClickException(f"no token with id {token_id}")
            accounts.revoke_token(session, row.user, token_id)
        click.echo(f"Revoked token {token_id}")
