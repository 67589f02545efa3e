"""Dispatching work to the worker side through RQ, by dotted name (the control plane never imports the runner).

Jobs use RQ's JSON serializer (no pickle), and the worker only runs functions from `ALLOWED_JOBS`.
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

BUILDS = "spacehub-builds"  # long jobs
OPS = "spacehub-ops"  # short jobs (start, stop, teardown) that must not wait behind a build

ALLOWED_JOBS = frozenset({
    "spacehub_runner.jobs.build",
    "spacehub_runner.jobs.deploy",
    "spacehub_runner.jobs.start",
    "spacehub_runner.jobs.stop",
    "spacehub_runner.jobs.teardown",
})


def queue(conn: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=conn, serializer=JSONSerializer)


def enqueue(conn: redis.Redis, name: str, func: str, *args: Any, job_id: str | None = None,
            timeout: int = 600, at_front: bool = False) -> str:
    if func not in ALLOWED_JOBS:
        raise ValueError(f"{func} is not a spacehub job")
    job = queue(conn, name).enqueue(func, *args, job_id=job_id, job_timeout=timeout, result_ttl=3600,
                                    failure_ttl=24 * 3600, at_front=at_front)
    return str(job.id)
