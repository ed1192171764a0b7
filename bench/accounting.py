"""accounting collect (with libvirt counters) and the APEL export on 1,000 instances of test-driver hosts.

Setup (not timed): 20 fake hypervisors, 20 farms of 50 m1.small instances each, all provisioned.
Timed: 24 hourly `collect` runs (every domain's CPU and NIC counters read), then one
`export --format apel` of the month (1,000 cumulative records from 24,000 samples). Prints JSON last.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivfarm.cloud import Cloud
from ivfarm.services.jobs import accounting, apel
from ivfarm.store.models import Instance
from tests.support.scale_site import scale_site

HOSTS, FARMS, PER_FARM, HOURS = 20, 20, 50, 24
T0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.timezone.utc)


def build(workdir: Path) -> Cloud:
    cloud = scale_site(workdir, HOSTS, FARMS, PER_FARM, {"network": {"farm_pool": "10.0.0.0/8"},
                                                         "accounting": {"apel": {"site_name": "BENCH"}}}, vo="bench")
    with cloud.store.write() as session:
        for instance in session.query(Instance):
            instance.launched_at = T0
    return cloud


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ivfarm-bench-accounting-"))
    try:
        started = time.perf_counter()
        cloud = build(workdir)
        print(f"setup: {HOSTS} hosts, {FARMS * PER_FARM} instances in {time.perf_counter() - started:.1f} s")
        times = []
        for hour in range(1, HOURS + 1):
            started = time.perf_counter()
            result = accounting.collect(cloud, now=T0 + dt.timedelta(hours=hour))
            times.append(time.perf_counter() - started)
            assert result.instances == FARMS * PER_FARM
        started = time.perf_counter()
        exported = apel.export(cloud, "apel", str(workdir / "outgoing"), T0, T0 + dt.timedelta(hours=HOURS))
        export_s = time.perf_counter() - started
        assert exported.records == FARMS * PER_FARM
        print(f"collect {sum(times) / len(times):.2f} s on average (max {max(times):.2f} s), export {export_s:.2f} s")
        print(json.dumps({"instances": FARMS * PER_FARM, "hosts": HOSTS, "samples": HOURS * FARMS * PER_FARM,
                          "collect_mean_s": round(sum(times) / len(times), 3), "collect_max_s": round(max(times), 3),
                          "export_s": round(export_s, 3), "messages": len(exported.messages)}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
