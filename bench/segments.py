"""Farm segment set-up time on one host: VXLAN (bridge + VNI link + head-end FDB) vs a plain bridge.

Setup (not timed): a two-host site of this machine (``tests/integration/multihost_site``: network
namespaces with their own libvirtd, joined by an underlay bridge). Timed, for FARMS farms on host 1:
the existing backend's ``ensure`` (a libvirt network: an isolated bridge) and the VXLAN backend's
``ensure`` plus ``set_peers`` toward host 2 with PEER_MACS MACs (what one VM's provisioning adds on
a host that joins a farm). Then a re-sync with nothing to change (the idempotent path). Everything
is removed afterwards. Needs root. Prints JSON last.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.network.host_shell import NetnsShell
from drivers.network.libvirt_bridge import LibvirtBridgeSegments
from drivers.network.vxlan import HostLink, VxlanSegments
from tests.integration import multihost_site

FARMS, PEER_MACS = 20, 4
FIRST_VLAN = 4050  # above the integration tests' VLAN blocks (3000-3999)


def _per_farm_ms(action, vlans: list[int]) -> float:  # type: ignore[no-untyped-def]
    times = []
    for vlan in vlans:
        started = time.perf_counter()
        action(vlan)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # ensure's first lookup misses, by design
    tag = uuid.uuid4().hex[:6]
    site = multihost_site.create(Path("/var/lib/ivfarm-test") / f"bench-seg-{tag}", f"ivtb{tag}", 2)
    h1, h2 = site.hosts
    links = {h.uri: HostLink(NetnsShell(h.name), h.underlay) for h in site.hosts}
    vlans = list(range(FIRST_VLAN, FIRST_VLAN + FARMS))
    connections: dict[str, libvirt.virConnect] = {}
    bridge = LibvirtBridgeSegments(lambda uri: connections.setdefault(uri, libvirt.open(uri)))
    vxlan = VxlanSegments(links.__getitem__, vni_base=100000)
    peers = {h2.underlay: [f"02:00:0a:63:{i:02x}:01" for i in range(PEER_MACS)]}
    try:
        bridge_ms = _per_farm_ms(lambda vlan: bridge.ensure(h1.uri, vlan), vlans)
        for vlan in vlans:
            bridge.remove(h1.uri, vlan)

        def vxlan_join(vlan: int) -> None:
            vxlan.ensure(h1.uri, vlan)
            vxlan.set_peers(h1.uri, vlan, peers)

        vxlan_ms = _per_farm_ms(vxlan_join, vlans)
        resync_ms = _per_farm_ms(lambda vlan: vxlan.set_peers(h1.uri, vlan, peers), vlans)
        assert vxlan.list_vlans(h1.uri) == vlans
        for vlan in vlans:
            vxlan.remove(h1.uri, vlan)
    finally:
        for conn in connections.values():
            conn.close()
        site.destroy()
    print(json.dumps({"bench": "segments", "farms": FARMS, "peer_macs": PEER_MACS,
                      "bridge_ensure_ms": bridge_ms, "vxlan_ensure_and_fdb_ms": vxlan_ms,
                      "vxlan_resync_ms": resync_ms, "vxlan_vs_bridge": round(vxlan_ms / bridge_ms, 2)}))


if __name__ == "__main__":
    main()
