"""Every filter name AWS documents for the Describe actions served here, in one table.

Each action's names are of three kinds: ``computed`` by the handler from the resource, ``fixed``
(a property every resource here has with one value, e.g. ``bare-metal`` is ``false``: ``false``
matches all, ``true`` none) and ``absent`` (a property nothing here has, e.g. a spot request id:
any value matches nothing, as AWS answers for a resource without it). ``deferred`` names (the
network-interface properties of instances and addresses) are not accepted yet. ``tag:KEY``, ``tag-key`` and
``tag-value`` are handled for every resource with tags by :mod:`ivfarm.ec2.filters`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivfarm.ec2.filters import Extractor


@dataclass(frozen=True)
class Documented:
    """The documented filter names of one Describe action, by kind."""

    computed: frozenset[str]
    fixed: Mapping[str, str] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()
    deferred: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        """Every name this action accepts."""
        return self.computed | set(self.fixed) | self.absent


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NETWORK_INTERFACE = _words("""
    addresses.association.allocation-id addresses.association.association-id addresses.association.carrier-ip
    addresses.association.customer-owned-ip addresses.association.ip-owner-id
    addresses.association.public-dns-name addresses.association.public-ip addresses.primary
    addresses.private-dns-name addresses.private-ip-address association.allocation-id association.association-id
    association.carrier-ip association.customer-owned-ip association.ip-owner-id association.public-dns-name
    association.public-ip attachment.attach-time attachment.attachment-id attachment.delete-on-termination
    attachment.device-index attachment.instance-id attachment.instance-owner-id attachment.network-card-index
    attachment.status availability-zone deny-all-igw-traffic description group-id group-name
    ipv4-prefixes.ipv4-prefix ipv6-address ipv6-addresses.ipv6-address ipv6-addresses.is-primary-ipv6 ipv6-native
    ipv6-prefixes.ipv6-prefix network-interface-id operator.managed operator.principal outpost-arn owner-id
    private-dns-name private-ip-address public-dns-name requester-id requester-managed status source-dest-check
    subnet-id tag-key tag-value vpc-id""")

TABLE: dict[str, Documented] = {
    "DescribeInstances": Documented(
        computed=_words("""
            architecture availability-zone client-token hypervisor image-id instance-id instance-state-code
            instance-state-name instance-type ip-address kernel-id key-name launch-index launch-time
            monitoring-state network-interface.mac-address private-ip-address ramdisk-id reason reservation-id
            root-device-name root-device-type tenancy virtualization-type instance.group-id instance.group-name
            owner-id subnet-id vpc-id network-interface.vpc-id network-interface.subnet-id placement-group-name"""),
        fixed={"ebs-optimized": "false", "ena-support": "false", "enclave-options.enabled": "false",
               "hibernation-options.configured": "false", "source-dest-check": "true",
               "operator.managed": "false", "platform-details": "Linux/UNIX", "usage-operation": "RunInstances"},
        absent=_words("""
            affinity availability-zone-id block-device-mapping.attach-time block-device-mapping.delete-on-termination
            block-device-mapping.device-name block-device-mapping.status block-device-mapping.volume-id boot-mode
            capacity-reservation-id capacity-reservation-specification.capacity-reservation-preference
            capacity-reservation-specification.capacity-reservation-target.capacity-reservation-id
            capacity-reservation-specification.capacity-reservation-target.capacity-reservation-resource-group-arn
            current-instance-boot-mode dns-name host-id iam-instance-profile.arn iam-instance-profile.id
            instance-lifecycle ipv6-address maintenance-options.auto-recovery metadata-options.http-endpoint
            metadata-options.http-protocol-ipv4 metadata-options.http-protocol-ipv6
            metadata-options.http-put-response-hop-limit metadata-options.http-tokens
            metadata-options.instance-metadata-tags metadata-options.state
            network-performance-options.bandwidth-weighting operator.principal outpost-arn placement-partition-number platform
            private-dns-name
            private-dns-name-options.enable-resource-name-dns-a-record
            private-dns-name-options.enable-resource-name-dns-aaaa-record private-dns-name-options.hostname-type
            product-code product-code.type requester-id spot-instance-request-id state-reason-code
            state-reason-message tpm-support usage-operation-update-time"""),
        deferred=frozenset(f"network-interface.{name}" for name in _NETWORK_INTERFACE - {"vpc-id", "subnet-id"})),
    "DescribeInstanceStatus": Documented(
        computed=_words("""
            availability-zone instance-state-code instance-state-name instance-status.reachability
            instance-status.status system-status.reachability system-status.status"""),
        fixed={"operator.managed": "false"},
        absent=_words("""
            availability-zone-id event.code event.description event.instance-event-id event.not-after
            event.not-before event.not-before-deadline operator.principal attached-ebs-status.status
            application-status.status""")),
    "DescribeImages": Documented(
        computed=_words("""
            architecture creation-date description hypervisor image-id image-type is-public kernel-id name
            owner-alias owner-id ramdisk-id root-device-name root-device-type state virtualization-type"""),
        fixed={"ena-support": "false", "free-tier-eligible": "false", "image-allowed": "true"},
        absent=_words("""
            block-device-mapping.delete-on-termination block-device-mapping.device-name
            block-device-mapping.snapshot-id block-device-mapping.volume-size block-device-mapping.volume-type
            block-device-mapping.encrypted image-watermark.source-image-creation-time
            image-watermark.source-image-id image-watermark.source-image-region
            image-watermark.watermark-creation-time image-watermark.watermark-key manifest-location platform
            product-code product-code.type public-ssm-parameter-name scan-result.critical-fix-available-since
            scan-result.finding-scan-date scan-result.high-fix-available-since
            scan-result.highest-finding-severity-label scan-result.informational-fix-available-since
            scan-result.low-fix-available-since scan-result.medium-fix-available-since source-image-id
            source-image-region source-instance-id state-reason-code state-reason-message sriov-net-support""")),
    "DescribeInstanceTypes": Documented(
        computed=_words("""
            current-generation hypervisor instance-storage-info.total-size-in-gb instance-storage-supported
            instance-type memory-info.size-in-mib processor-info.supported-architecture vcpu-info.default-cores
            vcpu-info.default-vcpus"""),
        fixed={"auto-recovery-supported": "false", "bare-metal": "false", "burstable-performance-supported": "false",
               "dedicated-hosts-supported": "false", "free-tier-eligible": "false", "hibernation-supported": "false",
               "ebs-info.ebs-optimized-support": "unsupported", "ebs-info.encryption-support": "unsupported",
               "ebs-info.nvme-support": "unsupported", "network-info.efa-supported": "false",
               "network-info.ena-support": "unsupported", "network-info.encryption-in-transit-supported": "false",
               "network-info.flexible-ena-queues-support": "unsupported", "network-info.ipv6-supported": "false",
               "nitro-enclaves-support": "unsupported", "nitro-tpm-support": "unsupported",
               "reboot-migration-support": "unsupported", "supported-root-device-type": "ebs",
               "supported-usage-class": "on-demand", "supported-virtualization-type": "hvm",
               "vcpu-info.default-threads-per-core": "1"},
        absent=_words("""
            ebs-info.attachment-limit-type ebs-info.maximum-ebs-attachments
            ebs-info.ebs-optimized-info.baseline-bandwidth-in-mbps ebs-info.ebs-optimized-info.baseline-iops
            ebs-info.ebs-optimized-info.baseline-throughput-in-mbps
            ebs-info.ebs-optimized-info.maximum-bandwidth-in-mbps ebs-info.ebs-optimized-info.maximum-iops
            ebs-info.ebs-optimized-info.maximum-throughput-in-mbps instance-storage-info.disk.count
            instance-storage-info.disk.size-in-gb instance-storage-info.disk.type
            instance-storage-info.encryption-support instance-storage-info.nvme-support
            network-info.bandwidth-weightings network-info.efa-info.maximum-efa-interfaces
            network-info.ipv4-addresses-per-interface network-info.ipv6-addresses-per-interface
            network-info.maximum-network-cards network-info.maximum-network-interfaces
            network-info.network-performance nitro-tpm-info.supported-versions
            processor-info.sustained-clock-speed-in-ghz processor-info.supported-features supported-boot-mode
            vcpu-info.valid-cores vcpu-info.valid-threads-per-core""")),
    "DescribeAddresses": Documented(
        computed=_words("allocation-id association-id instance-id private-ip-address public-ip"),
        absent=_words("network-border-group"),
        deferred=_words("network-interface-id network-interface-owner-id")),
    "DescribeAvailabilityZones": Documented(
        computed=_words("group-name opt-in-status region-name state zone-id zone-name zone-type"),
        absent=_words("group-long-name message parent-zone-id parent-zone-name")),
    "DescribeRegions": Documented(computed=_words("endpoint opt-in-status region-name")),
    "DescribeKeyPairs": Documented(computed=_words("fingerprint key-name key-pair-id")),
    "DescribePlacementGroups": Documented(computed=_words("group-arn group-id group-name spread-level state strategy")),
    "DescribeTags": Documented(computed=_words("key resource-id resource-type value")),
    "DescribeVolumes": Documented(
        computed=_words("""
            attachment.attach-time attachment.delete-on-termination attachment.device attachment.instance-id
            attachment.status availability-zone create-time size snapshot-id status volume-id volume-type"""),
        fixed={"encrypted": "false", "multi-attach-enabled": "false", "fast-restored": "false",
               "operator.managed": "false"},
        absent=_words("operator.principal")),
    "DescribeVolumeStatus": Documented(
        computed=_words("availability-zone volume-status.details-name volume-status.details-status volume-status.status"),
        absent=_words("""
            action.code action.description action.event-id event.description event.event-id event.event-type
            event.not-after event.not-before""")),
    "DescribeSnapshots": Documented(
        computed=_words("description owner-id progress snapshot-id start-time status volume-id volume-size"),
        fixed={"encrypted": "false", "storage-tier": "standard"},
        absent=_words("owner-alias")),
}


def _constant(value: str) -> Extractor:
    return lambda _resource: (value,)


def _nothing(_resource: object) -> tuple[str, ...]:
    return ()


def documented(action: str, extractors: Mapping[str, Extractor]) -> dict[str, Extractor]:
    """The handler's ``extractors`` completed with the fixed and absent names of ``action``'s table row."""
    row = TABLE[action]
    missing = row.computed - set(extractors)
    if missing:
        raise RuntimeError(f"{action}: no extractor for documented filters {sorted(missing)}")
    completed: dict[str, Extractor] = {name: _nothing for name in row.absent}
    completed.update({name: _constant(value) for name, value in row.fixed.items()})
    completed.update(extractors)
    return completed
