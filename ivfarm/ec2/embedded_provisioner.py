"""The provisioner ``ivfarm ec2 serve`` embeds: one process of its own beside gunicorn's workers.

Started by the master before it forks its workers (a fresh interpreter, so it inherits no
threads or database connections), and stopped after them: it finishes the jobs it is running,
queued ones stay in the store. Killing the server's process group kills it too.
"""
from __future__ import annotations

import logging
import logging.config
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

from ivfarm.cloud import Cloud
from ivfarm.config import Config
from ivfarm.ec2.logs import logging_config
from ivfarm.services.jobs.provisioner import Provisioner

log = logging.getLogger("ivfarm.ec2.server")


def _run(config: Config, log_format: str) -> None:
    logging.config.dictConfig(logging_config(log_format))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for ignored in (signal.SIGINT, signal.SIGHUP):  # the master decides when this process stops
        signal.signal(ignored, signal.SIG_IGN)
    cloud = Cloud(config)
    worker = Provisioner(cloud, int(cloud.config.get("ec2.provision_workers")))
    worker.start()
    log.info("embedded provisioner %s taking jobs (%d at once)", worker.name, worker.workers)
    stop.wait()
    worker.stop()
    cloud.store.dispose()


def start(config: Config, log_format: str) -> BaseProcess:
    """The provisioner process, running."""
    process = multiprocessing.get_context("spawn").Process(
        target=_run, args=(config, log_format), name="ivfarm-provisioner")
    process.start()
    return process


def stop(process: BaseProcess, timeout_s: float) -> None:
    """SIGTERM, then wait up to ``timeout_s`` for its running jobs before killing it."""
    if process.is_alive():
        process.terminate()
    process.join(timeout_s)
    if process.is_alive():
        log.warning("embedded provisioner still busy after %.0f s: killed (reconcile repairs its jobs)", timeout_s)
        process.kill()
        process.join()
