"""reconcile and quota enforce on 100 farms with 5,000 instances on libvirt test-driver hosts.

Setup (not timed): 50 fake hypervisors, 100 farms of 50 m1.small instances each, all provisioned.
Timed: one full `reconcile` pass and one `quota enforce --policy report` pass. Prints JSON last.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivfarm.cloud import Cloud
from ivfarm.services.jobs import enforcement, reconcile
from tests.support.scale_site import scale_site

HOSTS, FARMS, PER_FARM = 50, 100, 50


def build(workdir: Path) -> Cloud:
    return scale_site(workdir, HOSTS, FARMS, PER_FARM, {"network": {
        "farm_pool": "10.0.0.0/8", "public": {"range": ["198.51.100.2", "198.51.100.254"], "cidr": "198.51.100.0/24"}}})


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ivfarm-bench-reconcile-"))
    try:
        started = time.perf_counter()
        cloud = build(workdir)
        print(f"setup: {HOSTS} hosts, {FARMS} farms, {FARMS * PER_FARM} instances in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = reconcile.reconcile(cloud)
        reconcile_s = time.perf_counter() - started
        assert not report.findings and not report.errors, report.lines()[:5]
        started = time.perf_counter()
        result = enforcement.enforce(cloud, "report")
        enforce_s = time.perf_counter() - started
        assert result.exit_code == 0 and len(result.farms) == FARMS
        print(f"reconcile {reconcile_s:.2f} s, enforce {enforce_s:.2f} s")
        print(json.dumps({"farms": FARMS, "instances": FARMS * PER_FARM, "reconcile_s": round(reconcile_s, 3),
                          "enforce_s": round(enforce_s, 3)}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
