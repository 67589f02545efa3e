"""The registry lookup the Kubernetes builder makes without a Docker engine (`registryhttp`), against a real
registry: Debian's docker-registry (the CNCF distribution server) on loopback with htpasswd auth, holding an image
manifest pushed over its HTTP API."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from spacehub.settings import Settings
from spacehub_runner import registryhttp
from spacehub_runner.builders.kubernetes import registry_has
from support.registry import Registry, running_registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as found:
        yield found


def _push_blob(registry: Registry, name: str, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry.client() as http:
        started = http.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        # The upload's Location carries its own query (its state): the digest is added to it, not put instead.
        joiner = "&" if "?" in location else "?"
        done = http.put(f"{location}{joiner}digest={digest}", content=data,
                        headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> tuple[str, str, str]:
    """(repository name, tag, manifest digest) of an image pushed to the registry."""
    name, tag = f"run-{secrets.token_hex(4)}/spacehub/app", "k" + secrets.token_hex(8)
    config = _push_blob(registry, name, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}')
    layer = _push_blob(registry, name, secrets.token_bytes(64))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode()
    with registry.client() as http:
        answer = http.put(f"/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
        assert answer.status_code == 201, answer.text
    return name, tag, "sha256:" + hashlib.sha256(manifest).hexdigest()


def _settings(tmp_path: Path, registry: Registry, password: str) -> Settings:
    return Settings(data_dir=tmp_path, registry=registry.address, registry_username=registry.username,
                    registry_password=SecretStr(password))


def test_the_digest_of_a_pushed_tag_and_of_its_digest_name(tmp_path: Path, registry: Registry,
                                                           pushed: tuple[str, str, str]) -> None:
    name, tag, digest = pushed
    settings = _settings(tmp_path, registry, registry.password)
    assert registryhttp.manifest_digest(settings, f"{registry.address}/{name}:{tag}") == digest
    assert registryhttp.manifest_digest(settings, f"{registry.address}/{name}@{digest}") == digest
    assert registry_has(settings, f"{registry.address}/{name}@{digest}")


def test_a_tag_the_registry_lacks_is_none(tmp_path: Path, registry: Registry, pushed: tuple[str, str, str]) -> None:
    name, _, _ = pushed
    settings = _settings(tmp_path, registry, registry.password)
    assert registryhttp.manifest_digest(settings, f"{registry.address}/{name}:never-pushed") is None
    assert not registry_has(settings, f"{registry.address}/{name}@sha256:{'0' * 64}")


def test_wrong_credentials_are_an_error_not_a_missing_image(tmp_path: Path, registry: Registry,
                                                            pushed: tuple[str, str, str]) -> None:
    name, tag, _ = pushed
    settings = _settings(tmp_path, registry, "wrong-password")
    with pytest.raises(registryhttp.RegistryError, match="answered 401"):
        registryhttp.manifest_digest(settings, f"{registry.address}/{name}:{tag}")


def test_only_a_loopback_registry_is_spoken_to_in_plain_http() -> None:
    assert registryhttp.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registryhttp.base_url("localhost:5000") == "http://localhost:5000"
    assert registryhttp.base_url("registry.example.com") == "https://registry.example.com"
    assert registryhttp.split_ref("r.example.com:5000/a/b:t") == ("r.example.com:5000", "a/b", "t")


def test_gc_names_of_an_image_include_its_digest_names_in_the_platforms_repos() -> None:
    from spacehub_runner.gc import image_names

    repos = ["spacehub/app", "registry.example.com/team/spacehub/app"]
    pulled = "registry.example.com/team/spacehub/app@sha256:" + "ab" * 32
    assert image_names([], [pulled], repos) == [pulled]  # pulled by digest: no tag at all
    assert image_names(["spacehub/app:k1", "other/app:x"], [pulled, "elsewhere/app@sha256:" + "cd" * 32],
                       repos) == ["spacehub/app:k1", pulled]
    assert image_names(["spacehub/sdk:py3.11"], [], repos) == []  # never the shared base or SDK images
