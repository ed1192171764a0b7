"""Prometheus metrics of the EC2 API, kept by every worker and served by the master process.

prometheus_client's multiprocess mode: workers write their samples under ``PROMETHEUS_MULTIPROC_DIR``
(which must be set before this module is first imported), and the exporter in the master adds
up the files of every worker, live or gone, so counts survive worker restarts and reloads. The
embedded provisioner writes its job durations there too, and the exporter adds the gauges read
from the store at scrape time (``ivfarm.services.jobs.metrics.StoreCollector``).
"""
from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from ivfarm.services.jobs import metrics as job_metrics
from ivfarm.services.runtime.context import CloudContext

REQUESTS = Counter("ivfarm_ec2_requests", "EC2 API requests answered, by action and HTTP status",
                   ["action", "status"])
LATENCY = Histogram("ivfarm_ec2_request_duration_seconds", "Time to answer an EC2 API request",
                    ["action", "status"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


def observe(action: str, status: int, seconds: float) -> None:
    """Count one answered request (``action`` is ``-`` when it was not a known action)."""
    REQUESTS.labels(action, str(status)).inc()
    LATENCY.labels(action, str(status)).observe(seconds)


def clear(directory: Path) -> None:
    """Remove the sample files of a previous run."""
    for stale in directory.glob("*.db"):
        stale.unlink()


def serve_exporter(host: str, port: int, cloud: CloudContext) -> int:
    """Serve ``/metrics`` of every worker and the store's gauges on a daemon thread; returns the port."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return job_metrics.serve(cloud, host, port, registry, release=True)


def mark_dead(pid: int) -> None:
    """Forget the live-only samples of a worker that exited (its counts stay)."""
    multiprocess.mark_process_dead(pid)
