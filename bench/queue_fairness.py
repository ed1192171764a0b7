"""Queue fairness: how long farm B's single launch takes to be running while farm A has 200
launches queued before it, against B alone, on fake (libvirt test driver) hosts.

Each run builds a fresh site (SQLite), queues the launches, then starts one provisioner and times
B's instance from the provisioner's start until it is running. The last line printed is one JSON
object; ``ratio`` near 1 means A's backlog does not hold B back.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivfarm.services.compute import instances
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store import jobs
from tests.support.localsite import LocalSite
from tests.support.polling import poll_until


def _launch(site: LocalSite, image: str, farm_id: int, count: int) -> list[str]:
    return [i.id for i in instances.launch(site.cloud, instances.LaunchRequest(
        image=image, flavor="m1.tiny", farm_id=farm_id, count=count))]


def _state(site: LocalSite, instance_id: str) -> str:
    with site.cloud.store.read() as session:
        return instances.get_instance(session, instance_id).state


def time_single_launch(root: Path, backlog: int, workers: int) -> float:
    """Seconds from the provisioner's start until farm B's one launch runs, behind ``backlog`` of farm A's."""
    site = LocalSite(root)
    try:
        site.add_host("w1", cpus=4096, memory_mb=1 << 22)
        image = site.add_image("base")
        a = site.add_farm("farm-a", instances=backlog + 1, vcpus=backlog + 1, memory_mb=(backlog + 1) * 512)
        b = site.add_farm("farm-b", cidr="10.99.0.0/24")
        if backlog:
            _launch(site, image, a.farm_id, backlog)
        [single] = _launch(site, image, b.farm_id, 1)
        provisioner = Provisioner(site.cloud, workers)
        started = time.monotonic()
        provisioner.start()
        try:
            poll_until(lambda: _state(site, single) == "running", 600, 0.005, "farm B's launch never ran")
            elapsed = time.monotonic() - started
            poll_until(lambda: jobs.outstanding(site.cloud.store) == 0, 600, 0.05, "the backlog never drained")
        finally:
            provisioner.stop()
        return elapsed
    finally:
        site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ivfarm-fairness-") as tmp:
        alone = time_single_launch(Path(tmp) / "alone", 0, args.workers)
        contended = time_single_launch(Path(tmp) / "contended", args.backlog, args.workers)
    print(json.dumps({"bench": "queue_fairness", "backlog": args.backlog, "workers": args.workers,
                      "b_alone_s": round(alone, 4), "b_behind_backlog_s": round(contended, 4),
                      "ratio": round(contended / alone, 2)}))


if __name__ == "__main__":
    main()
