"""The free-disk watermark: builds and starts refuse, with a message that says why, instead of filling the disk."""

from __future__ import annotations

import shutil

from spacehub.settings import Settings


def free_mb(settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(settings.data_dir).free // (1024 * 1024)


def refusal(settings: Settings, what: str) -> str | None:
    """None while enough disk is free under the data dir; else why `what` ("build", "start") is refused."""
    free = free_mb(settings)
    if free >= settings.min_free_disk_mb:
        return None
    return (f"not enough free disk to {what}: {free} MB free under {settings.data_dir}, below the "
            f"SPACEHUB_MIN_FREE_DISK_MB watermark of {settings.min_free_disk_mb} MB; free some disk space "
            f"(unused environments, app copies and images are collected every SPACEHUB_GC_INTERVAL_S)")
