"""``ivfarm ec2``: the EC2 Query API endpoint farm users point boto3, awscli and euca2ools at."""
from __future__ import annotations

import logging
import sys

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cloud import Cloud
from ivfarm.ec2.server import serve as run_server


@click.group()
def ec2() -> None:
    """The EC2-compatible API of the farms."""


@ec2.command("serve")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on [default: ec2.listen of the config, 127.0.0.1:8773].")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True, help="Request threads.")
@click.option("--no-provisioner", is_flag=True, help="Only queue jobs; 'ivfarm provisioner' processes carry them out.")
@pass_cloud
def serve(cloud: Cloud, listen: str | None, threads: int, no_provisioner: bool) -> None:
    """Serve the EC2 Query API until SIGTERM (one log line per request on stderr), with an embedded provisioner."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("ivfarm.ec2.access", "ivfarm.ec2.server"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
    run_server(cloud, listen or str(cloud.config.get("ec2.listen")), threads, embedded=not no_provisioner)
