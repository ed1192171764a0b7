"""``ivfarm ec2``: the EC2 Query API endpoint farm users point boto3, awscli and euca2ools at."""
from __future__ import annotations

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cloud import Cloud
from ivfarm.ec2.serve_options import LOG_FORMATS, resolve
from ivfarm.ec2.server import serve as run_server


@click.group()
def ec2() -> None:
    """The EC2-compatible API of the farms."""


@ec2.command("serve")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on [default: ec2.listen of the config, 127.0.0.1:8773].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="API worker processes (see docs/deployment.md).")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True, help="Request threads per worker.")
@click.option("--keep-alive", "keepalive_s", type=click.IntRange(0, 300), default=5, show_default=True,
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--cert", type=click.Path(dir_okay=False), help="TLS certificate chain (PEM); serves HTTPS with --key.")
@click.option("--key", type=click.Path(dir_okay=False), help="TLS private key (PEM).")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve Prometheus /metrics there (needs PROMETHEUS_MULTIPROC_DIR).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="Log lines on stderr: text, or one JSON object per line.")
@click.option("--no-provisioner", is_flag=True, help="Only queue jobs; 'ivfarm provisioner' processes carry them out.")
@pass_cloud
def serve(cloud: Cloud, listen: str | None, workers: int, threads: int, keepalive_s: int, cert: str | None,
          key: str | None, metrics_listen: str | None, log_format: str, no_provisioner: bool) -> None:
    """Serve the EC2 Query API until SIGTERM, with an embedded provisioner; SIGHUP reloads."""
    options = resolve(listen or str(cloud.config.get("ec2.listen")), workers=workers, threads=threads,
                      keepalive_s=keepalive_s, cert=cert, key=key, metrics_listen=metrics_listen,
                      log_format=log_format, provisioner=not no_provisioner)
    run_server(cloud, options)
