#!/usr/bin/env bash
# Makes sure the base images of the Containerfile and of containers/prometheus are in local
# Podman storage, and says which names to build with:
#
#   debian      official docker.io/library/debian:bookworm-slim
#               stand-in localhost/botticelli-debian:bookworm-slim       (debootstrap minbase)
#   rust        official docker.io/library/rust:1.95-slim-bookworm
#               stand-in localhost/botticelli-rust:1.95-slim-bookworm    (debian + gcc + the
#                                            host's Rust toolchain + the host's CA bundle)
#   prometheus  localhost/botticelli-prometheus:2.42.0 (containers/prometheus, FROM the debian
#               image chosen above; always built here, never pulled)
#
# For debian and rust: an official image already in local storage is used; otherwise it is
# pulled (`podman pull`); only when the pull fails (no registry: air-gapped sites, CI runners)
# is a stand-in built, under its own localhost/ name. Nothing is ever tagged with an official
# name: a stand-in never shadows the real image. Stand-ins carry the label
# io.botticelli.stand-in=true.
#
# Older versions of this script tagged their stand-ins with the official names. Such images
# (recognised by the marks that script left: the debootstrap import comment on debian, the
# "rust (local build from the host toolchain)" title on rust) are renamed to the localhost/
# names on the next run (`podman tag` + `podman untag`: same image, no rebuild). By hand:
#   podman untag docker.io/library/debian:bookworm-slim docker.io/library/rust:1.95-slim-bookworm
#
# Usage: containers/build-base-images.sh [--force] [--print-env] [debian|rust|prometheus]...
#   (default: all three)
#   --force      rebuild the stand-ins (and prometheus) even if present (no pull attempt)
#   --print-env  print RUNTIME_IMAGE=... and RUST_IMAGE=... (the names to pass to
#                `podman build --build-arg`) on stdout; everything else goes to stderr.
#                The justfile and scripts/e2e.sh use it: base=$(... --print-env); eval "$base"
# Environment: RUNTIME_IMAGE, RUST_IMAGE (the official names to try; defaults above),
#   PROMETHEUS_IMAGE, BASE_IMAGES_PULL=never (do not try to pull: go straight to stand-ins).
# Needs: podman; for a debian stand-in debootstrap (root); for a rust stand-in a host rustc.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/containers/containers.conf}"

RUNTIME_IMAGE="${RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
RUST_IMAGE="${RUST_IMAGE:-docker.io/library/rust:1.95-slim-bookworm}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-localhost/botticelli-prometheus:2.42.0}"
BASE_IMAGES_PULL="${BASE_IMAGES_PULL:-missing}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
STANDIN_LABEL=io.botticelli.stand-in

# localhost/botticelli-<name>:<tag> for an official <registry>/<path>/<name>:<tag>; a name that
# is already local (localhost/...) is its own stand-in name.
standin_name() {
    case "$1" in
        localhost/*) echo "$1" ;;
        *) local last="${1##*/}"; echo "localhost/botticelli-${last%%:*}:${last#*:}" ;;
    esac
}
DEBIAN_STANDIN="$(standin_name "$RUNTIME_IMAGE")"
RUST_STANDIN="$(standin_name "$RUST_IMAGE")"

force=0
print_env=0
wanted=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --print-env) print_env=1 ;;
        debian|rust|prometheus) wanted+=("$arg") ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(debian rust prometheus)
want() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

have() { podman image exists "$1"; }
log() { echo "[base-images] $*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "  took $((SECONDS - t0))s"; }
work=$(mktemp -d /tmp/botticelli-base-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Is IMAGE (present locally) a stand-in built by this script, now or by an older version?
is_standin() {
    local labels comments
    labels="$(podman image inspect --format '{{json .Labels}}' "$1" 2>/dev/null || true)"
    [[ "$labels" == *"\"$STANDIN_LABEL\":\"true\""* ]] && return 0
    [[ "$labels" == *'rust (local build from the host toolchain)'* ]] && return 0
    comments="$(podman history --format '{{.Comment}}' "$1" 2>/dev/null || true)"
    [[ "$comments" == *'debootstrap --variant=minbase'* ]] && [[ "$labels" != *org.opencontainers* ]] && return 0
    return 1
}

# An old stand-in under an official name: give it its localhost/ name, drop the official one.
migrate_legacy() {
    local official=$1 standin=$2
    [[ "$official" == localhost/* ]] && return 0
    have "$official" && is_standin "$official" || return 0
    if have "$standin"; then
        log "removing the name $official from an old local stand-in ($standin exists)"
    else
        log "renaming the old local stand-in $official -> $standin (it shadowed the official image)"
        podman tag "$official" "$standin"
    fi
    podman untag "$official" "$official"
}

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
    log "podman import -> $DEBIAN_STANDIN"
    tar --numeric-owner -C "$rootfs" -c . \
        | podman import -q --change 'CMD ["bash"]' --change "LABEL $STANDIN_LABEL=true" \
            --message "debootstrap --variant=minbase $DEBIAN_SUITE" - "$DEBIAN_STANDIN" >/dev/null
}

build_rust() {
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
    log "podman build (FROM $debian) -> $RUST_STANDIN"
    podman build --quiet --build-arg "DEBIAN_IMAGE=$debian" -t "$RUST_STANDIN" "$ctx" >/dev/null
}

build_prometheus() {
    log "podman build containers/prometheus (FROM $debian) -> $PROMETHEUS_IMAGE"
    podman build --quiet --format docker --build-arg "DEBIAN_IMAGE=$debian" \
        -t "$PROMETHEUS_IMAGE" containers/prometheus >/dev/null
}

# choose WHAT OFFICIAL STANDIN: prints the name to build with; pulls or builds as needed.
# --force applies to the images named on the command line (or all, when none is named), not to
# debian when it is only the base of a forced prometheus.
choose() {
    local what=$1 official=$2 standin=$3 force=$force
    want "$what" || force=0
    if [ "$force" = 0 ] && [[ "$official" != localhost/* ]]; then
        if have "$official" && ! is_standin "$official"; then
            log "$what: $official present"
            echo "$official"; return
        fi
        if [ "$BASE_IMAGES_PULL" != never ]; then
            if podman pull -q "$official" >"$work/pull-$what.log" 2>&1; then
                log "$what: pulled $official"
                echo "$official"; return
            fi
            log "$what: podman pull $official failed: $(tail -1 "$work/pull-$what.log" | cut -c1-160)"
        else
            log "$what: BASE_IMAGES_PULL=never: not pulling $official"
        fi
    fi
    if [ "$force" = 0 ] && have "$standin"; then
        log "$what: using the local stand-in $standin (present)"
    else
        log "$what: building the local stand-in $standin"
        timed "build_$what"
    fi
    echo "$standin"
}

migrate_legacy "$RUNTIME_IMAGE" "$DEBIAN_STANDIN"
migrate_legacy "$RUST_IMAGE" "$RUST_STANDIN"

debian=""
rust=
# rust and prometheus stand-ins are built FROM the chosen debian image.
if want debian || want prometheus || want rust; then
    debian="$(choose debian "$RUNTIME_IMAGE" "$DEBIAN_STANDIN")"
fi
if want rust; then
    rust="$(choose rust "$RUST_IMAGE" "$RUST_STANDIN")"
fi
if want prometheus; then
    if [ "$force" = 0 ] && have "$PROMETHEUS_IMAGE"; then
        log "prometheus: $PROMETHEUS_IMAGE present"
    else
        log "prometheus: building $PROMETHEUS_IMAGE"
        timed build_prometheus
    fi
fi
if [ "$print_env" = 1 ]; then
    echo "RUNTIME_IMAGE=$debian"
    [ -z "$rust" ] || echo "RUST_IMAGE=$rust"
fi
