"""`spacehub backup DEST` and `spacehub restore SRC` (see spacehub.backup for what is kept and why)."""

from __future__ import annotations

from pathlib import Path

import click

from spacehub.settings import load_settings


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
def backup(dest: Path) -> None:
    """Back up the database, repositories, LFS objects and keys into DEST (a new folder), while serving."""
    from spacehub import backup as backups

    summary = backups.backup(load_settings(), dest)
    rows = sum(summary.tables.values())
    click.echo(f"Backed up {rows} rows in {len(summary.tables)} tables, {summary.repositories} repositories"
               f"{', ' + ', '.join(summary.files) if summary.files else ''} to {summary.folder}")


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore(src: Path) -> None:
    """Restore the backup in SRC into this empty install; every space is then rebuilt when the platform runs."""
    from spacehub import backup as backups

    summary = backups.restore(load_settings(), src)
    click.echo(f"Restored {sum(summary.tables.values())} rows, {summary.repositories} repositories"
               f"{', ' + ', '.join(summary.files) if summary.files else ''} from {summary.folder}; "
               "start the platform: every space is queued for a build")
