"""``ivfarm provisioner``: a worker process carrying out queued jobs on hosts and routers."""
from __future__ import annotations

import logging
import signal
import sys
import threading

import click
from prometheus_client import REGISTRY

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cloud import Cloud
from ivfarm.ec2.serve_options import parse_listen
from ivfarm.services.jobs import metrics
from ivfarm.services.jobs.provisioner import Provisioner


@click.command()
@click.option("--workers", type=click.IntRange(1, 256), help="Jobs run at once [default: ec2.provision_workers].")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve Prometheus /metrics there: job durations, queue depth and age, instances, host capacity.")
@pass_cloud
def provisioner(cloud: Cloud, workers: int | None, metrics_listen: str | None) -> None:
    """Take jobs from the store until SIGTERM; running jobs finish, queued ones wait for the next provisioner."""
    listen = parse_listen(metrics_listen) if metrics_listen else None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("ivfarm.services.jobs.provisioner")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = Provisioner(cloud, workers or int(cloud.config.get("ec2.provision_workers")))
    if listen is not None:
        port = metrics.serve(cloud, listen[0], listen[1], REGISTRY)
        logger.info("metrics on http://%s:%d/metrics", listen[0], port)
    worker.start()
    logger.info("provisioner %s taking jobs (%d at once)", worker.name, worker.workers)
    stop.wait()
    worker.stop()
