"""Ask an image registry for a manifest's digest over its HTTP API (the OCI distribution spec), without a Docker
engine: the Kubernetes builder's workers have none, yet must know whether an image is already pushed (an unchanged
space is never rebuilt) and whether an artifact can still be started.

Only `HEAD /v2/<name>/manifests/<reference>` is used, with the registry's own auth challenge answered (Basic, or a
Bearer token from the realm it names, as Docker Hub, GHCR, Harbor and the CNCF distribution server ask). Plain HTTP
only for a loopback registry, the rule Docker itself applies; every other registry is spoken to over TLS.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

import requests

from spacehub.settings import Settings

from .imageregistry import DIGEST_REF

# Index first: a multi-platform push answers with its index, whose digest is the name BuildKit reports.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry could not be asked (unreachable, refused the credentials, answered nonsense)."""


def split_ref(ref: str) -> tuple[str, str, str]:
    """`host[:port]/path[:tag|@digest]` -> (host, repository path, reference)."""
    match = DIGEST_REF.match(ref)
    if match:
        name, reference = match["name"], match["digest"]
    else:
        name, _, reference = ref.rpartition(":")
        if not name or "/" in reference:
            name, reference = ref, "latest"
    host, _, path = name.partition("/")
    if not path:
        raise ValueError(f"image {ref!r} names no registry host")
    return host, path, reference


def base_url(host: str) -> str:
    hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
    try:
        loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        loopback = False
    return f"{'http' if loopback else 'https'}://{host}"


def manifest_digest(settings: Settings, ref: str, timeout_s: float = 10.0) -> str | None:
    """The digest the registry holds for `ref` (a tag or a digest name), or None when it holds none."""
    host, path, reference = split_ref(ref)
    url = f"{base_url(host)}/v2/{path}/manifests/{reference}"
    auth = _basic(settings)
    session = requests.Session()
    headers = {"Accept": MANIFEST_TYPES}
    try:
        answer = session.head(url, headers=headers, timeout=timeout_s)
        if answer.status_code == 401:
            challenge = answer.headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                headers["Authorization"] = f"Bearer {_token(session, challenge, auth, timeout_s)}"
                answer = session.head(url, headers=headers, timeout=timeout_s)
            else:
                answer = session.head(url, headers=headers, auth=auth, timeout=timeout_s)
    except requests.RequestException as exc:
        raise RegistryError(f"registry {host} unreachable: {exc}") from None
    if answer.status_code == 404:
        return None
    if answer.status_code != 200:
        raise RegistryError(f"registry {host} answered {answer.status_code} for {path}:{reference}")
    digest = answer.headers.get("Docker-Content-Digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise RegistryError(f"registry {host} gave no digest for {path}:{reference}")
    return digest


def _basic(settings: Settings) -> tuple[str, str] | None:
    if not settings.registry_username:
        return None
    password = settings.registry_password.get_secret_value() if settings.registry_password else ""
    return settings.registry_username, password


def _token(session: requests.Session, challenge: str, auth: tuple[str, str] | None, timeout_s: float) -> str:
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm.startswith("https://") and not realm.startswith("http://"):
        raise RegistryError(f"registry's auth challenge names no realm: {challenge[:200]}")
    answer = session.get(realm, params=params, auth=auth, timeout=timeout_s)
    if answer.status_code != 200:
        raise RegistryError(f"registry's token service refused ({answer.status_code})")
    body = answer.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryError("registry's token service gave no token")
    return str(token)
