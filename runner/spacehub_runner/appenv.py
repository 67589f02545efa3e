"""The environment an app sees (design.md §4): the Hub's SPACE_* variables, HF_ENDPOINT, variables, secrets.

No platform credential is ever put here. Bind address and port are the runtime's to add.

`SYSTEM=spaces` is left out on purpose: Gradio takes `SYSTEM=spaces` plus `SPACE_ID` to mean "running on
huggingface.co", and then its page fetches a Spaces header (and fonts) from huggingface.co and Google, its server
starts a hot-reloader that needs the Hub's `spaces` package (a traceback in every log without it), and its API
snippets resolve the space through huggingface.co. Apps still get `SPACE_ID` and the other SPACE_* variables.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import crypto
from spacehub.settings import Settings
from spacehub.store.models import Space, SpaceVariable


def platform_env(settings: Settings, *, hf_endpoint: str | None = None) -> dict[str, str]:
    """The part of every app's environment that is the same for all spaces (a fork-server starts with it)."""
    return {
        "ACCELERATOR": "none",
        "HF_ENDPOINT": hf_endpoint or settings.base_url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_NUM_PORTS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def app_env(settings: Settings, session: Session, space: Space, *, hf_endpoint: str | None = None) -> dict[str, str]:
    env = platform_env(settings, hf_endpoint=hf_endpoint)
    env.update({
        "SPACE_ID": space.repo_id,
        "SPACE_AUTHOR_NAME": space.owner,
        "SPACE_REPO_NAME": space.name,
        "SPACE_TITLE": str((space.card_data or {}).get("title") or space.name),
        "SPACE_HOST": f"{space.label}.{settings.spaces_domain}",
        "SPACE_CREATOR_USER_ID": str(space.created_by or ""),
    })
    # Variables first, then secrets, so a secret wins over a variable of the same name.
    rows = session.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id)
                           .order_by(SpaceVariable.secret, SpaceVariable.key)).all()
    env.update(crypto.revealed(settings, rows))  # secrets are opened only here, for the app's own environment
    return env
