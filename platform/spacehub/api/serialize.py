"""Spaces in the Hub's JSON shapes (SpaceInfo, SpaceRuntime), as huggingface_hub parses them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from spacehub.settings import Settings
from spacehub.stages import SERVING
from spacehub.store.models import Space


def hub_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def space_host(settings: Settings, space: Space) -> str:
    return settings.space_url(space.label)


def runtime_json(settings: Settings, space: Space) -> dict[str, Any]:
    serving = space.stage in SERVING
    return {
        "stage": str(space.stage),
        "hardware": {"current": space.hardware if serving else None, "requested": space.hardware},
        "storage": space.storage,
        # The value in force: the space's own, else the install's default (-1: never sleeps).
        "gcTimeout": space.sleep_time if space.sleep_time is not None else settings.default_sleep_time_s,
        "replicas": {"requested": 1, "current": 1 if serving else 0},
        "devMode": False,
        "domains": [{"domain": f"{space.label}.{settings.spaces_domain}", "stage": "READY"}],
        "errorMessage": space.message or None,
        "sdk": space.sdk,
        "sha": space.running_sha,
    }


def space_json(settings: Settings, space: Space, siblings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "_id": str(space.id),
        "id": space.repo_id,
        "author": space.owner,
        "sha": space.desired_sha,
        "private": space.private,
        "gated": False,
        "disabled": False,
        "likes": 0,
        "trendingScore": 0,
        "tags": [space.sdk] if space.sdk else [],
        "createdAt": hub_time(space.created_at),
        "lastModified": hub_time(space.updated_at),
    }
    if space.repo_type == "space":
        data.update({
            "sdk": space.sdk,
            "subdomain": space.label,
            "host": space_host(settings, space),
            "cardData": space.card_data or {},
            "runtime": runtime_json(settings, space),
        })
    if siblings is not None:
        data["siblings"] = siblings
    return data
