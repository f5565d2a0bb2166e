#!/usr/bin/env bash
# Installs everything this project's tests and container stack need on a Debian 12 (bookworm)
# host, each package by name. `.ci/run`, the README and docs/QUICK_START_OBSERVABILITY.md all
# use this script. Idempotent: what is already installed is left as it is.
#
# Usage: scripts/install-deps.sh [--cargo-only | --containers]   (default: everything)
#   --cargo-only   what `cargo test` and the config checks need: rustfmt, clippy, promtool,
#                  amtool, PyYAML
#   --containers   also what the container stack and its end-to-end test need (the default)
#
# Why each package (apt installs only these, with --no-install-recommends: nothing arrives
# through a package's Recommends, so nothing depends on how a host's apt is configured):
#
#   prometheus       promtool: `promtool check metrics` in cargo test, the alert rule tests
#   prometheus-alertmanager  amtool: `amtool check-config alertmanager/alertmanager.yml`
#                    (just check-stack-config); the Alertmanager daemon it also installs is not
#                    started (no systemd on CI hosts; the stack runs its own in a container)
#   python3-yaml     PyYAML for scripts/check-stack-config.py under Debian's python3 (a pip
#                    python has it through podman-compose, which depends on it)
#   podman           the container engine (4.3.1 on bookworm)
#   runc             the OCI runtime containers/containers.conf selects (crun refuses hosts with
#                    hybrid cgroups)
#   conmon           podman's container monitor (a Depends of podman; named so it is explicit)
#   netavark         the network backend containers/containers.conf selects. Only a Recommends
#                    of podman: without it podman falls back to CNI, which has no DNS between
#                    containers, so Prometheus cannot find `bot-server` on botticelli-net
#   aardvark-dns     netavark's DNS server: resolves container and service names on a network
#                    (only a Recommends of netavark)
#   iptables         netavark sets up bridge networks and published ports with it
#   catatonit        the init of pod infra containers (podman-compose puts services in a pod)
#   busybox-static   one static binary: the host check (scripts/check-container-host.sh) imports
#                    it as a tiny image to prove name resolution between two containers
#   debootstrap      builds the Debian base image where no registry can be pulled from
#   sqlite3          the e2e test reads the state volume with it
#   curl, ca-certificates, git, python3, python3-pip   used by the scripts and the e2e checks
#
# Not from Debian: podman-compose 1.6.0 (PyPI; Debian's 1.0.3 is too old for the compose
# file) and just (crates.io; bookworm has no package).
set -euo pipefail

mode=containers
case "${1:-}" in
    "") ;;
    --cargo-only) mode=cargo ;;
    --containers) mode=containers ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

PODMAN_COMPOSE_VERSION=1.6.0
JUST_VERSION=1.59.0
CARGO_PACKAGES=(prometheus prometheus-alertmanager python3-yaml ca-certificates curl git)
CONTAINER_PACKAGES=(podman runc conmon netavark aardvark-dns iptables catatonit busybox-static
    debootstrap sqlite3 python3 python3-pip)

log() { echo "[install-deps] $*"; }
need_root() {
    [ "$(id -u)" = 0 ] && return 0
    command -v sudo >/dev/null || { echo "run as root, or install sudo" >&2; exit 1; }
    SUDO=sudo
}
SUDO=""

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt: all present: $*"
        return
    fi
    command -v apt-get >/dev/null || { echo "apt-get not found: install ${missing[*]} with your package manager" >&2; exit 1; }
    need_root
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

log "rustup components: rustfmt clippy"
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || log "warning: rustup could not add rustfmt/clippy"
fi

apt_install "${CARGO_PACKAGES[@]}"
[ "$mode" = cargo ] && { log "done (cargo only)"; exit 0; }

apt_install "${CONTAINER_PACKAGES[@]}"

if [ "$(podman-compose --version 2>/dev/null | sed -n 's/^podman-compose version //p')" != "$PODMAN_COMPOSE_VERSION" ]; then
    log "pip: installing podman-compose==$PODMAN_COMPOSE_VERSION"
    # A pyenv/virtualenv python takes it as is; Debian's system python needs the override.
    python3 -m pip install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "podman-compose==$PODMAN_COMPOSE_VERSION"
    if command -v pyenv >/dev/null; then pyenv rehash; fi
else
    log "pip: podman-compose $PODMAN_COMPOSE_VERSION present"
fi

if [ "$(just --version 2>/dev/null)" != "just $JUST_VERSION" ]; then
    log "cargo: installing just $JUST_VERSION"
    cargo install --locked --quiet --version "$JUST_VERSION" just
else
    log "cargo: just $JUST_VERSION present"
fi

log "installed versions:"
podman --version
runc --version | awk 'NR == 1'
echo "netavark $(dpkg-query -W -f='${Version}' netavark), aardvark-dns $(dpkg-query -W -f='${Version}' aardvark-dns)"
podman-compose --version 2>/dev/null | grep podman-compose
just --version
promtool --version 2>&1 | awk 'NR == 1'
amtool --version 2>&1 | awk 'NR == 1'
log "done"
