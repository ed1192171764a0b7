"""Place 10,000 instance requests on 1,000 hosts with ivfarm's scheduler; prints figures as JSON."""
from __future__ import annotations

import json
import random
import time

from ivfarm.services.compute.scheduler import HostCapacity, Request, Scheduler

HOSTS = 1000
REQUESTS = 10000
FLAVORS = [(1, 512, 10), (2, 2048, 30), (4, 8192, 90)]


def main() -> None:
    rng = random.Random(42)
    hosts = [
        HostCapacity(f"h{i:04d}", "worker" if i % 10 else "service", cpus=64, memory_mb=262144, disk_gb=4000)
        for i in range(HOSTS)
    ]
    requests = []
    for _ in range(REQUESTS):
        vcpus, memory, disk = rng.choice(FLAVORS)
        requests.append(Request(vcpus, memory, disk, "worker" if rng.random() < 0.9 else "service"))
    scheduler = Scheduler({"worker": "pack", "service": "stripe"})
    started = time.perf_counter()
    placed = scheduler.place(requests, hosts)
    total = time.perf_counter() - started
    assert len(placed) == REQUESTS
    assert all(h.used_cpus <= h.cpus and h.used_memory_mb <= h.memory_mb for h in hosts)
    print(f"placed {REQUESTS} requests on {HOSTS} hosts in {total:.3f} s "
          f"({sum(1 for h in hosts if h.used_cpus)} hosts used)")
    print(json.dumps({"requests": REQUESTS, "hosts": HOSTS, "total_s": round(total, 4),
                      "placements_per_s": round(REQUESTS / total, 1)}))


if __name__ == "__main__":
    main()
