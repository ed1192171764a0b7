"""One module per area; importing this package registers every EC2 action."""
from ivfarm.ec2.handlers import (
    addresses,
    images,
    instances,
    keypairs,
    lifecycle,
    regions,
    security_groups,
    tags,
)

__all__ = ["addresses", "images", "instances", "keypairs", "lifecycle", "regions", "security_groups", "tags"]
