#!/usr/bin/env bash
# Tests scripts/check-container-host.sh (`just test-host-check`; CI runs it):
#   - with a containers.conf that forces the CNI backend it fails within 60 s, naming aardvark-dns;
#   - with the project's containers/containers.conf it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed 's/^network_backend = .*/network_backend = "cni"/' containers/containers.conf >"$work/cni.conf"
grep -q '^network_backend = "cni"' "$work/cni.conf" || { echo "FAIL: could not make a CNI containers.conf"; exit 1; }

t0=$SECONDS
if CONTAINERS_CONF="$work/cni.conf" timeout 60 scripts/check-container-host.sh >"$work/out" 2>&1; then
    cat "$work/out"; echo "FAIL: the host check passed with network_backend = \"cni\""; exit 1
fi
took=$((SECONDS - t0))
sed 's/^/  | /' "$work/out"
[ "$took" -lt 60 ] || { echo "FAIL: the host check took ${took}s with CNI (limit 60 s)"; exit 1; }
grep -q 'aardvark-dns' "$work/out" || { echo "FAIL: the CNI failure does not name aardvark-dns"; exit 1; }
grep -q "backend is 'cni'" "$work/out" || { echo "FAIL: the CNI failure does not name the backend"; exit 1; }
echo "ok: with CNI forced the check fails in ${took}s and names aardvark-dns"

t0=$SECONDS
scripts/check-container-host.sh >"$work/out" 2>&1 || { cat "$work/out"; echo "FAIL: the host check fails with containers/containers.conf"; exit 1; }
echo "ok: with containers/containers.conf the check passes ($((SECONDS - t0))s)"
