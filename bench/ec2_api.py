"""EC2 API figures: ivfarm's server and moto's side by side on loopback, in one run.

Both servers run as their own processes and get the same signed Query requests from the same
raw client (keep-alive connection, XML not parsed), so client costs are equal:

* RunInstances throughput: sequential single-instance requests per second (and with 8 concurrent
  clients). ivfarm answers with ``pending`` instances at once; its provisioning pool builds them on
  libvirt's test driver in the background, in the same server process, while it is measured.
* DescribeInstances latency (p50, p95) of the whole answer with 1,000 instances in the farm, after
  ivfarm's pool has built them all.

Every instance is in two security groups (``default`` and one more).

The last line printed is one JSON object with the figures and the ratios to moto (latency ratio
< 1 and throughput ratio > 1 mean ivfarm is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.localsite import LocalSite, QueryClient
from tests.support.polling import accepts, poll_until

INSTANCES = 1000
BATCH = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``moto_server`` on a free loopback port."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        poll_until(lambda: accepts(port), 30, 0.1, "moto server did not start", error=RuntimeError)
    except RuntimeError:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{port}/"


def ok(client: QueryClient, params: dict[str, str]) -> bytes:
    status, body = client.call(params)
    if status != 200:
        raise RuntimeError(f"{params['Action']} answered {status}: {body[:300]!r}")
    return body


def run_rate(make_client: Callable[[], QueryClient], run: dict[str, str], count: int, threads: int) -> float:
    """RunInstances per second with ``threads`` clients sending ``count`` requests in all."""
    clients = [make_client() for _ in range(threads)]
    per_thread = count // threads
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(client: QueryClient) -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                ok(client, run)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(c,)) for c in clients]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    if errors:
        raise errors[0]
    return per_thread * threads / elapsed


def fill(client: QueryClient, run: dict[str, str], have: int) -> None:
    """RunInstances in batches of 50 until the farm has ``INSTANCES``."""
    while have < INSTANCES:
        batch = min(BATCH, INSTANCES - have)
        ok(client, {**run, "MinCount": str(batch), "MaxCount": str(batch)})
        have += batch


def latencies(client: QueryClient, samples: int) -> tuple[float, float, int]:
    """p50 and p95 of DescribeInstances in ms, and how many instances the answer listed.

    MaxResults=1000 asks both for every instance in one answer (moto otherwise pages by 100).
    """
    describe = {"Action": "DescribeInstances", "MaxResults": str(INSTANCES)}
    ok(client, describe)
    times = []
    body = b""
    for _ in range(samples):
        started = time.perf_counter()
        body = ok(client, describe)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], body.count(b"<instanceId>")


def wait_provisioned(client: QueryClient, timeout: float = 600) -> None:
    """Until ivfarm's pool has built every instance."""
    pending = {"Action": "DescribeInstances", "Filter.1.Name": "instance-state-name", "Filter.1.Value.1": "pending"}
    poll_until(lambda: b"<instanceId>" not in ok(client, pending), timeout, 1, "provisioning did not finish",
               error=RuntimeError)


def ivfarm_site(root: Path) -> tuple[LocalSite, Any]:
    site = LocalSite(root / "ivfarm")
    for n in range(4):
        site.add_host(f"w{n}", cpus=4096, memory_mb=16 * 1024 * 1024, disk_gb=10**6)
    ami = site.add_image("bench")
    keys = site.add_farm("bench", cidr="10.96.0.0/16", instances=10**5, vcpus=10**6, memory_mb=10**9, disk_gb=10**8)
    return site, (ami, keys)


def print_figures(result: dict[str, Any]) -> None:
    """The benchmark's last line: one JSON object, its floats rounded."""
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


def clean_up(moto_process: subprocess.Popen[bytes] | None, site: LocalSite | None, root: Path) -> None:
    """Stop the moto server and the ivfarm site (either may not have started), remove the scratch directory."""
    if moto_process is not None:
        moto_process.terminate()
        moto_process.wait(30)
    if site is not None:
        site.close()
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="sequential RunInstances per server")
    parser.add_argument("--samples", type=int, default=40, help="DescribeInstances timings per server")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ivfarm-bench-"))
    moto_process = None
    site = None
    try:
        site, (ami, keys) = ivfarm_site(root)
        endpoint = site.start()
        moto_process, moto_endpoint = start_moto(root / "moto.log")

        def ivfarm_client() -> QueryClient:
            return QueryClient(endpoint, keys.access_key, keys.secret_key, site.region)  # type: ignore[union-attr]

        def moto_client() -> QueryClient:
            return QueryClient(moto_endpoint, "AKIAMOTOBENCH0000000", "m" * 40, "us-east-1")

        moto_ami = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", ok(
            moto_client(), {"Action": "DescribeImages", "Owner.1": "amazon"})).group(1).decode()  # type: ignore[union-attr]
        groups = {"SecurityGroup.1": "default", "SecurityGroup.2": "bench-peers"}  # every instance in two groups
        runs = {"ivfarm": {"Action": "RunInstances", "ImageId": ami, "InstanceType": "m1.tiny",
                           "MinCount": "1", "MaxCount": "1", **groups},
                "moto": {"Action": "RunInstances", "ImageId": moto_ami, "InstanceType": "m1.small",
                         "MinCount": "1", "MaxCount": "1", **groups}}
        makers = {"ivfarm": ivfarm_client, "moto": moto_client}
        for make in makers.values():
            client = make()
            ok(client, {"Action": "CreateSecurityGroup", "GroupName": "bench-peers", "GroupDescription": "bench"})
            client.close()
        figures: dict[str, Any] = {}
        for name in ("moto", "ivfarm"):
            figures[f"{name}_run_per_s"] = run_rate(makers[name], runs[name], args.runs, 1)
            figures[f"{name}_run_concurrent_per_s"] = run_rate(makers[name], runs[name], args.runs, 8)
            print(f"{name}: RunInstances {figures[f'{name}_run_per_s']:.1f}/s sequential, "
                  f"{figures[f'{name}_run_concurrent_per_s']:.1f}/s with 8 clients", flush=True)
        for name in ("moto", "ivfarm"):
            client = makers[name]()
            fill(client, runs[name], args.runs + (args.runs // 8) * 8)  # what the throughput runs made
            if name == "ivfarm":
                wait_provisioned(client)
            p50, p95, listed = latencies(client, args.samples)
            figures[f"{name}_describe_p50_ms"], figures[f"{name}_describe_p95_ms"] = p50, p95
            print(f"{name}: DescribeInstances of {listed} instances p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
            client.close()
        result = {
            "describe_p50_ratio": figures["ivfarm_describe_p50_ms"] / figures["moto_describe_p50_ms"],
            "describe_p95_ratio": figures["ivfarm_describe_p95_ms"] / figures["moto_describe_p95_ms"],
            "run_throughput_ratio": figures["ivfarm_run_per_s"] / figures["moto_run_per_s"],
            "run_concurrent_throughput_ratio":
                figures["ivfarm_run_concurrent_per_s"] / figures["moto_run_concurrent_per_s"],
            **figures,
            "instances": INSTANCES,
            "cpus": os.cpu_count(),
        }
        print_figures(result)
    finally:
        clean_up(moto_process, site, root)


if __name__ == "__main__":
    main()
