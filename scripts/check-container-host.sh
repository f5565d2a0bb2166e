#!/usr/bin/env bash
# Checks in seconds that this host can run the container stack, before anything is built or
# started: `just start-observability`, `just start-observability-offline` and `just e2e` run it
# first. Each failure says what to install or set.
#
#   1. podman and podman-compose are installed
#   2. the network backend is netavark (not the CNI fallback, which has no DNS between
#      containers) and aardvark-dns is installed
#   3. the OCI runtime is one that starts containers here (runc; crun refuses hybrid cgroups)
#   4. two containers on a fresh test network resolve each other by name (aardvark-dns at work),
#      using a tiny image made from the host's static busybox (no registry, no image build)
#
# Uses CONTAINERS_CONF (default: containers/containers.conf), like every podman call of the
# project. Exit status: 0 when the host can run the stack, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/containers/containers.conf}"
CHECK_IMAGE=localhost/botticelli-hostcheck:busybox
BUSYBOX="${BUSYBOX:-/bin/busybox}"
INSTALL="scripts/install-deps.sh"
t0=$SECONDS

fail() {
    echo "host check FAILED: $1" >&2
    shift
    for line in "$@"; do echo "  $line" >&2; done
    exit 1
}
ok() { echo "  ok: $*"; }

echo "checking that this host can run the container stack (CONTAINERS_CONF=$CONTAINERS_CONF)"
[ -r "$CONTAINERS_CONF" ] || fail "CONTAINERS_CONF=$CONTAINERS_CONF is not a readable file" \
    "unset it to use the project's containers/containers.conf"

# 1. tools
command -v podman >/dev/null || fail "podman is not installed" "fix: $INSTALL (or apt-get install podman runc netavark aardvark-dns iptables catatonit)"
command -v podman-compose >/dev/null || fail "podman-compose is not installed" "fix: $INSTALL (or pip install podman-compose==1.6.0)"
ok "$(podman --version), $(podman-compose --version 2>/dev/null | grep -m1 podman-compose)"

# 2. network backend and its DNS server
info=$(timeout 30 podman info --format '{{.Host.NetworkBackend}} {{.Host.OCIRuntime.Name}}' 2>"${TMPDIR:-/tmp}/hostcheck-info.err") \
    || fail "podman info failed: $(tail -3 "${TMPDIR:-/tmp}/hostcheck-info.err")"
read -r backend runtime <<<"$info"
if [ "$backend" != netavark ]; then
    fail "podman's network backend is '$backend', not netavark: containers on botticelli-net could not resolve each other by name (Prometheus would report \"lookup bot-server ...: no such host\")" \
        "fix: install netavark and aardvark-dns (apt-get install netavark aardvark-dns, or $INSTALL)" \
        "and select netavark: [network] network_backend = \"netavark\" (containers/containers.conf does; is CONTAINERS_CONF pointing at another file?)"
fi
aardvark=""
for dir in /usr/libexec/podman /usr/lib/podman /usr/local/libexec/podman /usr/local/lib/podman; do
    [ -x "$dir/aardvark-dns" ] && aardvark="$dir/aardvark-dns" && break
done
[ -n "$aardvark" ] || fail "aardvark-dns is not installed: netavark networks would have no DNS, so no container could reach another by name" \
    "fix: apt-get install aardvark-dns (or $INSTALL)"
command -v iptables >/dev/null || fail "iptables is not installed: netavark cannot set up bridge networks or published ports" \
    "fix: apt-get install iptables (or $INSTALL)"
ok "network backend netavark, DNS by $aardvark"

# 3. runtime
case "$runtime" in
    runc) ok "OCI runtime runc" ;;
    *) echo "  note: OCI runtime is '$runtime' (containers/containers.conf selects runc); checking that it starts containers" ;;
esac

# 4. name resolution between two containers on a test network
if ! podman image exists "$CHECK_IMAGE"; then
    [ -x "$BUSYBOX" ] || fail "$BUSYBOX not found (the DNS check imports it as a tiny image)" "fix: apt-get install busybox-static (or $INSTALL)"
    work=$(mktemp -d)
    mkdir -p "$work/bin" "$work/etc"
    cp "$BUSYBOX" "$work/bin/busybox"
    for applet in sh sleep nslookup ping; do ln -s busybox "$work/bin/$applet"; done
    tar --numeric-owner -C "$work" -c . | podman import -q --change 'CMD ["/bin/sh"]' - "$CHECK_IMAGE" >/dev/null \
        || { rm -rf "$work"; fail "podman import of the check image failed"; }
    rm -rf "$work"
fi
net="botticelli-hostcheck-$$"
server="botticelli-hostcheck-server-$$"
cleanup() {
    podman rm -f -t 0 "$server" >/dev/null 2>&1 || true
    podman network rm -f "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT
err="${TMPDIR:-/tmp}/hostcheck-$$.err"
timeout 30 podman network create "$net" >/dev/null 2>"$err" \
    || fail "podman network create failed: $(tail -3 "$err")" "fix: $INSTALL installs netavark, aardvark-dns and iptables"
if ! timeout 30 podman run -d --name "$server" --network "$net" "$CHECK_IMAGE" /bin/sleep 60 >/dev/null 2>"$err"; then
    msg=$(tail -3 "$err")
    if grep -qi 'hybrid' "$err"; then
        fail "the OCI runtime '$runtime' cannot start containers on this host: $msg" \
            "fix: use runc ([engine] runtime = \"runc\" in containers/containers.conf; apt-get install runc)"
    fi
    fail "podman run failed with runtime '$runtime': $msg" \
        "fix: check the runtime (containers/containers.conf selects runc) and ulimits; see docs/TROUBLESHOOTING.md"
fi
resolved=""
for _ in $(seq 1 20); do
    if out=$(timeout 10 podman run --rm --network "$net" "$CHECK_IMAGE" /bin/nslookup "$server" 2>&1) \
        && grep -q "Name:.*$server" <<<"$out"; then
        resolved=$(grep -A1 "Name:.*$server" <<<"$out" | sed -n 's/^Address[^0-9]*\([0-9.]*\).*/\1/p' | head -1)
        break
    fi
    sleep 1
done
[ -n "$resolved" ] || fail "a container cannot resolve another by name on a netavark network (aardvark-dns not answering): $(tail -2 <<<"${out:-}")" \
    "fix: apt-get install aardvark-dns (or $INSTALL); if it is installed, remove stale networks (podman network prune) and see docs/TROUBLESHOOTING.md#dns"
ok "containers resolve each other by name ($server -> $resolved)"
echo "host check passed in $((SECONDS - t0))s"
