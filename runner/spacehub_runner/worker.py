"""`spacehub worker`: an RQ worker that runs only spacehub's own job functions, JSON-serialised.

Each job runs in a work-horse that RQ forks and puts in a process group of its own; here it also dies with its
worker. A horse that outlived a worker killed with -9 (or a `serve` killed with its whole process group) would
go on building with nobody to enforce its job limit, or to tell RQ how it ended: an orphan. The reconciler finds
its build or start lost instead, and runs it again (`reconcile`).
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

from rq import Worker
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from spacehub import redisconn
from spacehub.queue import ALLOWED_JOBS, BUILDS, OPS
from spacehub.settings import Settings

_PR_SET_PDEATHSIG = 1


class SpacehubWorker(Worker):
    """RQ imports job functions by name: refuse any name that is not a spacehub job before importing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._worker_pid = os.getpid()

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """In the forked horse, first: be killed when the worker dies (Linux's PR_SET_PDEATHSIG); a worker that
        died before that was set is seen as a changed parent."""
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self._worker_pid:
            os._exit(1)
        super().main_work_horse(job, queue)

    def execute_job(self, job: Job, queue: Queue) -> None:
        # Checked in the parent, before any fork or import: a refused name is never imported at all.
        if job.func_name not in ALLOWED_JOBS:
            self.log.warning("refusing job %s: %r is not a spacehub job", job.id, job.func_name)
            self.handle_job_failure(job, queue, exc_string=f"refused: {job.func_name!r} is not a spacehub job")
            self.set_state(WorkerStatus.IDLE)
            return
        super().execute_job(job, queue)

    def subscribe(self) -> None:
        """No command channel: spacehub sends its workers no RQ commands (jobs end by SQL: a superseded build
        sees it in its log, a lost one is found by the reconciler). RQ's pubsub thread waits up to 60 s for a
        message, and closing it at a warm shutdown waited for that wait: an idle worker took until serve's grace
        ran out (then a kill) to stop."""


def run_worker(settings: Settings, queues: list[str] | None = None, burst: bool = False) -> None:
    # Imported here, once, before any job: RQ forks a work-horse per job, which would otherwise import the job
    # module (and all it pulls in, about a second on a small machine) on every job, a start that wakes a
    # sleeping space included.
    import spacehub_runner.jobs  # noqa: F401

    conn = redisconn.connect(settings)
    names = queues or [OPS, BUILDS]
    worker = SpacehubWorker([Queue(n, connection=conn, serializer=JSONSerializer) for n in names],
                            connection=conn, serializer=JSONSerializer)
    worker.work(burst=burst, with_scheduler=False)
