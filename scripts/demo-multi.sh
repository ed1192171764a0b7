#!/usr/bin/env bash
# A farm across hypervisors on this machine: a three-host site (network namespaces with their own
# libvirtd, joined by an underlay bridge), VXLAN farm segments, the farm's router on the third host,
# one VM on each of the first two, the elastic IP bound to the VM on the second.
#   scripts/demo-multi.sh          set it up and print how to reach the VMs
#   scripts/demo-multi.sh --clean  remove every namespace, link, daemon, domain and state file it made
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${DEMO_MULTI_ROOT:-/var/lib/ivfarm-demo-multi}
PREFIX=ivdm
FARM=demo-multi
GUEST_DIR=${IVFARM_GUEST_DIR:-/var/lib/ivfarm-guest}
export IVFARM_CONFIG="$ROOT/ivfarm.yaml"
PY=${IVFARM_PYTHON:-.venv/bin/python}
IVFARM=${IVFARM:-.venv/bin/ivfarm}
SITE="scripts/multihost-site.sh"

if [ "${1:-}" = "--clean" ]; then
    if [ -f "$IVFARM_CONFIG" ]; then
        $IVFARM farm show "$FARM" >/dev/null 2>&1 && $IVFARM farm delete "$FARM" --yes
        "$PY" -c "from ivfarm.cloud import Cloud; from ivfarm.config import load_config
Cloud(load_config()).public_segment.destroy()"
    fi
    $SITE destroy "$ROOT/site"
    rm -rf "$ROOT"
    echo "demo-multi removed ($ROOT included)"
    exit 0
fi

[ -e "$ROOT/site/site.json" ] && { echo "demo-multi is already set up (make clean-demo-multi first)" >&2; exit 1; }
mkdir -p -m 0755 "$ROOT" "$ROOT/state/disks"
$SITE create "$ROOT/site" "$PREFIX" 3 "$ROOT/state/disks" >/dev/null
uri() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['hosts'][int(sys.argv[2])][sys.argv[3]])" "$ROOT/site/site.json" "$1" "$2"; }
cat >"$IVFARM_CONFIG" <<YAML
state_dir: $ROOT/state
cloud_id: ivdm
hypervisor: {domain_type: qemu, shutdown_timeout_s: 5}
network:
  segments: vxlan
  vlan_range: [4060, 4090]   # router namespaces ivfarm-r<vlan> apart from \`make demo\`'s
  public: {bridge: ivdmpub, netns: ivdm-public}
vrouter: {backend: netns, host_uri: "$(uri 2 uri)"}
YAML
$IVFARM init
for i in 0 1 2; do
    class=worker; [ $i = 2 ] && class=service  # the network host runs no worker VM
    $IVFARM host add "$(uri $i name)" --uri "$(uri $i uri)" --class $class \
        --underlay-address "$(uri $i underlay)" --netns "$(uri $i name)"
done
cmdline=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cmdline'])" "$GUEST_DIR/manifest.json")
$IVFARM image add guest-kernel --kind kernel --file "$GUEST_DIR/vmlinuz" --cmdline "$cmdline" --public
$IVFARM image add guest-initrd --kind ramdisk --file "$GUEST_DIR/initrd.img" --public
$IVFARM image add guest --file "$GUEST_DIR/rootfs.raw" --format raw --kernel guest-kernel \
    --ramdisk guest-initrd --cmdline "$cmdline" --public
$IVFARM farm create "$FARM" --owner "ivfarm multi-host demo"
# security groups close every port by default: open ICMP and HTTP in the farm's default group
"$PY" -c "from ivfarm.cloud import Cloud; from ivfarm.config import load_config
from ivfarm.services.farms.lifecycle import farm_by_name
from ivfarm.services.tenancy.security_groups import GroupRef, Permission, authorize
cloud = Cloud(load_config())
with cloud.store.read() as session:
    farm_id = farm_by_name(session, '$FARM').id
authorize(cloud, farm_id, GroupRef(name='default'), False,
          [Permission('icmp', -1, -1, '0.0.0.0/0'), Permission('tcp', 80, 80, '0.0.0.0/0')])"
h1=$(uri 0 name); h2=$(uri 1 name)
$IVFARM host disable "$h2"
$IVFARM vm run --farm "$FARM" --image guest --flavor m1.tiny --name "$FARM-1"
$IVFARM host enable "$h2"; $IVFARM host disable "$h1"
$IVFARM vm run --farm "$FARM" --image guest --flavor m1.tiny --name "$FARM-2"
$IVFARM host enable "$h1"
$IVFARM vrouter eip bind "$FARM" "$FARM-2"
eip=$($IVFARM farm show "$FARM" -o json | python3 -c "import json,sys; print(json.load(sys.stdin)['elastic_ips'])")
echo
$IVFARM vm list --farm "$FARM"
echo "waiting for $FARM-2 (on $h2) to answer ping on its elastic IP $eip from the public segment ..."
for try in $(seq 1 60); do
    ip netns exec ivdm-public busybox ping -c 1 -W 1 "$eip" >/dev/null 2>&1 && { echo "$FARM-2 answers on $eip"; break; }
    [ "$try" = 60 ] && echo "demo-multi: $FARM-2 did not answer on $eip within a minute" >&2
    sleep 1
done
cat <<INFO

The farm '$FARM' spans two hypervisors over VXLAN ($h1, $h2; router on $(uri 2 name)):
  elastic IP of $FARM-2:  ip netns exec ivdm-public busybox ping $eip
                          ip netns exec ivdm-public bash -c "exec 3<>/dev/tcp/$eip/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
  segment of a host:      ip netns exec $h1 bridge fdb show dev ivvx<VLAN>   (VLAN: $IVFARM farm show $FARM)
  console of a VM:        IVFARM_CONFIG=$IVFARM_CONFIG $IVFARM vm console $FARM-1
  remove it all:          make clean-demo-multi
INFO
