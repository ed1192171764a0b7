"""The provisioner: worker threads taking jobs from the store's queue and carrying them out on hosts
and routers. ``ivfarm provisioner`` runs one as its own process; ``ivfarm ec2 serve`` embeds one.

Each job is claimed (``ivfarm.store.jobs.claim``), run, and finished; a heartbeat thread renews the
claims while they run, so a provisioner that died has its jobs taken over once that lapses. The
work itself is compare-and-set: a job that finds its instance changed meanwhile gives way.
"""
from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable

import psycopg

from ivfarm.errors import InvalidState, TransitionLost
from ivfarm.services.compute import image_capture, instance_attributes, instances, migration, provisioning, volume_work
from ivfarm.services.compute.volume_records import JOB_KINDS as VOLUME_JOBS
from ivfarm.services.jobs import metrics
from ivfarm.services.network.routers import sync_router
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store import jobs
from ivfarm.store.jobs import Claimed, Limits

log = logging.getLogger(__name__)
LISTEN_TICK_S = 0.5


def run_job(cloud: CloudContext, job: Claimed) -> None:
    """Carry out one job (raises what it failed with)."""
    instance_id = job.instance_id or ""
    if job.kind == "provision":
        provisioning.provision(cloud, instance_id)
    elif job.kind == "start":
        provisioning.finish_start(cloud, instance_id)
    elif job.kind == "reboot":
        instances.finish_reboot(cloud, instance_id)
    elif job.kind == "stop":
        instances.stop(cloud, instance_id, force=bool(job.payload.get("force")))
    elif job.kind == "terminate":
        # A provisioning that finished after the instance was marked may have set it running.
        if provisioning.begin_terminate(cloud, instance_id) != "terminated":
            farms = provisioning.teardown(cloud, instance_id, sync=False)
            with cloud.store.write() as session:
                for farm_id in farms:  # one router sync per farm for the whole batch
                    jobs.enqueue(session, jobs.ROUTER_SYNC, farm_id=farm_id)
    elif job.kind == instance_attributes.MIGRATE:  # a resized instance its host has no room for
        migration.migrate(cloud, instance_id, to=job.payload.get("to"))
    elif job.kind == image_capture.KIND:
        image_capture.create_image(cloud, str(job.payload["image"]), instance_id, bool(job.payload.get("restart")))
    elif job.kind in VOLUME_JOBS:
        volume_work.run(cloud, job.kind, job.payload)
    elif job.kind == jobs.ROUTER_SYNC and job.farm_id is not None:
        sync_router(cloud, job.farm_id)
    else:
        raise ValueError(f"unknown job kind {job.kind}")


class Provisioner:
    """``workers`` threads taking jobs until ``stop``; ``name`` is the worker recorded on claims."""

    def __init__(self, cloud: CloudContext, workers: int, name: str | None = None) -> None:
        self.cloud = cloud
        self.name = name or journal.me()
        self.workers = max(1, workers)
        self.limits = Limits(int(cloud.config.get("provisioner.per_host")), int(cloud.config.get("provisioner.per_farm")))
        self.poll_s = float(cloud.config.get("provisioner.poll_s"))
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []

    def run_one(self) -> bool:
        """Claim and run one job; False when none could be claimed."""
        job = jobs.claim(self.cloud.store, self.name, self.limits, journal.lapse(self.cloud))
        if job is None:
            return False
        error, outcome, began = "", "done", time.monotonic()
        try:
            run_job(self.cloud, job)
        except (TransitionLost, InvalidState) as lost:  # another request won the race; its state is kept
            log.info("job %d (%s of %s) gave way: %s", job.id, job.kind, job.instance_id, lost)
            outcome = "gave-way"
        except Exception as exc:  # noqa: BLE001 - the job is failed with the detail tenants never see
            log.exception("job %d (%s of %s, request %s) failed", job.id, job.kind, job.instance_id,
                          job.payload.get("request", ""))
            error, outcome = str(exc) or type(exc).__name__, "failed"
        metrics.observe_job(job.kind, outcome, time.monotonic() - began)
        if not jobs.finish(self.cloud.store, job.id, self.name, error):
            log.warning("job %d was taken over by another provisioner before it finished here", job.id)
        return True

    def run_until(self, done: Callable[[], bool]) -> None:
        """Run jobs in this thread until ``done()`` (waiting ``poll_s`` when there are none)."""
        while not done():
            if not self.run_one():
                self._stop.wait(self.poll_s)

    def start(self) -> None:
        """Start the worker threads, the heartbeat and (PostgreSQL) the wake-up listener."""
        targets: list[Callable[[], None]] = [self._work] * self.workers + [self._heartbeat]
        if not self.cloud.store.is_sqlite:
            targets.append(self._listen)
        for target in targets:
            thread = threading.Thread(target=target, name="ivfarm-provisioner", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Finish the jobs running, take no more (queued ones wait for the next provisioner)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_one()
            except Exception:  # noqa: BLE001 - the store is down: the job stays claimed until its heartbeat lapses
                log.exception("taking or finishing a job failed; trying again in %ss", self.poll_s)
                busy = False
            if not busy:
                with self._wake:
                    self._wake.wait(self.poll_s)

    def _heartbeat(self) -> None:
        interval = float(self.cloud.config.get("journal.heartbeat_s"))
        while not self._stop.wait(interval):
            try:
                jobs.renew(self.cloud.store, self.name)
            except Exception:  # noqa: BLE001 - the store may be back at the next beat
                log.exception("renewing job heartbeats failed")

    def _listen(self) -> None:
        """Wake the workers on every NOTIFY of an enqueue (polling stays the fallback; a lost
        connection, e.g. a PostgreSQL restart, is opened again)."""
        url = self.cloud.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {jobs.CHANNEL}")
                    while not self._stop.is_set():
                        if select.select([conn.fileno()], [], [], LISTEN_TICK_S)[0]:  # short: stop() is seen soon
                            if list(conn.notifies(timeout=0)):
                                with self._wake:
                                    self._wake.notify_all()
            except psycopg.Error as exc:
                log.warning("LISTEN for jobs failed (%s); polling every %ss meanwhile", exc, self.poll_s)
                self._stop.wait(self.poll_s)
