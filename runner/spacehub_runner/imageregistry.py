"""Space images in an image registry (`SPACEHUB_REGISTRY`): push what was built, name it by digest, pull it back.

With a registry, an image's name is `<registry>/<app repo>@sha256:<digest>`: the digest names the exact bytes
pushed, so any engine (another worker, a Kubernetes node) runs exactly what was built, and a tag moved later
changes nothing. The content-named tag (`:<key>`) is pushed too, so a second worker finds a build already done.

Credentials travel per request (Docker's X-Registry-Auth header), never into a client config file on disk.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from spacehub.errors import BuildFailed, StartFailed
from spacehub.settings import Settings

from .plugs import LogFn

DIGEST_REF = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")


def enabled(settings: Settings) -> bool:
    return bool(settings.registry)


def auth_config(settings: Settings) -> dict[str, str] | None:
    """The credentials for the registry, as docker-py passes them per request (None: anonymous)."""
    if not settings.registry_username:
        return None
    password = settings.registry_password.get_secret_value() if settings.registry_password else ""
    return {"username": settings.registry_username, "password": password}


def remote_repo(settings: Settings, app_repo: str) -> str:
    """Where space images live in the registry: `<registry>/<app repo>`."""
    if not settings.registry:
        raise ValueError("no SPACEHUB_REGISTRY set")
    return f"{settings.registry}/{app_repo}"


def is_digest_ref(ref: str) -> bool:
    return DIGEST_REF.match(ref) is not None


def push(client: docker.DockerClient, settings: Settings, local_tag: str, app_repo: str, key: str,
         log: LogFn) -> str:
    """Push the local image `local_tag` as `<registry>/<app repo>:<key>`; return its name by digest."""
    repo = remote_repo(settings, app_repo)
    try:
        client.images.get(local_tag).tag(repo, key)
        log(f"pushing {repo}:{key}")
        digest = ""
        for event in client.api.push(repo, tag=key, auth_config=auth_config(settings), stream=True, decode=True):
            if "error" in event:
                raise BuildFailed(f"push to {settings.registry} failed: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest", digest)
    except DockerException as exc:
        raise BuildFailed(f"push to {settings.registry} failed: {_explain(exc)}") from None
    finally:
        _untag(client, f"{repo}:{key}")  # the local name stays the content tag; the registry keeps this one
    if not digest:
        raise BuildFailed(f"push to {settings.registry} reported no digest for {repo}:{key}")
    log(f"pushed {repo}@{digest}")
    return f"{repo}@{digest}"


def find_pushed(client: docker.DockerClient, settings: Settings, app_repo: str, key: str) -> str | None:
    """The digest name of `<registry>/<app repo>:<key>` when the registry has it (a build another worker did)."""
    repo = remote_repo(settings, app_repo)
    digest = remote_digest(client, settings, f"{repo}:{key}")
    return f"{repo}@{digest}" if digest else None


def remote_digest(client: docker.DockerClient, settings: Settings, ref: str) -> str | None:
    """The manifest digest the registry holds for `ref` (a tag or a digest name), or None when it has none."""
    try:
        data = client.images.get_registry_data(ref, auth_config=auth_config(settings))
    except (NotFound, ImageNotFound):
        return None
    except APIError as exc:
        # The engine reports a missing manifest as a 500 carrying the registry's words.
        if "manifest unknown" in str(exc) or "not found" in str(exc).lower():
            return None
        raise
    return str(data.id)


def ensure_local(client: docker.DockerClient, settings: Settings, ref: str) -> None:
    """Pull `ref` (a digest name) unless this engine has it already; StartFailed naming the cause if not."""
    try:
        client.images.get(ref)
        return
    except ImageNotFound:
        pass
    except DockerException as exc:
        raise StartFailed(f"could not inspect image {ref}: {_explain(exc)}") from None
    match = DIGEST_REF.match(ref)
    if match is None:
        raise StartFailed(f"image {ref} is gone; rebuild the space")
    try:
        # The engine reports a failed pull inside the stream (an "error" event), not as an HTTP error.
        for event in client.api.pull(match["name"], tag=match["digest"], auth_config=auth_config(settings),
                                     stream=True, decode=True):
            if "error" in event:
                raise StartFailed(f"could not pull {ref}: {event['error']}")
    except DockerException as exc:
        raise StartFailed(f"could not pull {ref}: {_explain(exc)}") from None


def exists(client: docker.DockerClient, settings: Settings, ref: str) -> bool:
    """Whether a digest-named image can still be started: on this engine, or in the registry."""
    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        pass
    try:
        return remote_digest(client, settings, ref) is not None
    except DockerException:
        return False  # unreachable registry: the job rebuilds, and its push says why if it fails too


def _untag(client: docker.DockerClient, ref: str) -> None:
    with contextlib.suppress(NotFound, ImageNotFound):
        client.images.remove(ref, noprune=True)


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)
