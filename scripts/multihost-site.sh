#!/bin/bash
# A site of 2 or 3 hypervisors on this machine (network + mount namespaces, own libvirtd each,
# joined by an underlay bridge inside namespaces only), and its complete removal.
#   scripts/multihost-site.sh create ROOT PREFIX [COUNT [PRIVATE_DIR...]]  # prints each host: name, underlay, URI
#   scripts/multihost-site.sh destroy ROOT
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${IVFARM_PYTHON:-$HERE/.venv/bin/python}"
[ "$(id -u)" = 0 ] || { echo "multihost-site: must run as root" >&2; exit 1; }
exec env PYTHONPATH="$HERE" "$PY" -m tests.integration.multihost_site "$@"
