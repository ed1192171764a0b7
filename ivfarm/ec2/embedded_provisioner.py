"""The provisioner ``ivfarm ec2 serve`` embeds: one process of its own beside gunicorn's workers.

gunicorn's master starts it before it forks its workers and stops it after they have stopped: it
finishes the jobs it is running, queued ones stay in the store. It is a fresh interpreter (its
configuration comes on its standard input), so it shares no threads or database connections with
the server; killing the server's process group kills it too.
"""
from __future__ import annotations

import logging
import logging.config
import pickle
import signal
import subprocess
import sys
import threading

from ivfarm.cloud import Cloud
from ivfarm.config import Config
from ivfarm.ec2.logs import logging_config
from ivfarm.services.jobs.provisioner import Provisioner

log = logging.getLogger("ivfarm.ec2.server")


def start(config: Config, log_format: str) -> subprocess.Popen[bytes]:
    """The provisioner process, running."""
    process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(pickle.dumps((config, log_format)))
    process.stdin.close()
    return process


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then wait up to ``timeout_s`` for its running jobs before killing it."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("embedded provisioner still busy after %.0f s: killed (reconcile repairs its jobs)", timeout_s)
        process.kill()
        process.wait()


def run(config: Config, log_format: str) -> None:
    """Take jobs until SIGTERM (SIGINT and SIGHUP are the master's to act on)."""
    logging.config.dictConfig(logging_config(log_format))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    for ignored in (signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    cloud = Cloud(config)
    worker = Provisioner(cloud, int(cloud.config.get("ec2.provision_workers")))
    worker.start()
    log.info("embedded provisioner %s taking jobs (%d at once)", worker.name, worker.workers)
    stopping.wait()
    worker.stop()
    cloud.store.dispose()


if __name__ == "__main__":
    run(*pickle.load(sys.stdin.buffer))  # from this server's own master, never from elsewhere
