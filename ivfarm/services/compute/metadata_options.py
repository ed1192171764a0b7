"""An instance's EC2 MetadataOptions: the site default, the launch's choice, the row's columns."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Instance

HTTP_TOKENS = ("optional", "required")
HTTP_ENDPOINT = ("enabled", "disabled")


@dataclass(frozen=True)
class MetadataOptions:
    """What the farm router's metadata service enforces for one instance; None: keep what applies."""

    http_tokens: str | None = None
    hop_limit: int | None = None
    http_endpoint: str | None = None

    def over(self, base: MetadataOptions) -> MetadataOptions:
        """These options, with ``base``'s wherever these leave one unset."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})


def site_default(cloud: CloudContext) -> MetadataOptions:
    """The options of ``ec2.metadata_options``: what a launch gets unless it asks otherwise."""
    return MetadataOptions(http_tokens=cloud.config.get("ec2.metadata_options.imdsv2"),
                           hop_limit=cloud.config.get("ec2.metadata_options.http_put_response_hop_limit"),
                           http_endpoint=cloud.config.get("ec2.metadata_options.http_endpoint"))


def of(instance: Instance) -> MetadataOptions:
    """The options an instance row holds."""
    return MetadataOptions(instance.metadata_http_tokens, instance.metadata_hop_limit, instance.metadata_http_endpoint)


def store(instance: Instance, options: MetadataOptions) -> None:
    """Write complete options onto an instance row."""
    instance.metadata_http_tokens = options.http_tokens or HTTP_TOKENS[0]
    instance.metadata_hop_limit = options.hop_limit or 1
    instance.metadata_http_endpoint = options.http_endpoint or HTTP_ENDPOINT[0]
