"""`spacehub backup DEST` and `spacehub restore SRC` (see spacehub.backup for what is kept and why)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from spacehub.settings import Settings, load_settings

if TYPE_CHECKING:
    from spacehub.backup import VolumeStore


def _volumes(settings: Settings) -> VolumeStore | None:
    """Spaces' persistent storage, where spaces run in containers (the docker runtime keeps each /data)."""
    from spacehub import dockerhost
    from spacehub.backup import VolumeStore

    if not dockerhost.uses_docker(settings):
        return None
    from spacehub_runner.backends import runtime_for  # the CLI is where both halves meet

    runtime = runtime_for(settings, "docker")
    return runtime if isinstance(runtime, VolumeStore) else None


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
def backup(dest: Path) -> None:
    """Back up the database, repositories, LFS objects, keys and spaces' /data into DEST (a new folder), while
    serving."""
    from spacehub import backup as backups

    settings = load_settings()
    summary = backups.backup(settings, dest, _volumes(settings))
    rows = sum(summary.tables.values())
    click.echo(f"Backed up {rows} rows in {len(summary.tables)} tables, {summary.repositories} repositories"
               f"{', ' + ', '.join(summary.files) if summary.files else ''}, the /data of {summary.volumes} "
               f"space(s) to {summary.folder}")


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore(src: Path) -> None:
    """Restore the backup in SRC into this empty install; every space is then rebuilt when the platform runs."""
    from spacehub import backup as backups

    settings = load_settings()
    summary = backups.restore(settings, src, _volumes(settings))
    click.echo(f"Restored {sum(summary.tables.values())} rows, {summary.repositories} repositories"
               f"{', ' + ', '.join(summary.files) if summary.files else ''}, the /data of {summary.volumes} "
               f"space(s) from {summary.folder}; "
               "start the platform: every space is queued for a build")
