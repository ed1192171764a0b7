"""The ``ivfarm`` command: one click group per module; errors become one line and an exit code."""
from __future__ import annotations

import logging
import os
import sys

import click

from ivfarm import __version__
from ivfarm.cli.accounting import accounting
from ivfarm.cli.config import config
from ivfarm.cli.context import context
from ivfarm.cli.context_obj import AppContext
from ivfarm.cli.ec2 import ec2
from ivfarm.cli.farm import farm
from ivfarm.cli.flavor import flavor
from ivfarm.cli.host import host
from ivfarm.cli.image import image
from ivfarm.cli.init import init
from ivfarm.cli.provisioner import provisioner
from ivfarm.cli.quota import quota
from ivfarm.cli.reconcile import reconcile
from ivfarm.cli.vm import vm
from ivfarm.cli.vrouter import vrouter
from ivfarm.errors import IvfarmError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="IVFARM_CONFIG",
              help="Configuration file [default: $IVFARM_CONFIG, else /etc/ivfarm/ivfarm.yaml].")
@click.option("--debug", is_flag=True, help="Log debug messages and show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="ivfarm")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """ivfarm: virtual farms on libvirt hypervisors.

    A site sysadmin registers hypervisors (service and worker classes), images and flavors,
    then creates virtual farms: sandboxes with their own network, virtual router, elastic IP,
    quotas and EC2 credentials that farm users drive through the EC2 Query API.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if debug:
        os.environ["IVFARM_DEBUG"] = "1"
    ctx.obj = AppContext(config_path)


for command in (init, config, host, flavor, image, farm, vm, vrouter, quota, reconcile, accounting, context, ec2,
                provisioner):
    cli.add_command(command)


def main() -> None:
    """Entry point: run the CLI, turning ivfarm errors into a message and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except IvfarmError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a message
        if os.environ.get("IVFARM_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(70)
