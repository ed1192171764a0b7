"""What a handler gets: the cloud, the calling farm, the request's id and its DryRun flag."""
from __future__ import annotations

from dataclasses import dataclass, field

from ivfarm.cloud import Cloud
from ivfarm.ec2.auth import Principal
from ivfarm.ec2.errors import dry_run_ok
from ivfarm.store.models import HOST_CLASSES


def account_id(farm_id: int) -> str:
    """The 12-digit EC2 account id that stands for a farm."""
    return f"{farm_id:012d}"


def vpc_id(farm_id: int) -> str:
    """The id of the one VPC a farm is."""
    return f"vpc-{farm_id:017x}"


def subnet_id(farm_id: int) -> str:
    """The id of the farm's one subnet."""
    return f"subnet-{farm_id:017x}"


@dataclass
class RequestContext:
    """One authenticated request."""

    cloud: Cloud
    principal: Principal
    request_id: str
    dry_run: bool = False
    host: str = ""
    proceeded: bool = field(default=False, init=False)

    @property
    def farm_id(self) -> int:
        return self.principal.farm_id

    @property
    def owner_id(self) -> str:
        return account_id(self.principal.farm_id)

    @property
    def vpc_id(self) -> str:
        return vpc_id(self.principal.farm_id)

    @property
    def subnet_id(self) -> str:
        return subnet_id(self.principal.farm_id)

    @property
    def region(self) -> str:
        return str(self.cloud.config.get("ec2.region"))

    def zone_for(self, host_class: str) -> str:
        """The availability zone of a hypervisor class."""
        return self.cloud.config.zone_for(host_class)

    def class_for_zone(self, zone: str) -> str | None:
        """The hypervisor class an availability zone stands for, or None."""
        return next((c for c in HOST_CLASSES if self.zone_for(c) == zone), None)

    def proceed(self) -> None:
        """Mark the point after which the handler changes or returns things.

        Everything before it checks parameters and permissions; under DryRun the request ends
        here with DryRunOperation.
        """
        self.proceeded = True
        if self.dry_run:
            raise dry_run_ok()
