"""`spacehub push DIR owner/name`: create if needed, upload the folder, follow the build, print the URL."""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import pathspec

from spacehub.cli.client import Client
from spacehub.errors import SpaceConfigError
from spacehub.spaceconfig import parse_front_matter

ALWAYS_SKIPPED = (".git", ".venv", "__pycache__")
# Build statuses after which following stops: the push failed, or a newer push took its place.
ENDED = ("failed", "superseded")


def collect_files(folder: Path) -> list[Path]:
    """Files to upload: everything but .git, .venv, __pycache__ and what .gitignore (incl. itself) names."""
    ignore_file = folder / ".gitignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.is_file() else []
    spec = pathspec.PathSpec.from_lines("gitwildmatch", [*lines, ".gitignore"])
    files = []
    for root, dirs, names in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_SKIPPED
                         and not spec.match_file(f"{(rel_root / d).as_posix()}/"))
        for name in sorted(names):
            rel = (rel_root / name).as_posix()
            if not spec.match_file(rel) and not (Path(root) / name).is_symlink():
                files.append(Path(rel))
    return files


def pack(folder: Path, files: list[Path], out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for rel in files:
            tar.add(folder / rel, arcname=rel.as_posix(), recursive=False)


def _chunks(fh: IO[bytes], bar: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := fh.read(size):
        bar.update(len(chunk))
        yield chunk


def ensure_space(client: Client, repo_id: str, sdk: str, private: bool, hardware: str | None) -> None:
    owner, _, name = repo_id.partition("/")
    body: dict[str, Any] = {"name": name, "organization": owner, "type": "space", "sdk": sdk,
                            "visibility": "private" if private else "public"}
    if hardware:
        body["hardware"] = hardware
    response = client.http.post("/api/repos/create", json=body)
    if response.status_code == 409:
        if hardware:  # an existing space: --hardware changes its flavor (the Hub's request_space_hardware)
            runtime = client.get(f"/api/spaces/{repo_id}/runtime")
            if runtime["hardware"]["requested"] != hardware:
                client.check(client.http.post(f"/api/spaces/{repo_id}/hardware", json={"flavor": hardware}))
                click.echo(f"Hardware of {repo_id}: {hardware}")
        return
    client.check(response)
    click.echo(f"Created space {repo_id}")


def upload(client: Client, folder: Path, repo_id: str, message: str) -> dict[str, Any]:
    files = collect_files(folder)
    if not files:
        raise click.ClickException(f"{folder} has no files to upload")
    with tempfile.TemporaryFile() as archive:
        pack(folder, files, archive)
        total = archive.tell()
        archive.seek(0)
        progress: Any = click.progressbar(length=total, label=f"Uploading {len(files)} files",
                                          file=sys.stderr)
        with progress as bar:
            result: dict[str, Any] = client.post(
                f"/api/spaces/{repo_id}/upload", params={"message": message, "filename": "upload.tar.gz"},
                content=_chunks(archive, bar), headers={"Content-Type": "application/gzip",
                                                        "Content-Length": str(total)})
    return result


def follow_build(client: Client, repo_id: str, sha: str, timeout: float) -> dict[str, Any]:
    """Print the build log as it grows until the revision runs or fails; return the final build status."""
    last = "0-0"
    deadline = time.monotonic() + timeout
    while True:
        for event in client.sse(f"/api/spaces/{repo_id}/logs/build", params={"follow": "false", "after": last}):
            click.echo(event["data"], nl=False)
            last = event.get("id", last)
        status: dict[str, Any] = client.get(f"/api/spaces/{repo_id}/builds/{sha}")
        if status["running"] or status["status"] in ENDED:
            for event in client.sse(f"/api/spaces/{repo_id}/logs/build", params={"follow": "false", "after": last}):
                click.echo(event["data"], nl=False)
            return status
        if time.monotonic() > deadline:
            raise click.ClickException(f"gave up waiting after {timeout:.0f} s; the build goes on")
        time.sleep(0.3)


def readme_sdk(folder: Path) -> str | None:
    """The README's sdk, read leniently: the server checks the whole config (it refuses a broken one, naming
    the rule)."""
    readme = folder / "README.md"
    try:
        value = parse_front_matter(readme.read_text(errors="replace")).get("sdk") if readme.is_file() else None
    except SpaceConfigError:
        return None
    return value if value in ("gradio", "docker", "static") else None


def push(client: Client, folder: Path, repo_id: str, *, sdk: str | None, private: bool, hardware: str | None,
         message: str, follow: bool, timeout: float) -> None:
    if "/" not in repo_id:
        raise click.ClickException("the space must be given as owner/name")
    ensure_space(client, repo_id, sdk or readme_sdk(folder) or "gradio", private, hardware)
    result = upload(client, folder, repo_id, message)
    sha = result["commit"]
    click.echo(f"Revision {sha[:12]}" + ("" if result["changed"] else " (unchanged)"))
    if not follow:
        click.echo(result["url"])
        return
    if result["build_id"] is None:
        status = client.get(f"/api/spaces/{repo_id}/builds/{sha}")
        if status["running"]:
            click.echo("Nothing to build: this revision is already running.")
            click.echo(f"Running: {status['url']}")
            return
    status = follow_build(client, repo_id, sha, timeout)
    click.echo(outcome(repo_id, sha, status))


def outcome(repo_id: str, sha: str, status: dict[str, Any]) -> str:
    """What a followed push ends with: the URL it runs at, a note that a newer push superseded it (not a
    failure: the newer revision builds instead), or a ClickException (exit 1) for a build or start failure."""
    if status["status"] == "superseded":
        return (f"Superseded: a newer revision of {repo_id} was pushed before {sha[:12]} ran; the newer one builds "
                f"instead (follow it with `spacehub logs {repo_id} --build --follow`)")
    if status["status"] == "failed" or not status["running"]:
        raise click.ClickException(f"{status['stage']}: {status['error'] or status['message']}")
    return f"Running: {status['url']}"
