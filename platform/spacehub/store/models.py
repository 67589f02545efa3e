"""Tables. SQL is the source of truth; Redis only dispatches work and carries logs and routes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum, nonmember
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from spacehub.stages import Stage


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Installation(Base):
    """One row: this database's own random id (made by its first migration), which `/health` reports, so that a
    command working on a database can tell whether the platform answering at a URL uses the same one."""

    __tablename__ = "installation"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    name_key: Mapped[str] = mapped_column(String(96), unique=True)  # lower-cased: names are case-insensitive
    fullname: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    tokens: Mapped[list[Token]] = relationship(back_populates="user", cascade="all, delete-orphan")
    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    name_key: Mapped[str] = mapped_column(String(96), unique=True)
    fullname: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    members: Mapped[list[Membership]] = relationship(back_populates="org", cascade="all, delete-orphan")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "org_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20), default="write")  # "admin" | "write" | "read"

    user: Mapped[User] = relationship(back_populates="memberships")
    org: Mapped[Organization] = relationship(back_populates="members")


class Token(Base):
    """An API token, stored as a lookup prefix plus a hash of the whole secret; the secret is shown once."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(10), default="write")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # None: until revoked

    user: Mapped[User] = relationship(back_populates="tokens")


class Space(Base):
    __tablename__ = "spaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    key: Mapped[str] = mapped_column(String(200), unique=True)  # lower-cased "owner/name"
    label: Mapped[str] = mapped_column(String(63), unique=True)  # DNS label of its subdomain
    repo_type: Mapped[str] = mapped_column(String(10), default="space")  # "space" | "model" | "dataset"
    sdk: Mapped[str | None] = mapped_column(String(20), nullable=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    hardware: Mapped[str] = mapped_column(String(40), default="cpu-basic")
    storage: Mapped[str | None] = mapped_column(String(20), nullable=True)
    sleep_time: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Changed only by `spacehub.transitions.transition`, which also records who moved it last, and when.
    stage: Mapped[Stage] = mapped_column(String(30), default=Stage.NO_APP_FILE)
    message: Mapped[str] = mapped_column(Text, default="")  # why the space is in its stage (errors, waits)
    stage_by: Mapped[str] = mapped_column(String(40), default="")
    stage_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # An idle app held without a route (frozen, or about to be): a request wakes it. Part of what the route is
    # derived from (spacehub.routetable.wanted_target), so it lives here and not in one process's memory.
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    desired_sha: Mapped[str | None] = mapped_column(String(40), nullable=True)  # latest pushed revision
    running_sha: Mapped[str | None] = mapped_column(String(40), nullable=True)  # revision that gets the route
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # runtime handle of running app
    card_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the Hub derives from a model's or dataset's files (spacehub.repometa): pipeline tag, library, tags.
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # Crash backoff (spacehub_runner.backoff): when the pending automatic restart is due, and the last crash.
    restart_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    crashed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.name}"


class SpaceVariable(Base):
    """A variable (visible) or secret (write-only) of a space; both reach the app as env vars at run time.

    A secret's value is stored sealed (spacehub.crypto): the database alone never reveals it.
    """

    __tablename__ = "space_variables"
    __table_args__ = (UniqueConstraint("space_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # a worker has the job (the supervisor fails it when the job is gone)
    SUCCEEDED = "succeeded"  # an artifact exists; starting it is a Deployment's business
    FAILED = "failed"
    SUPERSEDED = "superseded"
    ACTIVE = nonmember(("queued", "running"))


class DeployOutcome(StrEnum):
    STARTING = "starting"
    SERVING = "serving"  # ready and routed
    FAILED = "failed"  # did not become ready (or died half-way: the reconciler says so)
    SUPERSEDED = "superseded"  # a newer revision, a stop or a pause won before it was ready
    RETIRED = "retired"  # served, then replaced or stopped


class JobOutcome(StrEnum):
    """What an RQ job of the worker ended with (its return value)."""

    GONE = "gone"
    SUPERSEDED = "superseded"
    NO_DISK = "no-disk"
    NO_APP_FILE = "no-app-file"
    CONFIG_ERROR = "config-error"
    BUILD_ERROR = "build-error"
    BUILT = "built"  # the artifact exists and a deploy is queued
    RUNNING = "running"
    RUNTIME_ERROR = "runtime-error"
    WAITING_FOR_GPU = "waiting-for-gpu"
    REBUILDING = "rebuilding"
    NOT_WANTED = "not-wanted"
    ALREADY_RUNNING = "already-running"
    STOPPED = "stopped"
    DELETED = "deleted"


def _enum_column(enum: type[StrEnum], length: int) -> SAEnum:
    # Stored as the plain value in a VARCHAR (no native enum, no CHECK): adding a value needs no migration.
    return SAEnum(enum, native_enum=False, create_constraint=False, length=length,
                  values_callable=lambda members: [m.value for m in members])


class Build(Base):
    """One build per (space, commit): RQ does not deduplicate, this constraint does."""

    __tablename__ = "builds"
    __table_args__ = (UniqueConstraint("space_id", "sha"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(40))
    status: Mapped[BuildStatus] = mapped_column(_enum_column(BuildStatus, 20), default=BuildStatus.QUEUED)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The process running the build job (host:pid:start, spacehub_runner.liveness) and how often one started it:
    # the reconciler fails a build whose process is gone, or queues it again once.
    runner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    artifact: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class GpuAllocation(Base):
    """One space's hold on one slot of one GPU device (`SPACEHUB_GPU_SHARE` slots per device).

    The unique (device, slot) pair is what keeps two spaces off one card, whichever worker allocates. A `lease`
    groups the devices of one start of one space, so a redeploy can hold its new devices beside the old ones.
    """

    __tablename__ = "gpu_allocations"
    __table_args__ = (UniqueConstraint("device", "slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    lease: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RetiredApp(Base):
    """An old revision's app after a redeploy: it finishes its open requests (or the drain timeout passes),
    then the supervisor stops it. Kept in SQL so that no crash or restart ever forgets a running app.

    No foreign key: a space deleted meanwhile still has its old app stopped.
    """

    __tablename__ = "retired_apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(Integer, index=True)
    handle: Mapped[dict[str, Any]] = mapped_column(JSON)
    retired_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LfsGrant(Base):
    """A user proved they hold an LFS object (they uploaded its bytes and the sha256 matched): only then may
    their commits name it. Objects are stored once; grants say who may use them."""

    __tablename__ = "lfs_grants"
    __table_args__ = (UniqueConstraint("oid", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    oid: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Deployment(Base):
    """One start of one revision of a space: what was started (artifact, handle), when it became ready, when the
    app it replaced, or it itself, was drained, and how it ended. A build ends at its artifact; this is the rest."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"), nullable=True)
    revision: Mapped[str] = mapped_column(String(40))
    artifact: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    runner: Mapped[str | None] = mapped_column(String(200), nullable=True)  # host:pid:start of the deploying job
    outcome: Mapped[DeployOutcome] = mapped_column(_enum_column(DeployOutcome, 20), default=DeployOutcome.STARTING)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    drained_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
