#!/usr/bin/env bash
# The main job: a single-host ivfarm cloud on this machine with a demo farm of two VMs.
#   scripts/demo.sh          set up (idempotent) and print how to reach the farm
#   scripts/demo.sh --clean  delete the demo farm and its images
set -euo pipefail
cd "$(dirname "$0")/.."
IVFARM=${IVFARM:-.venv/bin/ivfarm}
GUEST_DIR=${IVFARM_GUEST_DIR:-/var/lib/ivfarm-guest}
FARM=${DEMO_FARM:-demo}

STATE_DIR=$(.venv/bin/python -c "from ivfarm.config import load_config; print(load_config().state_dir)")
EC2_PID="$STATE_DIR/run/ec2-demo.pid"
LISTEN=127.0.0.1:8773

if [ "${1:-}" = "--clean" ]; then
    if [ -f "$EC2_PID" ]; then
        kill "$(cat "$EC2_PID")" 2>/dev/null || true
        rm -f "$EC2_PID"
    fi
    $IVFARM farm show "$FARM" >/dev/null 2>&1 && $IVFARM farm delete "$FARM" --yes
    for image in guest guest-initrd guest-kernel; do
        $IVFARM image show "$image" >/dev/null 2>&1 && $IVFARM image remove "$image"
    done
    $IVFARM host show local >/dev/null 2>&1 && $IVFARM host remove local
    if [ "$($IVFARM farm list -o json)" = "[]" ] && [ "$($IVFARM host list -o json)" = "[]" ]; then
        # nothing of a site is left: remove the public segment, this cloud's pools and its state
        .venv/bin/python -c "from ivfarm.cloud import Cloud; from ivfarm.config import load_config
Cloud(load_config()).public_segment.destroy()"
        cloud_id=$(.venv/bin/python -c "from ivfarm.config import load_config; print(load_config().get('cloud_id'))")
        for pool in $(virsh -c qemu:///system pool-list --all --name | grep "^$cloud_id-" || true); do
            virsh -q -c qemu:///system pool-destroy "$pool" >/dev/null 2>&1 || true
            virsh -q -c qemu:///system pool-undefine "$pool" >/dev/null
        done
        rm -rf "$STATE_DIR"
        echo "demo removed (state directory $STATE_DIR included)"
    fi
    exit 0
fi

$IVFARM init
$IVFARM host show local >/dev/null 2>&1 || $IVFARM host add local --uri qemu:///system --class worker
cmdline=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cmdline'])" "$GUEST_DIR/manifest.json")
$IVFARM image show guest-kernel >/dev/null 2>&1 ||
    $IVFARM image add guest-kernel --kind kernel --file "$GUEST_DIR/vmlinuz" --cmdline "$cmdline" --public
$IVFARM image show guest-initrd >/dev/null 2>&1 ||
    $IVFARM image add guest-initrd --kind ramdisk --file "$GUEST_DIR/initrd.img" --public
$IVFARM image show guest >/dev/null 2>&1 ||
    $IVFARM image add guest --file "$GUEST_DIR/rootfs.raw" --format raw --kernel guest-kernel \
        --ramdisk guest-initrd --cmdline "$cmdline" --public \
        --description "busybox guest: reads its NoCloud seed, runs user-data, serves HTTP on port 80"

$IVFARM farm show "$FARM" >/dev/null 2>&1 || $IVFARM farm create "$FARM" --owner "ivfarm demo"
for vm in "$FARM-1" "$FARM-2"; do
    $IVFARM vm show "$vm" >/dev/null 2>&1 || $IVFARM vm run --farm "$FARM" --image guest --flavor m1.tiny --name "$vm"
done
$IVFARM vrouter eip bind "$FARM" "$FARM-1"

eip=$($IVFARM farm show "$FARM" -o json | python3 -c "import json,sys; print(json.load(sys.stdin)['elastic_ips'])")
public_ns=$(.venv/bin/python -c "from ivfarm.config import load_config; print(load_config().get('network.public.netns') or '')")
echo
$IVFARM vm list --farm "$FARM"
# The farm users' side: the EC2 endpoint, driven with awscli and the farm's credentials.
if ! { [ -f "$EC2_PID" ] && kill -0 "$(cat "$EC2_PID")" 2>/dev/null; }; then
    mkdir -p "$STATE_DIR/run"
    nohup $IVFARM ec2 serve --listen "$LISTEN" >>"$STATE_DIR/ec2-demo.log" 2>&1 &
    echo $! >"$EC2_PID"
fi
for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8773) 2>/dev/null && break
    sleep 0.2
done
eval "$($IVFARM farm credentials "$FARM" | sed 's/^/export /')"
region="$(.venv/bin/python -c "from ivfarm.config import load_config; print(load_config().get('ec2.region'))")"
# Security groups close every port by default: the demo opens HTTP in the farm's default group.
if ! opened=$(.venv/bin/aws --endpoint-url "http://$LISTEN" --region "$region" ec2 authorize-security-group-ingress \
        --group-name default --protocol tcp --port 80 --cidr 0.0.0.0/0 2>&1) &&
        ! grep -q InvalidPermission.Duplicate <<<"$opened"; then  # a rerun finds it open already
    echo "demo: could not open tcp/80 in the default group: $opened" >&2
fi
echo "waiting for $FARM-1 to answer on its elastic IP $eip ..."
for try in $(seq 1 60); do
    if ip netns exec "$public_ns" timeout 3 bash -c "exec 3<>/dev/tcp/$eip/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null | grep -q i-; then
        echo "$FARM-1 answers on http://$eip/ from the public segment"
        break
    fi
    [ "$try" = 60 ] && echo "demo: $FARM-1 did not answer on http://$eip/ within a minute (see $IVFARM vm console $FARM-1)" >&2
    sleep 1
done
echo
echo "aws ec2 describe-instances, as the farm's users see it:"
.venv/bin/aws --endpoint-url "http://$LISTEN" --region "$region" \
    ec2 describe-instances --output table \
    --query 'Reservations[].Instances[].{id:InstanceId,state:State.Name,private:PrivateIpAddress,public:PublicIpAddress,type:InstanceType}'

cat <<INFO

The demo farm '$FARM' is up: two VMs on their own /24 behind a virtual router.
  the elastic IP $eip is bound to $FARM-1; from the public segment (namespace $public_ns):
      ip netns exec $public_ns wget -qO- http://$eip/
  consoles:        $IVFARM vm console $FARM-1
  EC2 credentials: $IVFARM farm credentials $FARM --output json
  EC2 endpoint:    http://$LISTEN (running; log $STATE_DIR/ec2-demo.log)
                   eval "\$($IVFARM farm credentials $FARM | sed 's/^/export /')"
                   aws --endpoint-url http://$LISTEN --region ivfarm-1 ec2 describe-instances
  remove it all:   make clean-demo
INFO
