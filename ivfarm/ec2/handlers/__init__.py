"""One module per area; importing this package registers every EC2 action."""
from ivfarm.ec2.handlers import (
    addresses,
    farm_images,
    images,
    instance_attributes,
    instances,
    keypairs,
    lifecycle,
    metadata_options,
    placement_groups,
    regions,
    security_groups,
    snapshots,
    tags,
    volumes,
    vpc,
)

__all__ = ["addresses", "farm_images", "images", "instance_attributes", "instances", "keypairs", "lifecycle",
           "metadata_options", "placement_groups", "regions", "security_groups", "snapshots", "tags", "volumes", "vpc"]
