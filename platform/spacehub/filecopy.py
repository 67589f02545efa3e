"""Copy a folder of someone else's files whole: folders, files and symbolic links with their modes, owners and
times (an app's persistent storage belongs to its uid, 1000). Used by backups of spaces' /data, while the app
may go on writing: a file deleted between the listing and its copy is skipped, anything else that fails stops
the copy."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def copy_tree(src: Path, dest: Path) -> int:
    """Copy what is inside `src` into the folder `dest` (made if missing). Returns how many files were copied."""
    files = 0
    dest.mkdir(parents=True, exist_ok=True)
    folders: list[tuple[Path, Path]] = [(src, dest)]
    for root, dirnames, filenames in os.walk(src):
        here = Path(root)
        there = dest / here.relative_to(src)
        for name in dirnames + filenames:
            source, target = here / name, there / name
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile: not part of the copy
                if source.is_symlink():
                    os.symlink(os.readlink(source), target)
                elif source.is_dir():
                    target.mkdir()
                    folders.append((source, target))
                    continue
                elif source.is_file():
                    shutil.copy2(source, target)
                    files += 1
                else:
                    continue  # sockets, fifos, devices: nothing to keep
                _keep_owner(source, target)
    # Folders last, deepest first: writing into a folder changes its times, and its mode may forbid the writes.
    for source, target in reversed(folders):
        with contextlib.suppress(FileNotFoundError):
            shutil.copystat(source, target)
            _keep_owner(source, target)
    return files


def _keep_owner(source: Path, target: Path) -> None:
    stat = source.lstat()
    if os.geteuid() == 0:
        os.chown(target, stat.st_uid, stat.st_gid, follow_symlinks=False)
