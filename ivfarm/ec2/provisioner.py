"""The bounded pool that does the slow, host-side half of RunInstances, StopInstances and
TerminateInstances, so the API answers at once with pending / stopping / shutting-down (as EC2).

Jobs of one instance run in order: a termination waits for (or cancels) the provisioning of the
same instance, so a VM terminated while it is being built is torn down once it exists.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from ivfarm.cloud import Cloud
from ivfarm.errors import TransitionLost
from ivfarm.services.compute import instances, provisioning

log = logging.getLogger(__name__)


class Provisioner:
    """Runs instance jobs on ``workers`` threads; ``shutdown`` finishes running jobs only."""

    def __init__(self, cloud: Cloud, workers: int) -> None:
        self.cloud = cloud
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ivfarm-provision")
        self._jobs: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def _submit(self, instance_id: str, job: Callable[[], None], what: str) -> None:
        def run() -> None:
            try:
                job()
            except TransitionLost as lost:  # another request won the race; its state is kept
                log.info("%s of %s gave way: %s", what, instance_id, lost)
            except Exception:
                log.exception("%s of %s failed", what, instance_id)  # the detail tenants do not see

        with self._lock:
            future = self._pool.submit(run)
            self._jobs[instance_id] = future
        future.add_done_callback(lambda done: self._forget(instance_id, done))

    def _forget(self, instance_id: str, future: Future[None]) -> None:
        with self._lock:
            if self._jobs.get(instance_id) is future:
                del self._jobs[instance_id]

    def _previous(self, instance_id: str) -> Future[None] | None:
        with self._lock:
            return self._jobs.get(instance_id)

    def provision(self, instance_ids: Iterable[str], request_id: str = "") -> None:
        """Build and start pending instances in the background (``request_id`` names them in the log)."""
        what = f"provisioning (request {request_id})" if request_id else "provisioning"
        for instance_id in instance_ids:
            self._submit(instance_id, functools.partial(provisioning.provision, self.cloud, instance_id), what)

    def stop(self, instance_ids: Iterable[str], force: bool) -> None:
        """Shut down instances already marked stopping."""
        for instance_id in instance_ids:
            job = functools.partial(self._stop, instance_id, self._previous(instance_id), force)
            self._submit(instance_id, job, "stop")

    def terminate(self, instance_ids: Iterable[str]) -> None:
        """Tear down instances already marked shutting-down."""
        for instance_id in instance_ids:
            job = functools.partial(self._terminate, instance_id, self._previous(instance_id))
            self._submit(instance_id, job, "termination")

    @staticmethod
    def _after(prior: Future[None] | None) -> None:
        if prior is not None and not prior.cancel():
            prior.exception()  # wait for it; its own wrapper logged any failure

    def _stop(self, instance_id: str, prior: Future[None] | None, force: bool) -> None:
        self._after(prior)
        instances.stop(self.cloud, instance_id, force=force)

    def _terminate(self, instance_id: str, prior: Future[None] | None) -> None:
        self._after(prior)
        # A provisioning that finished after the instance was marked may have set it running.
        if provisioning.begin_terminate(self.cloud, instance_id) != "terminated":
            provisioning.teardown(self.cloud, instance_id)

    def pending_jobs(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._jobs)

    def shutdown(self) -> int:
        """Let running jobs finish, drop queued ones (``reconcile`` picks them up); returns how many were dropped."""
        with self._lock:
            jobs = list(self._jobs.values())
        self._pool.shutdown(wait=True, cancel_futures=True)
        return sum(1 for job in jobs if job.cancelled())
