"""DescribeInstances throughput of ``ivfarm ec2 serve --workers 2`` against ``--workers 1``, and
against moto's server, in one run on loopback.

The farm holds ``bench.ec2_api.INSTANCES`` instances (moto gets as many); client processes (not
threads, so the client's own interpreter is not the limit) each use a keep-alive connection
and send signed DescribeInstances of the whole farm (MaxResults=1000) for ``--seconds``,
reconnecting every ``RECONNECT`` requests. The same ivfarm site is served with one worker, then
with two. A keep-alive connection stays with the worker that accepted it, and a burst of new
connections may all land on one worker, so clients that kept theirs for good would measure how
the kernel spread them rather than the workers. The last line printed is one JSON
object: requests per second of each server, ``workers_ratio`` (two workers over one; > 1 means
the second process helps) and the ratios to moto (> 1 means ivfarm is faster).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ec2_api import INSTANCES, clean_up, fill, ivfarm_site, ok, print_figures, start_moto, wait_provisioned
from tests.support.localsite import QueryClient

RECONNECT = 5  # requests per connection, as a client pool recycles them
DESCRIBE = {"Action": "DescribeInstances", "MaxResults": str(INSTANCES)}
Endpoint = tuple[str, str, str, str]  # URL, access key, secret key, region


def _client(endpoint: Endpoint) -> QueryClient:
    return QueryClient(*endpoint)


def _describe_for(endpoint: Endpoint, seconds: float) -> int:
    """In a client process: DescribeInstances answered in ``seconds``."""
    client = _client(endpoint)
    ok(client, DESCRIBE)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        ok(client, DESCRIBE)
        done += 1
        if done % RECONNECT == 0:
            client.close()  # the next call connects again, to whichever worker accepts first
    client.close()
    return done


def throughput(endpoint: Endpoint, clients: int, seconds: float) -> float:
    """DescribeInstances per second with ``clients`` client processes."""
    with ProcessPoolExecutor(clients) as pool:
        counts = list(pool.map(_describe_for, [endpoint] * clients, [seconds] * clients))
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per server")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ivfarm-bench-"))
    moto_process = None
    site = None
    try:
        site, (ami, keys) = ivfarm_site(root)
        moto_process, moto_url = start_moto(root / "moto.log")
        moto: Endpoint = (moto_url, "AKIAMOTOBENCH0000000", "m" * 40, "us-east-1")
        moto_ami = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", ok(  # type: ignore[union-attr]
            _client(moto), {"Action": "DescribeImages", "Owner.1": "amazon"})).group(1).decode()
        fill(_client(moto), {"Action": "RunInstances", "ImageId": moto_ami, "InstanceType": "m1.small"}, 0)
        figures: dict[str, float] = {"moto_per_s": throughput(moto, args.clients, args.seconds)}
        print(f"moto: {figures['moto_per_s']:.1f} DescribeInstances/s", flush=True)
        for workers in (1, 2):
            endpoint: Endpoint = (site.start(args=("--workers", str(workers))), keys.access_key, keys.secret_key,
                                  site.region)
            if workers == 1:
                client = _client(endpoint)
                fill(client, {"Action": "RunInstances", "ImageId": ami, "InstanceType": "m1.tiny"}, 0)
                wait_provisioned(client)
                client.close()
            figures[f"ivfarm_w{workers}_per_s"] = throughput(endpoint, args.clients, args.seconds)
            print(f"ivfarm --workers {workers}: {figures[f'ivfarm_w{workers}_per_s']:.1f} DescribeInstances/s",
                  flush=True)
            site.stop()
        result = {
            "workers_ratio": figures["ivfarm_w2_per_s"] / figures["ivfarm_w1_per_s"],
            "w1_vs_moto": figures["ivfarm_w1_per_s"] / figures["moto_per_s"],
            "w2_vs_moto": figures["ivfarm_w2_per_s"] / figures["moto_per_s"],
            **figures, "instances": INSTANCES, "clients": args.clients, "seconds": args.seconds,
            "cpus": os.cpu_count(),
        }
        print_figures(result)
    finally:
        clean_up(moto_process, site, root)


if __name__ == "__main__":
    main()
