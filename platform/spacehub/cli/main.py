"""`spacehub` subcommands. Settings are built here, at the entry point, from SPACEHUB_* and the options."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from spacehub import accounts, logformat
from spacehub.cli import admin, backups, roles
from spacehub.cli import sandbox as sandbox_commands
from spacehub.cli.client import Client, save_credentials
from spacehub.context import Platform
from spacehub.errors import SpacehubError
from spacehub.settings import Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpacehubError as exc:  # the platform's own errors are messages, not tracebacks
            raise click.ClickException(exc.message) from None
        except ValidationError as exc:  # bad or contradictory SPACEHUB_* settings: refuse to start, say why
            raise click.ClickException(settings_problem(exc)) from None


def settings_problem(exc: ValidationError) -> str:
    """One line per broken setting, named as the operator sets it (SPACEHUB_NAME), without pydantic's prefixes."""
    lines = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = ".".join(str(part) for part in error.get("loc", ()))
        lines.append(f"SPACEHUB_{where.upper()}: {message}" if where else message)
    return "invalid settings: " + "; ".join(lines)


@click.group(cls=_Group)
@click.version_option(package_name="spacehub")
def cli() -> None:
    """spacehub: a self-hosted home for Gradio, Docker and static app spaces."""


cli.add_command(backups.backup)
cli.add_command(backups.restore)


@cli.command()
@click.option("--host", help="Address of the public port (SPACEHUB_HOST).")
@click.option("--port", type=int, help="The public port (SPACEHUB_PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="All state (SPACEHUB_DATA_DIR).")
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run everything: proxy, API, workers, supervisor and (unless configured) an embedded redis."""
    from spacehub.serve import run

    settings = _settings(host=host, port=port, data_dir=data_dir)
    logformat.configure(settings.log_format)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        pass
    asyncio.run(run(settings))


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="All state (SPACEHUB_DATA_DIR).")
def stop(data_dir: Path | None) -> None:
    """Stop everything of a data dir: `serve` (letting in-flight work finish), every app and fork-server."""
    from spacehub.cli.stopping import stop_everything

    settings = _settings(data_dir=data_dir)
    if not settings.data_dir.is_dir():
        raise click.ClickException(f"no spacehub data dir at {settings.data_dir}")
    stop_everything(settings, click.echo)


@cli.command()
@click.option("--queue", "queues", multiple=True, help="Queue(s) to work on (default: ops and builds).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--health", "health_address", help=roles.HEALTH_HELP)
def worker(queues: tuple[str, ...], burst: bool, health_address: str | None) -> None:
    """Run an RQ worker for spacehub's jobs (SIGTERM: it finishes the job in hand, then exits)."""
    from spacehub.startcheck import check_redis, check_sandbox
    from spacehub_runner.worker import run_worker  # the CLI is where both halves meet

    settings = _settings()
    logformat.configure(settings.log_format)
    check_redis(settings)
    check_sandbox(settings)  # its jobs build and start containers
    state = roles.RoleState()
    roles.health_listener("worker", settings, health_address, state, with_database=True)
    state.started.set()
    run_worker(settings, list(queues) or None, burst=burst)


@cli.command()
@click.option("--health", "health_address", help=roles.HEALTH_HELP)
def supervisor(health_address: str | None) -> None:
    """Keep running spaces running: re-adopt, restart, repair routes, pump run logs (SIGTERM: it ends the pass
    in hand, then exits)."""
    from spacehub.startcheck import check_redis, check_sandbox
    from spacehub_runner.supervisor import Supervisor

    settings = _settings()
    logformat.configure(settings.log_format)
    check_redis(settings)
    check_sandbox(settings)  # it restarts and re-adopts containers
    state, stop = roles.RoleState(), threading.Event()
    roles.stop_on_sigterm(stop, state)
    roles.health_listener("supervisor", settings, health_address, state, with_database=True)
    running = Supervisor(Platform.open(settings, migrate_schema=False))
    state.started.set()
    running.run(stop)


for _role_command in roles.make_commands(lambda: _settings()):
    cli.add_command(_role_command)


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--sdk", type=click.Choice(["gradio", "docker", "static"]), help="Default: README's sdk, or gradio.")
@click.option("--private", is_flag=True, help="Create the space private.")
@click.option("--hardware", help="Hardware flavor, e.g. cpu-basic or t4-small.")
@click.option("-m", "--message", default="Push with spacehub", show_default=True)
@click.option("--no-follow", is_flag=True, help="Don't wait for the build.")
@click.option("--timeout", type=float, default=1800, show_default=True, help="Seconds to wait for RUNNING.")
def push(folder: Path, repo_id: str, sdk: str | None, private: bool, hardware: str | None, message: str,
         no_follow: bool, timeout: float) -> None:
    """Upload FOLDER as the space REPO_ID (owner/name), follow its build and print its URL."""
    from spacehub.cli import push as pushing

    pushing.push(Client(_settings()), folder, repo_id, sdk=sdk, private=private, hardware=hardware,
                 message=message, follow=not no_follow, timeout=timeout)


@cli.command("ls")
@click.option("--author", help="Only this owner's spaces.")
def list_spaces(author: str | None) -> None:
    """List the spaces you can see."""
    client = Client(_settings())
    rows = client.get("/api/spaces", params={"author": author} if author else None)
    if not rows:
        click.echo("No spaces.")
        return
    width = max(len(r["id"]) for r in rows)
    for row in rows:
        click.echo(f"{row['id']:<{width}}  {row['runtime']['stage']:<20} {row['host']}")


@cli.command()
@click.argument("repo_id")
@click.option("--build", "kind", flag_value="build", help="The build log (default: the app's run log).")
@click.option("--run", "kind", flag_value="run", default=True, hidden=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
def logs(repo_id: str, kind: str, follow: bool) -> None:
    """Print a space's run log (or --build log)."""
    client = Client(_settings())
    try:
        for event in client.sse(f"/api/spaces/{repo_id}/logs/{kind}", params={"follow": str(follow).lower()}):
            click.echo(event["data"], nl=False)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--token", prompt=True, hide_input=True, help="An API token (`spacehub token create`).")
@click.option("--url", help="Platform URL (default: SPACEHUB_URL or the local one).")
def login(token: str, url: str | None) -> None:
    """Check a token and save it for later commands."""
    settings = _settings(token=token, url=url)
    client = Client(settings)
    me = client.get("/api/whoami-v2")
    save_credentials(client.url, token)
    click.echo(f"Logged in to {client.url} as {me['name']}")


@cli.group()
def users() -> None:
    """Manage users (on this machine's data dir)."""


@users.command("create")
@click.argument("name")
@click.option("--admin", "is_admin", is_flag=True, help="An admin (may create users and manage every space).")
@click.option("--password", help="Password for signing in to the web UI (else none: set one later with "
              "`users passwd`).")
def users_create(name: str, is_admin: bool, password: str | None) -> None:
    """Create the user NAME."""
    platform = admin.open_guarded(_settings())
    secret = admin.read_password(password) if password is not None else None
    with platform.db.session() as session:
        user = accounts.create_user(session, name, admin=is_admin, password=secret)
        click.echo(f"Created user {user.name}" + (" (admin)" if is_admin else ""))


@cli.group()
def orgs() -> None:
    """Manage organizations (on this machine's data dir)."""


@orgs.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A user to add as a member (repeatable).")
def orgs_create(name: str, members: tuple[str, ...]) -> None:
    platform = admin.open_guarded(_settings())
    with platform.db.session() as session:
        org = accounts.create_org(session, name, members)
        click.echo(f"Created organization {org.name}" + (f" with {', '.join(members)}" if members else ""))


@cli.group()
def token() -> None:
    """Manage API tokens (on this machine's data dir)."""


@token.command("create")
@click.option("--user", "user_name", help="Owner of the token (default: admin).")
@click.option("--name", "token_name", default="cli", show_default=True)
@click.option("--expires", help="Lifetime, e.g. 30d, 12h, 90m, 2w or 1y (default: until revoked).")
def token_create(user_name: str | None, token_name: str, expires: str | None) -> None:
    """Create an API token and print it (it is shown only once)."""
    lifetime = accounts.parse_lifetime(expires) if expires is not None else None
    platform = admin.open_guarded(_settings())
    with platform.db.session() as session:
        user = accounts.get_user(session, user_name or "admin")
        click.echo(accounts.create_token(session, user, token_name, expires_in=lifetime).secret)


@cli.group("secrets")
def secrets_group() -> None:
    """Space secrets at rest (on this machine's data dir)."""


@secrets_group.command("rotate-key")
def secrets_rotate_key() -> None:
    """Seal every space secret under a new key and retire the old key (back up the new key file after)."""
    from spacehub import crypto

    settings = _settings()
    platform = Platform.open(settings)
    with platform.db.session() as session:
        count = crypto.rotate_key(settings, session)
    click.echo(f"Re-sealed {count} secret(s) under a new key in {crypto.key_file(settings)}; the old key is gone: "
               "back the new key file up (database backups do not open without it)")


admin.register(users, token, _settings)


@cli.group()
def images() -> None:
    """Manage the Docker images spaces are built on (docker runtime)."""


@images.command("bootstrap")
@click.option("--gradio", "gradio_versions", multiple=True,
              help="Gradio version(s) to prepare SDK images for (default: SPACEHUB_DEFAULT_GRADIO_VERSION).")
@click.option("--no-sdk", is_flag=True, help="Only the base image.")
def images_bootstrap(gradio_versions: tuple[str, ...], no_sdk: bool) -> None:
    """Make the base image (offline: debootstrap + docker import) and the SDK images, once; reused after."""
    import time

    from spacehub_runner import images as image_ops  # the CLI is where both halves meet

    settings = _settings()

    def progress(line: str) -> None:
        click.echo(f"  {line}")

    started = time.monotonic()
    click.echo("==> Base image")
    base = image_ops.bootstrap_base(settings, progress)
    click.echo(f"==> Base image ready: {base} ({time.monotonic() - started:.0f} s)")
    if no_sdk:
        return
    for python in settings.python_versions:
        for gradio in gradio_versions or (settings.default_gradio_version,):
            step = time.monotonic()
            click.echo(f"==> SDK image: Python {python}, Gradio {gradio}")
            ref = image_ops.ensure_sdk_image(settings, python, gradio, progress)
            click.echo(f"==> SDK image ready: {ref} ({time.monotonic() - step:.0f} s)")


@cli.group()
def models() -> None:
    """Manage model repos (what apps load with from_pretrained through HF_ENDPOINT)."""


@models.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the model repo private.")
@click.option("--revision", help="Branch to commit to (default: main).")
@click.option("-m", "--message", default="Import with spacehub", show_default=True)
def models_import(folder: Path, repo_id: str, private: bool, revision: str | None, message: str) -> None:
    """Upload the model in FOLDER as the model repo REPO_ID (owner/name); the owner must exist already."""
    from spacehub.cli.models import import_model

    client = Client(_settings())
    click.echo(import_model(client.url, client.token, folder, repo_id, private=private, message=message,
                            revision=revision))


cli.add_command(sandbox_commands.sandbox)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
