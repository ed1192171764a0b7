#!/usr/bin/env bash
# Start what ivfarm needs on this host: virtlogd and libvirtd (systemd when it runs, by hand otherwise).
# Never starts libvirt's `default` NAT network.
set -euo pipefail

# Without udev, /dev/kvm stays root-only: libvirt then finds KVM "gone" after every capability
# probe and re-probes QEMU on each call (a define takes minutes). Apply Debian's udev permissions.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

if [ -d /run/systemd/system ]; then
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service
else
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
fi
for _ in $(seq 1 50); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
done
virsh -c qemu:///system version >/dev/null
# libvirt-daemon-system marks its NAT network autostart on some installs: keep it off.
if virsh -c qemu:///system net-info default >/dev/null 2>&1; then
    virsh -c qemu:///system net-autostart default --disable >/dev/null 2>&1 || true
fi
echo "libvirtd and virtlogd are running"
