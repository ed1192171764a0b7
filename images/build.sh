#!/bin/bash
# Build the ivfarm tiny guest from Debian packages:
#   OUTDIR/vmlinuz        Debian 6.1 cloud kernel
#   OUTDIR/initrd.img     gzip'd cpio: busybox-static, images/init, virtio/scsi/ata/isofs modules
#   OUTDIR/rootfs.raw     32 MiB ext4 data disk (/ivfarm-rootfs marker, empty /data), built unmounted
#   OUTDIR/manifest.json  names, sizes, sha256, kernel version, default cmdline
#   OUTDIR/cache/         the kernel .deb (rebuilds are offline and fast)
#
# Usage: images/build.sh OUTDIR        (as root; FORCE=1 rebuilds everything)
# Env:   IVFARM_KERNEL_PKG=linux-image-6.1.0-NN-cloud-amd64  pin the kernel package
#        IVFARM_KERNEL_REFRESH=1  ask apt for the newest 6.1 cloud kernel even if one is cached
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/build.sh"
INIT="$HERE/init"
CMDLINE="console=ttyS0 quiet"
ROOTFS_MIB=32
ROOTFS_MARKER="IVFARM-ROOTFS v1"
ROOTFS_UUID=4f1c2b3a-7a9e-4d5c-9b0e-1f2a3b4c5d6e
EPOCH=1700000000  # fixed timestamps inside the images: identical inputs, identical bytes
WANTED_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
failover net_failover virtio_net virtio_blk scsi_common scsi_mod cdrom sr_mod virtio_scsi
libata ata_piix isofs ext4"
KERNEL_PKG_RE='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$'

die() { echo "build.sh: $*" >&2; exit 1; }
say() { echo "build.sh: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
umask 022
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CACHE="$OUT/cache"
mkdir -p "$CACHE"
chmod 0755 "$OUT" "$CACHE"

# One build at a time per OUTDIR (parallel test sessions share it).
exec 9>"$OUT/.lock"
flock 9

ensure_tools() {
    local missing=()
    dpkg-query -W -f='${Status}\n' busybox-static 2>/dev/null | grep -q '^install ok installed' \
        || missing+=(busybox-static)
    command -v cpio >/dev/null || missing+=(cpio)
    command -v mke2fs >/dev/null || missing+=(e2fsprogs)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]} (run as root to install them)"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# Newest cached kernel .deb (of package $1 if given), if any.
cached_deb() {
    find "$CACHE" -maxdepth 1 -name "${1:-linux-image-6.1.0-*-cloud-amd64}_*_amd64.deb" -printf '%f\n' \
        | sort -V | tail -n 1
}

newest_kernel_pkg() {
    apt-cache search --names-only "$KERNEL_PKG_RE" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -n 1
}

# Sets DEB to the kernel package file: the newest one in the cache (of
# IVFARM_KERNEL_PKG if set) without asking apt, unless IVFARM_KERNEL_REFRESH=1
# or the cache has none; else the newest 6.1 cloud kernel apt knows, downloaded.
fetch_kernel() {
    local pkg ver file tmp
    if [[ ${IVFARM_KERNEL_REFRESH:-0} != 1 ]]; then
        file=$(cached_deb "${IVFARM_KERNEL_PKG:-}")
        if [[ -n $file ]]; then
            DEB="$CACHE/$file"
            return 0
        fi
    fi
    pkg=${IVFARM_KERNEL_PKG:-$(newest_kernel_pkg)}
    if [[ -z $pkg && -z $(cached_deb) && $EUID -eq 0 ]]; then
        apt-get update >&2 || true
        pkg=$(newest_kernel_pkg)
    fi
    if [[ -n $pkg ]]; then
        ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
        file="${pkg}_${ver//:/%3a}_amd64.deb"
        if [[ -n $ver && -s "$CACHE/$file" ]]; then
            DEB="$CACHE/$file"
            return 0
        fi
        say "downloading $pkg ${ver}"
        tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
        if (cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2); then
            file=$(cd "$tmp" && ls -- *.deb)
            mv "$tmp/$file" "$CACHE/$file"
            rm -rf "$tmp"
            DEB="$CACHE/$file"
            return 0
        fi
        rm -rf "$tmp"
        say "download of $pkg failed, trying the cache"
    fi
    file=$(cached_deb "${IVFARM_KERNEL_PKG:-}")
    [[ -n $file ]] || die "no 6.1 cloud kernel package available (apt-get update?) and none cached in $CACHE"
    DEB="$CACHE/$file"
}

# up_to_date: every output exists and is newer than every input.
up_to_date() {
    local o i
    [[ ${FORCE:-0} == 1 ]] && return 1
    for o in vmlinuz initrd.img rootfs.raw manifest.json; do
        [[ -s "$OUT/$o" ]] || return 1
        for i in "$SELF" "$INIT" "$DEB"; do
            [[ "$OUT/$o" -nt "$i" ]] || return 1
        done
    done
    grep -qF "\"kernel_package_file\": \"$(basename "$DEB")\"" "$OUT/manifest.json"
}

# extract DIR PATTERN...: unpack the members of the kernel .deb matching the tar
# wildcards (a selective `dpkg-deb -x`: the full tree is 106 MB, we need 4 MB).
extract() {
    local dir=$1
    shift
    mkdir -p "$dir"
    # tar fails when a pattern matches nothing (a built-in module): callers check the files.
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$dir" --wildcards "$@" 2>/dev/null || true
}

ko_pattern() {  # module name -> tar wildcard for its file (names mix - and _)
    printf '*/%s.ko*' "${1//_/[-_]}"
}

ko_depends() {  # the depends= field of a module (uncompressed .ko)
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '
}

# Copies the closure of WANTED_MODULES into $1/lib/modules (uncompressed) and
# writes $1/lib/modules/load.order (dependencies first). $3 is the root of the
# partial unpack of the .deb, extended when a dependency is missing from it.
add_modules() {
    local root=$1 kdir=$2 debroot=$3 m
    local -A path=() state=()
    local order=()
    scan_modules() {  # module name -> file, from the unpacked tree
        while read -r m; do
            local base=${m##*/}
            base=${base%%.ko*}
            path[${base//-/_}]=$m
        done < <(cd "$kdir" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
    }
    scan_modules
    local -A builtin=()
    while read -r m; do
        m=${m##*/}
        m=${m%.ko}
        builtin[${m//-/_}]=1
    done <"$kdir/modules.builtin"
    mkdir -p "$root/lib/modules"
    visit() {
        local name=${1//-/_} f d
        [[ -n ${builtin[$name]:-} ]] && return 0
        [[ ${state[$name]:-} == done ]] && return 0
        [[ ${state[$name]:-} == busy ]] && die "module dependency cycle at $name"
        f=${path[$name]:-}
        if [[ -z $f ]]; then
            extract "$debroot" "$(ko_pattern "$name")"
            scan_modules
            f=${path[$name]:-}
        fi
        [[ -n $f ]] || die "module $name is neither built in nor shipped by the kernel package"
        state[$name]=busy
        case "$f" in
            *.ko.xz) xz -dc "$kdir/$f" >"$root/lib/modules/$name.ko" ;;
            *.ko.zst) zstd -qdc "$kdir/$f" >"$root/lib/modules/$name.ko" ;;
            *.ko.gz) gzip -dc "$kdir/$f" >"$root/lib/modules/$name.ko" ;;
            *) cp "$kdir/$f" "$root/lib/modules/$name.ko" ;;
        esac
        for d in $(ko_depends "$root/lib/modules/$name.ko"); do
            visit "$d"
        done
        state[$name]=done
        order+=("$name")
    }
    for m in $WANTED_MODULES; do
        visit "$m"
    done
    printf '%s\n' "${order[@]}" >"$root/lib/modules/load.order"
    MODULES="${order[*]}"
}

UDHCPC_SCRIPT='#!/bin/sh
# udhcpc event script: configure $interface with the lease (ip, router, dns).
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound | renew)
        if ! ip -4 -o addr show dev "$interface" | grep -q " $ip/$mask "; then
            ip -4 addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        fi
        if [ -n "$router" ]; then
            while ip route del default dev "$interface" 2>/dev/null; do :; done
            for r in $router; do
                ip route add default via "$r" dev "$interface" && break
            done
        fi
        if [ -n "$dns" ]; then
            : >/etc/resolv.conf
            [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
            for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
        fi
        ;;
esac
exit 0
'

build_initrd() {
    local kdir=$1 root=$2 out=$3
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/share/udhcpc,etc,proc,sys,dev,run,tmp,root,seed,rootfs,www,lib/modules}
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    cp /bin/busybox "$root/bin/busybox"
    if grep -qa '/lib64/ld-linux' "$root/bin/busybox"; then  # has an ELF interpreter
        die "/bin/busybox is dynamically linked (install busybox-static)"
    fi
    # applet links (bin/sh, sbin/insmod, usr/bin/wget, ...): one perl (Essential in Debian)
    # instead of 400 ln processes
    /bin/busybox --list-full | grep -vx 'bin/busybox' \
        | (cd "$root" && perl -nle 'symlink("/bin/busybox", $_) or die "$_: $!\n"')
    install -m 0755 "$INIT" "$root/init"
    printf '%s' "$UDHCPC_SCRIPT" >"$root/usr/share/udhcpc/default.script"
    chmod 0755 "$root/usr/share/udhcpc/default.script"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    printf 'ivfarm-guest\n' >"$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    cat >"$root/etc/profile" <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-vt100}
PS1='guest# '
EOF
    add_modules "$root" "$kdir" "$WORK/deb"
    if [[ $EUID -eq 0 ]]; then
        mknod -m 0600 "$root/dev/console" c 5 1
        mknod -m 0666 "$root/dev/null" c 1 3
    fi
    find "$root" -exec touch -h -d "@$EPOCH" {} +
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort \
        | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -6 -n >"$out"
}

build_rootfs() {
    local dir=$1 out=$2
    mkdir -p "$dir/data"
    printf '%s\n' "$ROOTFS_MARKER" >"$dir/ivfarm-rootfs"
    find "$dir" -exec touch -h -d "@$EPOCH" {} +
    rm -f "$out"
    E2FSPROGS_FAKE_TIME=$EPOCH mke2fs -q -F -t ext4 -L ivfarm-root -U "$ROOTFS_UUID" \
        -E "root_owner=0:0,hash_seed=$ROOTFS_UUID" -m 0 -d "$dir" "$out" "${ROOTFS_MIB}M" >/dev/null
    # mke2fs -d copies each file's ctime, which touch cannot set: pin it too.
    (cd "$dir" && find . | sed "s|^\.|set_inode_field /|; s|//|/|; s|\$| ctime @$EPOCH|") \
        | E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f - "$out" >/dev/null 2>&1
}

json_file() {  # name -> {"size": N, "sha256": "..."}
    printf '    "%s": {"size": %s, "sha256": "%s"}' "$1" "$(stat -c %s "$OUT/$1")" \
        "$(sha256sum "$OUT/$1" | cut -d' ' -f1)"
}

write_manifest() {
    local kver=$1 modules=$2 tmp="$OUT/.manifest.json.new"
    {
        printf '{\n'
        printf '  "name": "ivfarm-tiny",\n'
        printf '  "format": 1,\n'
        printf '  "arch": "x86_64",\n'
        printf '  "kernel_version": "%s",\n' "$kver"
        printf '  "kernel_package": "%s",\n' "$(dpkg-deb -f "$DEB" Package)"
        printf '  "kernel_package_version": "%s",\n' "$(dpkg-deb -f "$DEB" Version)"
        printf '  "kernel_package_file": "%s",\n' "$(basename "$DEB")"
        printf '  "busybox": "%s",\n' "$(/bin/busybox | head -n 1 | awk '{ print $2 }')"
        printf '  "cmdline": "%s",\n' "$CMDLINE"
        printf '  "kernel": "vmlinuz",\n  "initrd": "initrd.img",\n  "rootfs": "rootfs.raw",\n'
        printf '  "rootfs_format": "raw",\n  "rootfs_fstype": "ext4",\n'
        printf '  "rootfs_marker": "%s",\n' "$ROOTFS_MARKER"
        printf '  "modules": ["%s"],\n' "${modules// /\", \"}"
        printf '  "files": {\n'
        json_file vmlinuz
        printf ',\n'
        json_file initrd.img
        printf ',\n'
        json_file rootfs.raw
        printf '\n  }\n}\n'
    } >"$tmp"
    mv "$tmp" "$OUT/manifest.json"
}

main() {
    local t0 kdir kver
    t0=$(date +%s.%N)
    ensure_tools
    fetch_kernel
    if up_to_date; then
        say "up to date: $OUT ($(basename "$DEB"))"
        return 0
    fi
    WORK=$(mktemp -d "$OUT/.build.XXXXXX")
    trap 'rm -rf "$WORK" "$OUT"/.*.new' EXIT
    local patterns=('./boot/vmlinuz-*' './lib/modules/*/modules.builtin') m
    for m in $WANTED_MODULES; do
        patterns+=("$(ko_pattern "$m")")
    done
    extract "$WORK/deb" "${patterns[@]}"
    kdir=$(find "$WORK/deb/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [[ -n $kdir ]] || die "no /lib/modules in $DEB"
    kver=${kdir##*/}
    [[ -f "$WORK/deb/boot/vmlinuz-$kver" ]] || die "no /boot/vmlinuz-$kver in $DEB"

    install -m 0644 "$WORK/deb/boot/vmlinuz-$kver" "$OUT/.vmlinuz.new"
    build_initrd "$kdir" "$WORK/initrd" "$OUT/.initrd.img.new"
    build_rootfs "$WORK/rootfs" "$OUT/.rootfs.raw.new"
    chmod 0644 "$OUT/.initrd.img.new" "$OUT/.rootfs.raw.new"
    mv "$OUT/.vmlinuz.new" "$OUT/vmlinuz"
    mv "$OUT/.initrd.img.new" "$OUT/initrd.img"
    mv "$OUT/.rootfs.raw.new" "$OUT/rootfs.raw"
    write_manifest "$kver" "$MODULES"
    touch "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/rootfs.raw" "$OUT/manifest.json"
    say "built $OUT: kernel $kver, initrd $(stat -c %s "$OUT/initrd.img") bytes," \
        "in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}

main
