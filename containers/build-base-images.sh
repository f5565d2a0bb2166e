#!/usr/bin/env bash
# Builds in local Podman storage the images this project's Containerfile and compose file name
# but that cannot be pulled on hosts without a container registry (air-gapped sites, CI runners without registry access):
#
#   debian      $RUNTIME_IMAGE     (docker.io/library/debian:bookworm-slim): debootstrap minbase
#   rust        $RUST_IMAGE        (docker.io/library/rust:1.95-slim-bookworm): debian + gcc +
#                                  the host's Rust toolchain + the host's CA bundle
#   prometheus  $PROMETHEUS_IMAGE  (localhost/botticelli-prometheus:2.42.0): containers/prometheus
#
# An image already present is kept (use --force to rebuild). On a workstation that can pull,
# none of this is needed: podman pulls debian and rust, and compose builds prometheus.
#
# Usage: containers/build-base-images.sh [--force] [debian|rust|prometheus]...   (default: all)
# Needs: podman, and for `debian` debootstrap (root), for `rust` a host toolchain (rustc).
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/containers/containers.conf}"

RUNTIME_IMAGE="${RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
RUST_IMAGE="${RUST_IMAGE:-docker.io/library/rust:1.95-slim-bookworm}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-localhost/botticelli-prometheus:2.42.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

force=0
wanted=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        debian|rust|prometheus) wanted+=("$arg") ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(debian rust prometheus)

have() { podman image exists "$1"; }
log() { echo "[base-images] $*"; }
timed() { local t0=$SECONDS; "$@"; log "  took $((SECONDS - t0))s"; }
work=$(mktemp -d /tmp/botticelli-base-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

build_debian() {
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; return 1; }
    local rootfs="$work/rootfs"
    log "debootstrap --variant=minbase $DEBIAN_SUITE from $DEBIAN_MIRROR"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; return 1; }
    # The official image's apt sources (with updates and security) and its "slim" dpkg filter:
    # no docs, man pages or locales in later installs.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
SLIM
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
        "$rootfs"/tmp/* 2>/dev/null || true
    log "podman import -> $RUNTIME_IMAGE"
    tar --numeric-owner -C "$rootfs" -c . \
        | podman import -q --change 'CMD ["bash"]' --message "debootstrap --variant=minbase $DEBIAN_SUITE" - "$RUNTIME_IMAGE" >/dev/null
}

build_rust() {
    have "$RUNTIME_IMAGE" || build_debian
    local sysroot ctx="$work/rust"
    sysroot="$(rustc --print sysroot)"
    log "host toolchain $(rustc --version) from $sysroot"
    mkdir -p "$ctx/toolchain"
    for d in bin etc lib libexec share; do
        [ -d "$sysroot/$d" ] && cp -a "$sysroot/$d" "$ctx/toolchain/"
    done
    rm -rf "$ctx/toolchain/share/doc" "$ctx/toolchain/share/man" "$ctx/toolchain/share/zsh"
    cp "$HOST_CA_BUNDLE" "$ctx/host-ca-bundle.crt"
    cp containers/rust/Containerfile "$ctx/Containerfile"
    log "podman build -> $RUST_IMAGE"
    podman build --quiet --build-arg "DEBIAN_IMAGE=$RUNTIME_IMAGE" -t "$RUST_IMAGE" "$ctx" >/dev/null
}

build_prometheus() {
    have "$RUNTIME_IMAGE" || build_debian
    log "podman build containers/prometheus -> $PROMETHEUS_IMAGE"
    podman build --quiet --format docker --build-arg "DEBIAN_IMAGE=$RUNTIME_IMAGE" \
        -t "$PROMETHEUS_IMAGE" containers/prometheus >/dev/null
}

for what in "${wanted[@]}"; do
    case "$what" in
        debian) image="$RUNTIME_IMAGE" ;;
        rust) image="$RUST_IMAGE" ;;
        prometheus) image="$PROMETHEUS_IMAGE" ;;
    esac
    if [ "$force" = 0 ] && have "$image"; then
        log "$what: $image present"
        continue
    fi
    log "$what: building $image"
    timed "build_$what"
done
