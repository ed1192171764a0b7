"""Launching through the queue, against moto's server in the same run (test-driver hosts, loopback).

* 1,000 m1.tiny instances as 10 RunInstances of 100, on each server: the API time of those calls
  (``run_api_ratio``: ivfarm's over moto's, target at most 0.1) and, for ivfarm, the time from the
  first call until all 1,000 are ``running`` (target at most 3 s), the embedded provisioner doing
  the work meanwhile;
* DescribeInstances of the 1,000 while they provision: p50 against moto's (target at most 0.1x),
  and ivfarm's p50 once idle;
* ``--clients`` concurrent boto3 clients (default 50, in ``--client-processes`` processes) mixing
  DescribeInstances of their own instance, RunInstances of one and TerminateInstances for
  ``--seconds`` (the issue's figure is 60 s; shorter for a quick run): errors and latency
  percentiles (target: none, p99 under 250 ms). Clients, server and provisioner share the machine.

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ec2_api import clean_up, ivfarm_site, ok, print_figures, start_moto
from tests.support.localsite import QueryClient

BATCHES, PER_BATCH = 10, 100
DESCRIBE_ALL = {"Action": "DescribeInstances", "MaxResults": "1000"}
PENDING = {"Action": "DescribeInstances", "Filter.1.Name": "instance-state-name", "Filter.1.Value.1": "pending",
           "MaxResults": "1000"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def launch_batches(client: QueryClient, run: dict[str, str]) -> tuple[float, float]:
    """10 RunInstances of 100: (API seconds in all, perf_counter at the first call)."""
    first = time.perf_counter()
    spent = 0.0
    for _ in range(BATCHES):
        started = time.perf_counter()
        ok(client, {**run, "MinCount": str(PER_BATCH), "MaxCount": str(PER_BATCH)})
        spent += time.perf_counter() - started
    return spent, first


def describe_while(client: QueryClient, until: threading.Event, samples: list[float]) -> None:
    """DescribeInstances of the whole farm, timed, until ``until`` is set."""
    while not until.is_set():
        started = time.perf_counter()
        ok(client, DESCRIBE_ALL)
        samples.append((time.perf_counter() - started) * 1000)


def describe_p50(client: QueryClient, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        ok(client, DESCRIBE_ALL)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def ivfarm_launch(make_client: Any, run: dict[str, str], samples: int) -> dict[str, float]:
    """The 1,000 launched on ivfarm: API time, time until all run, Describe p50 while provisioning and idle."""
    client, watcher = make_client(), make_client()
    busy: list[float] = []
    done = threading.Event()
    api_s, first = launch_batches(client, run)
    sampler = threading.Thread(target=describe_while, args=(watcher, done, busy))
    sampler.start()
    while b"<instanceId>" in ok(client, PENDING):
        time.sleep(0.05)
    all_running_s = time.perf_counter() - first
    done.set()
    sampler.join()
    idle = describe_p50(client, samples)
    client.close()
    watcher.close()
    return {"ivfarm_run_api_s": api_s, "ivfarm_all_running_s": all_running_s,
            "ivfarm_describe_busy_p50_ms": statistics.median(busy) if busy else float("nan"),
            "ivfarm_describe_busy_samples": float(len(busy)), "ivfarm_describe_idle_p50_ms": idle}


def _client_threads(endpoint: str, keys: tuple[str, str], region: str, ami: str, threads: int,
                    stop_at: float) -> tuple[list[float], list[str]]:
    """In a client process: ``threads`` boto3 clients looping Run 1 / Describe it / Terminate it
    until ``stop_at`` (a ``time.time()``); their latencies in ms and their errors."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        ec2 = boto3.session.Session().client(
            "ec2", endpoint_url=endpoint, region_name=region, aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
            config=BotoConfig(retries={"max_attempts": 1}, read_timeout=60))
        mine: list[float] = []

        def timed(call: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            answer = call(**kwargs)
            mine.append((time.perf_counter() - started) * 1000)
            return answer

        try:
            while time.time() < stop_at:
                made = timed(ec2.run_instances, ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1)
                instance_id = made["Instances"][0]["InstanceId"]
                timed(ec2.describe_instances, InstanceIds=[instance_id])
                timed(ec2.terminate_instances, InstanceIds=[instance_id])
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, errors


def mixed_clients(endpoint: str, keys: Any, region: str, ami: str, clients: int, seconds: float,
                  processes: int) -> dict[str, float]:
    """``clients`` boto3 clients spread over ``processes`` client processes (so the clients' own
    interpreter is not what is measured), each looping Run / Describe / Terminate for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.time() + 5 + seconds  # the processes start meanwhile
    with ProcessPoolExecutor(processes) as pool:
        shares = [clients // processes + (1 if n < clients % processes else 0) for n in range(processes)]
        futures = [pool.submit(_client_threads, endpoint, (keys.access_key, keys.secret_key), region, ami, share,
                               stop_at) for share in shares if share]
        for future in futures:
            got, failed = future.result()
            latencies.extend(got)
            errors.extend(failed)
    if errors:
        print(f"mixed clients: {len(errors)} errors, first: {errors[0]}", flush=True)
    return {"mixed_clients": float(clients), "mixed_client_processes": float(processes), "mixed_seconds": seconds,
            "mixed_calls": float(len(latencies)), "mixed_errors": float(len(errors)),
            "mixed_calls_per_s": len(latencies) / seconds, "mixed_p50_ms": percentile(latencies, 0.5),
            "mixed_p99_ms": percentile(latencies, 0.99), "mixed_max_ms": max(latencies, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="idle DescribeInstances timings per server")
    parser.add_argument("--clients", type=int, default=50, help="concurrent boto3 clients of the mixed run")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the mixed run (the issue's: 60)")
    parser.add_argument("--client-processes", type=int, default=5, help="processes the mixed run's clients run in")
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

        moto = QueryClient(moto_endpoint, "AKIAMOTOBENCH0000000", "m" * 40, "us-east-1")
        moto_ami = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", ok(
            moto, {"Action": "DescribeImages", "Owner.1": "amazon"})).group(1).decode()  # type: ignore[union-attr]
        figures: dict[str, Any] = {}
        figures["moto_run_api_s"], _ = launch_batches(moto, {"Action": "RunInstances", "ImageId": moto_ami,
                                                             "InstanceType": "m1.small"})
        figures["moto_describe_p50_ms"] = describe_p50(moto, args.samples)
        moto.close()
        figures.update(ivfarm_launch(ivfarm_client, {"Action": "RunInstances", "ImageId": ami,
                                                     "InstanceType": "m1.tiny"}, args.samples))
        print(f"RunInstances 10x100: ivfarm {figures['ivfarm_run_api_s']:.2f} s, moto {figures['moto_run_api_s']:.2f} s;"
              f" all running after {figures['ivfarm_all_running_s']:.2f} s", flush=True)
        figures.update(mixed_clients(endpoint, keys, site.region, ami, args.clients, args.seconds,
                                     args.client_processes))
        result = {
            "run_api_ratio": figures["ivfarm_run_api_s"] / figures["moto_run_api_s"],
            "describe_busy_p50_ratio": figures["ivfarm_describe_busy_p50_ms"] / figures["moto_describe_p50_ms"],
            "describe_idle_p50_ratio": figures["ivfarm_describe_idle_p50_ms"] / figures["moto_describe_p50_ms"],
            **figures,
            "targets_met": {
                "run_api_ratio<=0.1": figures["ivfarm_run_api_s"] <= 0.1 * figures["moto_run_api_s"],
                "all_running<=3s": figures["ivfarm_all_running_s"] <= 3.0,
                "describe_busy_p50_ratio<=0.1":
                    figures["ivfarm_describe_busy_p50_ms"] <= 0.1 * figures["moto_describe_p50_ms"],
                "mixed_no_error_p99<250ms": figures["mixed_errors"] == 0 and figures["mixed_p99_ms"] < 250,
            },
            "instances": BATCHES * PER_BATCH,
            "cpus": os.cpu_count(),
        }
        print_figures(result)
    finally:
        clean_up(moto_process, site, root)


if __name__ == "__main__":
    main()
