"""`spacehub models import DIR owner/name`: upload a local model folder as a model repo.

A thin wrapper over the Hub client's own commit path (`HfApi.create_repo` + `HfApi.upload_folder`), so a model
imported here is stored exactly as one uploaded with `huggingface_hub`, and loads with `from_pretrained` from any
app whose `HF_ENDPOINT` is this platform. Creating the owner (an organization) is not this command's job: the
owner must exist and the token's user must be able to write to it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import click
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

# Never part of a model: VCS data, caches, and the download cache huggingface_hub keeps beside local copies.
IGNORED = [".git/*", "**/.git/*", "__pycache__/*", "**/__pycache__/*", ".cache/huggingface/*", "*.pyc"]


def model_files(folder: Path) -> list[tuple[str, int]]:
    """(relative path, size) of each file upload_folder will consider, for the progress lines."""
    found: list[tuple[str, int]] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__", ".cache"))
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix == ".pyc" or path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(folder).as_posix(), path.stat().st_size))
    return found


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _explain(exc: HfHubHTTPError, owner: str) -> str:
    """The server's message, plus what to do about the errors this command meets most."""
    response = exc.response
    message = str(exc)
    if response is not None:
        with contextlib.suppress(ValueError):
            message = response.json().get("error", message)
        if response.status_code == 401:
            return f"{message}: log in first (`spacehub login`) or set SPACEHUB_TOKEN"
        if "no user or organization named" in message:
            return (f"{message}. `spacehub models import` does not create organizations: create it first, e.g. "
                    f"`spacehub orgs create {owner} --member <your user>` (an admin command on the platform's "
                    "data dir), then import again")
        if response.status_code == 403:
            return f"{message}: your user must be {owner!r} or a member of the organization {owner!r}"
    return message


def _head(api: HfApi, repo_id: str, revision: str | None) -> str | None:
    """The branch's current commit, or None for a new repo or branch (nothing to compare with)."""
    try:
        return api.model_info(repo_id, revision=revision).sha
    except HfHubHTTPError:
        return None


def import_model(url: str, token: str | None, folder: Path, repo_id: str, *, private: bool, message: str,
                 revision: str | None = None) -> str:
    """Create the model repo if needed and commit the folder's files to it; return the commit URL."""
    owner, slash, name = repo_id.partition("/")
    if not slash or not owner or not name or "/" in name:
        raise click.ClickException("the model must be given as owner/name")
    files = model_files(folder)
    if not files:
        raise click.ClickException(f"{folder} has no files to upload")
    total = sum(size for _, size in files)
    # spacehub stores large files with git LFS, not Xet; with hf_xet installed the client would take the Xet path
    # for every LFS file (it asks the server nothing first), so this client turns it off as HF_HUB_DISABLE_XET=1 does.
    constants.HF_HUB_DISABLE_XET = True
    api = HfApi(endpoint=url, token=token or False)
    try:
        repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        click.echo(f"Model repo {repo_url}")
        width = max(len(path) for path, _ in files)
        for path, size in files:
            click.echo(f"  {path:<{width}}  {human(size):>9}")
        click.echo(f"==> Uploading {len(files)} files ({human(total)}) in one commit ...")
        before = _head(api, repo_id, revision)
        started = time.monotonic()
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                                 commit_message=message, ignore_patterns=IGNORED)
    except HfHubHTTPError as exc:
        raise click.ClickException(_explain(exc, owner)) from None
    elapsed = max(time.monotonic() - started, 1e-6)
    if info.oid == before:
        click.echo(f"==> Unchanged: {repo_id} already holds these files at {info.oid[:12]}")
    else:
        click.echo(f"==> Committed {info.oid[:12]} in {elapsed:.1f} s ({human(total / elapsed)}/s)")
    click.echo(f"Load it from an app with HF_ENDPOINT={url}: from_pretrained({repo_id!r})")
    return str(info.commit_url)
