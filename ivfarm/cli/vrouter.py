"""``ivfarm vrouter``: a farm's virtual router (port forwards, elastic IP binding)."""
from __future__ import annotations

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_rows, output_option
from ivfarm.cloud import Cloud
from ivfarm.services.compute.instances import find_instance
from ivfarm.services.farms import elastic_ips
from ivfarm.services.farms.lifecycle import find_farm
from ivfarm.services.network import port_forwards


@click.group()
def vrouter() -> None:
    """The farm's virtual router: port forwards and the elastic IP."""


@vrouter.group()
def forward() -> None:
    """Port forwards from the router's public IP into the farm."""


@forward.command("add")
@click.argument("farm_name", metavar="FARM")
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--public-port", type=int, required=True, help="Port on the router's public IP.")
@click.option("--to", "target", required=True, help="PRIVATE_IP:PORT inside the farm.")
@pass_cloud
def forward_add(cloud: Cloud, farm_name: str, protocol: str, public_port: int, target: str) -> None:
    """Forward a public port to a farm address."""
    ip, _, port = target.rpartition(":")
    if not ip or not port.isdigit():
        raise click.BadParameter("expected PRIVATE_IP:PORT", param_hint="--to")
    found = find_farm(cloud, farm_name)
    port_forwards.add_forward(cloud, found.id, protocol, public_port, ip, int(port))
    click.echo(f"{found.router_ip}:{public_port}/{protocol} -> {ip}:{port}")


@forward.command("remove")
@click.argument("farm_name", metavar="FARM")
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--public-port", type=int, required=True)
@pass_cloud
def forward_remove(cloud: Cloud, farm_name: str, protocol: str, public_port: int) -> None:
    """Remove a port forward."""
    port_forwards.remove_forward(cloud, find_farm(cloud, farm_name).id, protocol, public_port)
    click.echo(f"forward {protocol}/{public_port} removed")


@forward.command("list")
@click.argument("farm_name", metavar="FARM")
@output_option
@pass_cloud
def forward_list(cloud: Cloud, farm_name: str, output: str) -> None:
    """List the farm's port forwards."""
    found = find_farm(cloud, farm_name)
    rows = [{"protocol": f.protocol, "public": f"{found.router_ip}:{f.public_port}",
             "target": f"{f.private_ip}:{f.private_port}"} for f in port_forwards.list_forwards(cloud, found.id)]
    emit_rows(rows, ["protocol", "public", "target"], output)


@vrouter.group()
def eip() -> None:
    """The farm's elastic IP (1:1 NAT to one of its VMs)."""


@eip.command("bind")
@click.argument("farm_name", metavar="FARM")
@click.argument("ref", metavar="INSTANCE")
@click.option("--address", help="Which of the farm's elastic IPs (default: its first).")
@pass_cloud
def eip_bind(cloud: Cloud, farm_name: str, ref: str, address: str | None) -> None:
    """Bind the farm's elastic IP to INSTANCE (moving it if bound elsewhere)."""
    found = find_farm(cloud, farm_name)
    with cloud.store.read() as session:
        instance = find_instance(session, ref)
    bound = elastic_ips.associate(cloud, found.id, instance.id, public_ip=address)
    click.echo(f"{bound.public_ip} -> {instance.id} ({instance.ip})")


@eip.command("unbind")
@click.argument("farm_name", metavar="FARM")
@click.option("--address", help="Which of the farm's elastic IPs (default: its first).")
@pass_cloud
def eip_unbind(cloud: Cloud, farm_name: str, address: str | None) -> None:
    """Unbind the farm's elastic IP."""
    unbound = elastic_ips.disassociate(cloud, find_farm(cloud, farm_name).id, public_ip=address)
    click.echo(f"{unbound.public_ip} unbound")
