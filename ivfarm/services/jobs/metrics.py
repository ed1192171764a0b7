"""Prometheus metrics of the queue and the cloud: job durations kept by each provisioner, and gauges
read from the store at scrape time (``StoreCollector``) by any exporter that has one.

The gauges are a handful of grouped counts over indexed columns, so a scrape costs a few
milliseconds whatever the number of instances. An exporter in gunicorn's master gives the store's
connections back after each scrape (``release``): the master must hold none when it forks workers.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ivfarm.services.compute.hosts import capacities
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Instance, Job, utcnow
from ivfarm.store.states import InstanceState

KINDS = ("provision", "start", "reboot", "stop", "terminate", "router-sync")
OUTSTANDING = ("queued", "running")
MIB = 1024 * 1024

JOB_DURATION = Histogram("ivfarm_job_duration_seconds", "Time a provisioner took to carry out a job, by kind and outcome",
                         ["kind", "outcome"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0))


def observe_job(kind: str, outcome: str, seconds: float) -> None:
    """Count one job carried out (``outcome``: done, failed or gave-way)."""
    JOB_DURATION.labels(kind, outcome).observe(seconds)


class StoreCollector(Collector):
    """Queue depth and age, instances by state and host capacity, read from the store per scrape."""

    def __init__(self, cloud: CloudContext, release: bool = False) -> None:
        self.cloud = cloud
        self.release = release

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect(utcnow())
        finally:
            if self.release:
                self.cloud.store.dispose()

    def _collect(self, now: dt.datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily("ivfarm_jobs", "Jobs queued or running, by kind and state", labels=["kind", "state"])
        oldest = GaugeMetricFamily("ivfarm_job_oldest_queued_age_seconds",
                                   "Age of the oldest queued job of each kind (0: none queued)", labels=["kind"])
        states = GaugeMetricFamily("ivfarm_instances", "Instances by state", labels=["state"])
        vcpus = GaugeMetricFamily("ivfarm_host_vcpus", "Schedulable vCPUs of each host (after the allocation "
                                  "ratio) and those its active instances use", labels=["host", "use"])
        memory = GaugeMetricFamily("ivfarm_host_memory_bytes", "Schedulable memory of each host (after the "
                                   "allocation ratio) and what its active instances use", labels=["host", "use"])
        with self.cloud.store.read() as session:
            counts = {(str(k), str(s)): int(n) for k, s, n in session.execute(
                select(Job.kind, Job.state, func.count()).where(Job.state.in_(OUTSTANDING)).group_by(Job.kind, Job.state))}
            first = {str(k): t for k, t in session.execute(
                select(Job.kind, func.min(Job.created_at)).where(Job.state == "queued").group_by(Job.kind))}
            by_state = {str(s): int(n) for s, n in session.execute(
                select(Instance.state, func.count()).group_by(Instance.state))}
            hosts = capacities(self.cloud, session)
        for kind in sorted(set(KINDS) | {k for k, _ in counts}):
            for state in OUTSTANDING:
                depth.add_metric([kind, state], counts.get((kind, state), 0))
            queued_at = first.get(kind)
            oldest.add_metric([kind], max(0.0, (now - queued_at).total_seconds()) if queued_at else 0.0)
        for state in InstanceState:
            states.add_metric([state.value], by_state.get(state.value, 0))
        for host in hosts:
            vcpus.add_metric([host.name, "total"], host.cpus)
            vcpus.add_metric([host.name, "used"], host.used_cpus)
            memory.add_metric([host.name, "total"], host.memory_mb * MIB)
            memory.add_metric([host.name, "used"], host.used_memory_mb * MIB)
        yield from (depth, oldest, states, vcpus, memory)


def serve(cloud: CloudContext, host: str, port: int, registry: CollectorRegistry, release: bool = False) -> int:
    """Serve ``registry`` plus the store's gauges on ``/metrics`` (a daemon thread); returns the port."""
    registry.register(StoreCollector(cloud, release))
    server, _ = start_http_server(port, host, registry)
    return int(server.server_port)
