"""The Deployment record: one row per start of a revision, written by the deploy step of `jobs` (or by the
supervisor when it adopts an app no row knows) and closed by whoever ends the app (a newer revision, a stop, a
drain, the reconciler when the start was cut off). Every app that runs has one, so the rows answer "what runs"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub.store.models import Build, Deployment, DeployOutcome, Space, utcnow
from spacehub_runner import liveness

LIVE = (DeployOutcome.STARTING, DeployOutcome.SERVING)


def open_deployment(session: Session, space: Space, build: Build) -> Deployment:
    job = get_current_job()
    deployment = Deployment(space_id=space.id, build_id=build.id, revision=build.sha, artifact=build.artifact,
                            job_id=job.id if job is not None else None, runner=liveness.me(),
                            outcome=DeployOutcome.STARTING)
    session.add(deployment)
    session.flush()
    return deployment


def adopted(session: Session, space: Space, build: Build | None, handle: dict[str, Any],
            created: datetime | None = None) -> Deployment:
    """An app found running that no deployment names (its start's record was lost with a crash, or never written):
    recorded as serving from now, started when the runtime says it was created."""
    deployment = Deployment(space_id=space.id, build_id=build.id if build is not None else None,
                            revision=str(space.running_sha or space.desired_sha or ""),
                            artifact=build.artifact if build is not None else None, handle=handle,
                            outcome=DeployOutcome.STARTING, started_at=created or utcnow())
    session.add(deployment)
    session.flush()
    serving(session, deployment.id, handle)
    return deployment


def started(session: Session, deployment_id: int, handle: dict[str, Any]) -> None:
    """The app exists (not ready yet): recorded at once, so that a start cut off here leaves no unknown app."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is not None:
        deployment.handle = handle


def serving(session: Session, deployment_id: int, handle: dict[str, Any]) -> None:
    """Ready and routed; the space's previous deployment is retired (its app drains, then stops)."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return
    deployment.handle, deployment.ready_at, deployment.outcome = handle, utcnow(), DeployOutcome.SERVING
    for older in session.scalars(select(Deployment).where(Deployment.space_id == deployment.space_id,
                                                          Deployment.id != deployment.id,
                                                          Deployment.outcome == DeployOutcome.SERVING)):
        older.outcome = DeployOutcome.RETIRED


def close(session: Session, deployment_id: int, outcome: DeployOutcome, error: str = "") -> None:
    deployment = session.get(Deployment, deployment_id)
    if deployment is not None and deployment.outcome == DeployOutcome.STARTING:
        deployment.outcome, deployment.error = outcome, error


def ended(session: Session, space_id: int, handle: dict[str, Any] | None) -> None:
    """The app of `handle` is stopped (drained, slept, stopped, crashed): its deployment says when."""
    if handle is None:
        return
    for deployment in session.scalars(select(Deployment).where(Deployment.space_id == space_id,
                                                               Deployment.drained_at.is_(None),
                                                               Deployment.handle.is_not(None))):
        if deployment.handle == handle:
            deployment.drained_at = utcnow()
            if deployment.outcome in LIVE:
                deployment.outcome = DeployOutcome.RETIRED


def last_for_build(session: Session, build_id: int) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.build_id == build_id)
                          .order_by(Deployment.id.desc()).limit(1))
