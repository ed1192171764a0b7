"""One module per area; importing this package registers every EC2 action."""
from ivfarm.ec2.handlers import (
    addresses,
    images,
    instances,
    keypairs,
    lifecycle,
    metadata_options,
    regions,
    security_groups,
    snapshots,
    tags,
    volumes,
    vpc,
)

__all__ = ["addresses", "images", "instances", "keypairs", "lifecycle", "metadata_options", "regions",
           "security_groups", "snapshots", "tags", "volumes", "vpc"]
