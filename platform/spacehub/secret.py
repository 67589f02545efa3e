"""The platform's signing secret: made once, kept in a 0600 file under the data dir, never in code or config.

It signs browser sessions, CSRF tokens and the short-lived tokens that let a private space's iframe in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from spacehub.settings import Settings

SECRET_BYTES = 32


def secret_path(settings: Settings) -> Path:
    return settings.data_dir / "secret.key"


def load_secret(settings: Settings) -> bytes:
    """The secret, created on first use; concurrent first uses agree on one (the atomic link decides)."""
    path = secret_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(SECRET_BYTES))
            with contextlib.suppress(FileExistsError):  # another process published one first: keep theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    value = path.read_text().strip()
    if len(value) < SECRET_BYTES:
        raise RuntimeError(f"the signing secret in {path} is too short; delete it to make a new one")
    return value.encode()
