"""One module per area; importing this package registers every EC2 action."""
from ivfarm.ec2.handlers import (
    addresses,
    images,
    instances,
    keypairs,
    lifecycle,
    metadata_options,
    regions,
    tags,
)

__all__ = ["addresses", "images", "instances", "keypairs", "lifecycle", "metadata_options", "regions", "tags"]
