"""Space secrets at rest: sealed with AES-256-GCM (the `cryptography` library) under keys kept outside the database.

A sealed value reads `enc1:<key id>:<base64url(nonce | ciphertext and tag)>`. The associated data names the row
(space id and secret name), so a sealed value copied onto another space's row does not open there: someone who can
write the database still cannot hand one space's secret to another's app.

The key file (`SPACEHUB_SECRETS_KEY_FILE`, default `<data dir>/secrets.key`) is made once, mode 0600, like the
session secret. It holds one `<id> <base64 key>` per line: the first seals, every one opens. `rotate_key` adds a
new first key, re-seals every secret under it and then drops the old keys; the file is read on every use, so
running processes follow a rotation at once. Back the key file up apart from the database: one without the other
opens nothing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub.errors import SpacehubError
from spacehub.settings import Settings
from spacehub.store.models import SpaceVariable

SEALED_PREFIX = "enc1:"
NONCE_BYTES = 12  # GCM's standard nonce; random per value (2**32 values per key keep collisions negligible)


class SecretKeyError(SpacehubError):
    """A sealed secret cannot be opened (its key is not in the key file, or the value was tampered with)."""

    status = 500
    code = "SecretKeyError"


def key_file(settings: Settings) -> Path:
    return settings.secrets_key_file or settings.data_dir / "secrets.key"


@dataclass(frozen=True)
class SecretBox:
    keys: tuple[tuple[str, bytes], ...]  # (id, 256-bit key); the first seals

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: str, context: str) -> str:
        key_id, key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{SEALED_PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def unseal(self, stored: str, context: str) -> str:
        if not is_sealed(stored):
            raise SecretKeyError(f"{context} is stored unsealed: the database predates migration 0005_security "
                                 "(any spacehub command that opens the platform applies it)")
        key_id, _, payload = stored.removeprefix(SEALED_PREFIX).partition(":")
        key = dict(self.keys).get(key_id)
        if key is None:
            raise SecretKeyError(f"{context} was sealed with key {key_id!r}, which the secrets key file does not "
                                 "hold (restored without its key file?)")
        raw = base64.urlsafe_b64decode(payload)
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(f"{context} does not open with its key: the stored value was altered") from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def secret_context(space_id: int, name: str) -> str:
    """What a sealed value is bound to (its AES-GCM associated data)."""
    return f"space {space_id} secret {name}"


# The key file -----------------------------------------------------------------------------------------------


def _new_key() -> tuple[str, bytes]:
    return secrets.token_hex(4), AESGCM.generate_key(bit_length=256)


def _key_lines(keys: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> str:
    return "".join(f"{key_id} {base64.b64encode(key).decode()}\n" for key_id, key in keys)


def _parse(path: Path) -> tuple[tuple[str, bytes], ...]:
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key_id, _, encoded = line.strip().partition(" ")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            key = b""
        if not key_id or len(key) != 32:
            raise SecretKeyError(f"{path} line {number} is not `<id> <base64 of 32 bytes>`")
        keys.append((key_id, key))
    if not keys:
        raise SecretKeyError(f"{path} holds no key; restore it from a backup (or, if no secret was ever set, "
                             "delete it to make a new one)")
    return tuple(keys)


def _write(path: Path, keys: list[tuple[str, bytes]], *, replace: bool) -> None:
    """Write the key file atomically with mode 0600; without `replace`, the first writer wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(_key_lines(keys))
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
            return
        with contextlib.suppress(FileExistsError):  # another process published one first: keep theirs
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_box(settings: Settings) -> SecretBox:
    """The box over the current key file, which is created (one new key) on first use."""
    return load_box_file(key_file(settings))


def load_box_file(path: Path) -> SecretBox:
    if not path.exists():
        _write(path, [_new_key()], replace=False)
    return SecretBox(_parse(path))


# Rows -------------------------------------------------------------------------------------------------------


def seal_value(box: SecretBox, space_id: int, name: str, value: str) -> str:
    return box.seal(value, secret_context(space_id, name))


def reveal(box: SecretBox, row: SpaceVariable) -> str:
    """A variable's value, or a secret's opened: only for the app's environment and its build's secrets."""
    return box.unseal(row.value, secret_context(row.space_id, row.key)) if row.secret else row.value


def revealed(settings: Settings, rows: Sequence[SpaceVariable]) -> dict[str, str]:
    """name -> value of these rows, in their order, secrets opened (the key file is read only if one is there)."""
    box = load_box(settings) if any(row.secret for row in rows) else None
    return {row.key: reveal(box, row) if box is not None else row.value for row in rows}


def rotate_key(settings: Settings, session: Session) -> int:
    """Seal every secret under a new key and drop the old ones; returns how many secrets were re-sealed.

    The new key goes first in the file before anything is re-sealed, so a secret written meanwhile is sealed
    with it; a last pass re-seals any written with an old key while this ran, then the old keys go.
    """
    path = key_file(settings)
    old = load_box(settings)
    new_key = _new_key()
    _write(path, [new_key, *old.keys], replace=True)
    box = SecretBox((new_key, *old.keys))
    count = 0
    for _pass in range(2):
        rows = session.scalars(select(SpaceVariable).where(SpaceVariable.secret.is_(True))).all()
        for row in rows:
            if row.value.startswith(f"{SEALED_PREFIX}{box.primary_id}:"):
                continue
            row.value = seal_value(box, row.space_id, row.key, reveal(box, row))
            count += 1
        session.commit()
    _write(path, [new_key], replace=True)
    return count
