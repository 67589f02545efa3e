"""`spacehub sandbox install|check|remove`: the kernel-side box around the Docker runtime (spacehub.sandbox)."""

from __future__ import annotations

import click

from spacehub.settings import load_settings


@click.group()
def sandbox() -> None:
    """The Docker runtime's egress rules and build-step hardening (root)."""


def _run(action: str) -> None:
    from spacehub import sandbox as box
    from spacehub.sandbox.buildsteps import BuildStepsError
    from spacehub.sandbox.egress import EgressError

    settings = load_settings()
    try:
        getattr(box, action)(settings, click.echo)
    except (EgressError, BuildStepsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@sandbox.command("install")
def sandbox_install() -> None:
    """Create spacehub's docker network and put its egress rules and the build-step wrapper in force."""
    _run("install")
    _check()


@sandbox.command("remove")
def sandbox_remove() -> None:
    """Take the rules and the wrapper away again."""
    _run("remove")


@sandbox.command("check")
def sandbox_check() -> None:
    """Say whether everything is in force (exit status 1 if not), as `spacehub serve` checks at start-up."""
    _check()


def _check() -> None:
    from spacehub import sandbox as box

    found = box.problems(load_settings())
    if found:
        raise click.ClickException(box.refusal(found))
    click.echo("sandbox in force")
