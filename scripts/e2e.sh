#!/usr/bin/env bash
# End-to-end test of the container stack (`just e2e`; CI runs it from .ci/run).
#
# On a host with what scripts/install-deps.sh installs, and no image registry, it:
#   0. checks prerequisites: the host can run the stack (scripts/check-container-host.sh:
#      netavark, aardvark-dns, DNS between containers, runtime), no botticelli-* containers,
#      free ports;
#   1. gets the base images (containers/build-base-images.sh): pulls the official debian and
#      rust images, or, where the pull fails (as on this project's hosts), builds stand-ins
#      under localhost/botticelli-* names; asserts that the run tagged no docker.io/library/*
#      image (no stand-in shadows an official name), and that stand-ins tagged with official
#      names (as older versions of the script did) lose those names on the next run;
#   2. builds the bot-server image through the real Containerfile (--format docker) FROM the
#      images step 1 chose, asserts that it has no bash, curl or ping, builds the debug image
#      (target debug: the troubleshooting tools), the OTLP receiver stand-in (target
#      otlp-receiver-standin: not Jaeger) and the Discord stand-in (target discord-standin:
#      the library's fake Discord, for step G); checks the stack's config statically
#      (scripts/check-stack-config.py, and its self-test);
#   3. checks and unit-tests the alert rules with the Prometheus image's promtool;
#   4. starts bot-server, prometheus and jaeger (= the stand-in, JAEGER_IMAGE) with
#      podman-compose; Grafana is not started: no Grafana image can be built here;
# and asserts:
#   A. stack: the three containers run on botticelli-net, every published port is bound to
#      127.0.0.1 (`podman port`), the bot-server is healthy (`podman healthcheck run`), runs as
#      uid 1000 as PID 1, its image keeps HEALTHCHECK;
#   B. metrics flow: Prometheus target bot-server:9090 is up; after some runs the run counters
#      in Prometheus match the bot-server's /metrics;
#   C. every PromQL expression of the dashboards, datasources and alert rules is valid and
#      returns series (Grafana itself cannot run here; this is how the dashboards are proven),
#      and the e2e's always-failing actor drives BotActorCircuitOpen to firing;
#   D. traces flow: the stand-in, reached as jaeger:4317, received actor.run span trees;
#   E. `podman stop` ends the bot-server with exit 0 before the stop timeout (no SIGKILL);
#      after `podman start` its state (posts, run ids) is still there;
#   F. the network troubleshooting commands of docs/TROUBLESHOOTING.md print what it says (the
#      ones that need tools run in the debug image on botticelli-net, `just debug ...`),
#      including the "DNS" fix (compose down, network rm, up: state survives);
#   G. with Discord hanging (the Discord stand-in in hang mode on botticelli-net, the bot-server
#      recreated with scripts/e2e/actor_server.hang.toml: a channel and a webhook post in
#      flight, Discord's request timeout at its default 30 s), `podman stop` still ends the
#      bot-server with exit 0 within its shutdown budget (grace 15 s + 10 s), before the stop
#      timeout; the channel post is left `sending`, the webhook post set aside as `failed`;
# then tears everything down (also on failure, printing the containers' logs first).
#
# Environment: E2E_KEEP=1 leaves the stack up; E2E_LOG_DIR (default a new /tmp dir) keeps the
# outputs; E2E_RELEASE_LTO / E2E_RELEASE_CODEGEN_UNITS are passed to the image build
# (RELEASE_LTO, RELEASE_CODEGEN_UNITS build args; unset: Cargo.toml's release profile).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/containers.conf}"
export BUILDAH_FORMAT=docker          # podman-compose builds keep HEALTHCHECK too
export PODMAN_COMPOSE_WARNING_LOGS=false

BOT_IMAGE="${BOT_SERVER_IMAGE:-localhost/botticelli-bot-server:latest}"
STANDIN_IMAGE="${STANDIN_IMAGE:-localhost/botticelli-otlp-receiver-standin:latest}"
DISCORD_STANDIN_IMAGE="${DISCORD_STANDIN_IMAGE:-localhost/botticelli-discord-standin:latest}"
# Step G's fake Discord, on botticelli-net under this name (not a compose service).
DISCORD_CONTAINER=botticelli-discord
export BOT_SERVER_IMAGE="$BOT_IMAGE"
export JAEGER_IMAGE="$STANDIN_IMAGE"
export PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-localhost/botticelli-prometheus:2.42.0}"
DEBUG_IMAGE="${BOT_SERVER_DEBUG_IMAGE:-localhost/botticelli-bot-server:debug}"
export BOT_SERVER_DEBUG_IMAGE="$DEBUG_IMAGE"
BOT_PORT="${BOT_SERVER_PORT:-9090}"
PROM_PORT="${PROMETHEUS_PORT:-9091}"
UI_PORT="${JAEGER_UI_PORT:-16686}"
PROM="http://127.0.0.1:$PROM_PORT"
BOT="http://127.0.0.1:$BOT_PORT"
SPANS="http://127.0.0.1:$UI_PORT/api/spans"
# A user's .env is not read (--env-file /dev/null), and what the assertions depend on is set here.
COMPOSE=(podman-compose --env-file /dev/null -f docker-compose.observability.yml -f scripts/e2e/compose.e2e.yml)
export OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    OTEL_SERVICE_NAME=bot-server OTEL_TRACES_SAMPLER_ARG=1.0 DATABASE_URL= RUST_LOG=info LOG_FORMAT=text
unset DISCORD_TOKEN DISCORD_TOKEN_FILE DISCORD_CHANNEL_ID DISCORD_WEBHOOK_URL
# Ports are published on the default address, 127.0.0.1; step A asserts it.
unset BOTTICELLI_BIND_ADDRESS
SERVICES=(bot-server prometheus jaeger)
CONTAINERS=(botticelli-bot-server botticelli-prometheus botticelli-jaeger)
E2E_VOLUMES=(botticelli-e2e-bot-server-state botticelli-e2e-prometheus-data botticelli-e2e-grafana-data botticelli-e2e-alertmanager-data)
LOG_DIR="${E2E_LOG_DIR:-$(mktemp -d /tmp/botticelli-e2e.XXXXXX)}"
mkdir -p "$LOG_DIR"
CHECK=(python3 "$ROOT/scripts/e2e/check.py")
# Step G: the stack's bot-server with the hanging-Discord config instead of the e2e's.
COMPOSE_HANG=(podman-compose --env-file /dev/null -f docker-compose.observability.yml -f scripts/e2e/compose.hang.yml)

# --------------------------------------------------------------------------------- helpers
T0=$SECONDS
TIMINGS=()
CURRENT=""
STEP_T0=$SECONDS
step() {
    finish_step
    CURRENT="$*"
    STEP_T0=$SECONDS
    echo
    echo "=== e2e: $* (t=$((SECONDS - T0))s)"
}
finish_step() {
    if [ -n "$CURRENT" ]; then
        TIMINGS+=("$(printf '%5ss  %s' $((SECONDS - STEP_T0)) "$CURRENT")")
        echo "--- ok ($((SECONDS - STEP_T0))s): $CURRENT"
    fi
    CURRENT=""
}
die() { echo "FAIL: $*" >&2; exit 1; }
# expect NAME FILE PATTERN: the output of a documented command contains what the docs say.
expect() {
    if grep -Eq -- "$3" "$2"; then
        echo "  ok: $1: $(grep -Em1 -- "$3" "$2" | cut -c1-150)"
    else
        echo "  --- output of $1:"; sed 's/^/  | /' "$2" | awk 'NR <= 30'
        die "$1: expected /$3/"
    fi
}
# run_doc NAME CMD...: run a documented command, keep its output (stdout+stderr) in the log dir.
run_doc() {
    local name=$1; shift
    local out="$LOG_DIR/doc-$name.txt"
    echo "  \$ $*" | tee "$out.cmd" >/dev/null
    # stdout first, then stderr (curl's progress meter would otherwise interleave).
    local rc=0
    "$@" </dev/null >"$out" 2>"$out.stderr" || rc=$?
    cat "$out.stderr" >>"$out"
    [ $rc -eq 0 ] || echo "[exit $rc]" >>"$out"
    echo "$out"
}
# expect_ok NAME FILE: the documented command exited 0 (some print nothing on success).
expect_ok() {
    if grep -q '^\[exit [0-9]*\]$' "$2"; then
        echo "  --- output of $1:"; sed 's/^/  | /' "$2" | awk 'NR <= 30'
        die "$1: expected exit status 0"
    fi
    echo "  ok: $1: exit 0$( [ -s "$2" ] && echo ", $(head -1 "$2" | cut -c1-120)" )"
}
# wait_dns CONTAINER NAME: until NAME resolves inside CONTAINER. Every container start, stop or
# removal on the network makes aardvark-dns (1.4, Debian bookworm) reload, and lookups can time
# out for seconds to tens of seconds afterwards (containers/aardvark-dns#389; see
# docs/TROUBLESHOOTING.md). Prints how long it took.
wait_dns() {
    local t=$SECONDS deadline=$((SECONDS + 120))
    until podman exec "$1" getent hosts "$2" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$2 does not resolve in $1 after 120s"
        sleep 1
    done
    echo "  DNS: $2 resolves in $1 (after $((SECONDS - t))s)"
}
# posts_kept BEFORE AFTER WHEN: every post id listed in BEFORE (`bot-server posts list`
# output) is still listed in AFTER; fails naming the lost ones.
posts_kept() {
    python3 - "$1" "$2" "$3" <<'EOF'
import re, sys
def ids(path):
    return {int(m.group(1)) for m in (re.match(r"\s*(\d+)\s", l) for l in open(path)) if m}
before, after, when = ids(sys.argv[1]), ids(sys.argv[2]), sys.argv[3]
missing = sorted(before - after)
if missing:
    sys.exit(f"posts lost across {when}: {missing}")
print(f"  state kept across {when}: {len(after)} posts, all {len(before)} from before present")
EOF
}
wait_healthy() {
    local deadline=$((SECONDS + ${2:-90}))
    until podman healthcheck run "$1" >"$LOG_DIR/healthcheck.txt" 2>&1; do
        [ $SECONDS -lt $deadline ] || { cat "$LOG_DIR/healthcheck.txt"; die "$1 not healthy within ${2:-90}s"; }
        sleep 2
    done
}

cleanup() {
    local status=$?
    set +e
    if [ $status -ne 0 ]; then
        echo
        echo "=== e2e FAILED in step: ${CURRENT:-?} (exit $status); container logs follow"
        podman ps -a --filter name=botticelli- --format '{{.Names}}  {{.Status}}  {{.Image}}'
        for c in "${CONTAINERS[@]}" "$DISCORD_CONTAINER"; do
            podman container exists "$c" || continue
            echo "----- podman logs --tail 80 $c"
            podman logs --tail 80 "$c" 2>&1
        done
        if podman container exists botticelli-bot-server; then
            echo "----- podman inspect botticelli-bot-server (state)"
            podman inspect -f '{{json .State}}' botticelli-bot-server
        fi
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "E2E_KEEP=1: leaving the stack up (tear down: just stop-observability; podman volume rm ${E2E_VOLUMES[*]})"
    elif [ "${STACK_STARTED:-0}" = 1 ]; then
        echo
        echo "=== e2e: teardown"
        "${COMPOSE[@]}" down -v >"$LOG_DIR/down.log" 2>&1
        for c in "${CONTAINERS[@]}" "$DISCORD_CONTAINER"; do podman rm -f "$c" >/dev/null 2>&1; done
        podman volume rm -f "${E2E_VOLUMES[@]}" >/dev/null 2>&1
        podman network rm -f botticelli-net >/dev/null 2>&1
        echo "removed containers ${CONTAINERS[*]} $DISCORD_CONTAINER, volumes ${E2E_VOLUMES[*]}, network botticelli-net"
    fi
    echo
    echo "=== e2e timings"
    printf '%s\n' "${TIMINGS[@]}"
    printf '%5ss  total\n' $((SECONDS - T0))
    echo "outputs: $LOG_DIR"
    if [ $status -eq 0 ]; then echo "=== e2e PASSED"; else echo "=== e2e FAILED"; fi
    exit $status
}
trap cleanup EXIT

# ------------------------------------------------------------------------------- 0. prereqs
step "0. prerequisites"
for cmd in podman podman-compose python3 curl; do
    command -v "$cmd" >/dev/null || die "$cmd is not installed (scripts/install-deps.sh installs it)"
done
# Fails in seconds, naming what to install or set, when this host cannot run the stack
# (network backend not netavark, no aardvark-dns, no DNS between containers, a runtime that
# cannot start containers): before any image is built.
scripts/check-container-host.sh || die "this host cannot run the stack (see above; scripts/install-deps.sh installs what it needs)"
for c in "${CONTAINERS[@]}" botticelli-grafana "$DISCORD_CONTAINER"; do
    if podman container exists "$c"; then
        die "container $c exists: a stack is running (just stop-observability), or remove it: podman rm -f $c"
    fi
done
for port in "$BOT_PORT" "$PROM_PORT" 4317 4318 "$UI_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is in use on this host (docs/TROUBLESHOOTING.md#ports-already-in-use); set BOT_SERVER_PORT / PROMETHEUS_PORT / JAEGER_*_PORT"
    fi
done
echo "log dir: $LOG_DIR"

# --------------------------------------------------------------------------- 1. base images
step "1. base images (pulled; local localhost/ stand-ins only where the pull fails)"
official_images() { podman images --format '{{.Repository}}:{{.Tag}}' | grep '^docker\.io/library/' | sort || true; }
official_before="$(official_images)"
base_env="$(containers/build-base-images.sh --print-env)" || die "containers/build-base-images.sh failed"
eval "$base_env"
export RUST_IMAGE RUNTIME_IMAGE
echo "  build with: RUNTIME_IMAGE=$RUNTIME_IMAGE RUST_IMAGE=$RUST_IMAGE"
for img in "$RUNTIME_IMAGE" "$RUST_IMAGE"; do
    case "$img" in
        localhost/botticelli-*) echo "  $img: local stand-in (the official image could not be pulled)" ;;
        docker.io/library/*) echo "  $img: the official image" ;;
        *) die "unexpected base image name $img" ;;
    esac
done
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'debian|rust|prometheus' | sed 's/^/  /' || true
# Older versions of the script tagged the stand-ins with the official names. Put such tags back
# (only where the official names are free and the stand-ins are local) and check that the script
# takes them off again, keeping the same images under the localhost/ names.
official_debian=docker.io/library/debian:bookworm-slim
official_rust=docker.io/library/rust:1.95-slim-bookworm
if [[ "$RUNTIME_IMAGE $RUST_IMAGE" == "localhost/botticelli-debian:bookworm-slim localhost/botticelli-rust:1.95-slim-bookworm" ]] \
    && ! podman image exists "$official_debian" && ! podman image exists "$official_rust"; then
    podman tag "$RUNTIME_IMAGE" "$official_debian"
    podman tag "$RUST_IMAGE" "$official_rust"
    # (RUNTIME_IMAGE/RUST_IMAGE are now the stand-ins' names: the script is to start again from
    # its defaults, the official names.)
    again="$(env -u RUNTIME_IMAGE -u RUST_IMAGE containers/build-base-images.sh --print-env debian rust 2>"$LOG_DIR/base-images-rename.log")" \
        || { cat "$LOG_DIR/base-images-rename.log"; die "build-base-images.sh failed on old official-named stand-ins"; }
    grep 'old local stand-in' "$LOG_DIR/base-images-rename.log" | sed 's/^/  /'
    [ "$again" = "$base_env" ] || die "with old official-named stand-ins the script chose: $again"
    if podman image exists "$official_debian" || podman image exists "$official_rust"; then
        die "build-base-images.sh left an old stand-in under an official name"
    fi
    echo "  old stand-ins tagged $official_debian / $official_rust: names removed, images kept under localhost/"
fi

# ------------------------------------------------------------------------ 2. project images
step "2a. bot-server image (Containerfile, target runtime, --format docker)"
REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then REVISION="$REVISION-dirty"; fi
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | awk 'NR == 1')"
BUILD_ARGS=(--build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE"
    --build-arg "GIT_REVISION=$REVISION" --build-arg "VERSION=$VERSION")
[ -n "${E2E_RELEASE_LTO:-}" ] && BUILD_ARGS+=(--build-arg "RELEASE_LTO=$E2E_RELEASE_LTO")
[ -n "${E2E_RELEASE_CODEGEN_UNITS:-}" ] && BUILD_ARGS+=(--build-arg "RELEASE_CODEGEN_UNITS=$E2E_RELEASE_CODEGEN_UNITS")
podman build --format docker --target runtime "${BUILD_ARGS[@]}" -t "$BOT_IMAGE" -f Containerfile . \
    >"$LOG_DIR/build-bot-server.log" 2>&1 || { tail -40 "$LOG_DIR/build-bot-server.log"; die "bot-server image build failed"; }
echo "steps from the layer cache: $(grep -c 'Using cache' "$LOG_DIR/build-bot-server.log" || true)"
podman image inspect "$BOT_IMAGE" --format 'image {{.Id}} size {{.Size}} bytes; user {{.Config.User}}; entrypoint {{.Config.Entrypoint}} cmd {{.Config.Cmd}}'
podman images "$BOT_IMAGE" --format 'size: {{.Size}}'
podman image inspect "$BOT_IMAGE" --format '{{json .Config.Labels}}' | python3 -c '
import json,sys; l=json.load(sys.stdin)
for k in ("org.opencontainers.image.version","org.opencontainers.image.revision","org.opencontainers.image.source"):
    assert l.get(k), f"label {k} missing"; print(f"label {k}={l[k]}")'
HC="$(podman image inspect "$BOT_IMAGE" --format '{{json .Config.Healthcheck}}')"
echo "HEALTHCHECK in image: $HC"
[[ "$HC" == *bot-server* ]] || die "the image has no HEALTHCHECK (built without --format docker?)"
[[ "$HC" == *'"CMD",'* ]] || die "the HEALTHCHECK is not exec form (it would need a shell): $HC"
# The runtime image carries no troubleshooting tools (they are in the debug image).
for tool in /usr/bin/bash /bin/bash /usr/bin/curl /usr/bin/ping /bin/ping /usr/bin/wget /usr/bin/nc; do
    if podman run --rm --no-healthcheck --entrypoint /usr/bin/test "$BOT_IMAGE" -e "$tool"; then
        die "the runtime image contains $tool"
    fi
done
echo "  runtime image: no bash, curl, ping, wget, nc (checked with test -e in the image)"

step "2b. debug image (target debug: runtime binary + bash, curl, ping, nc, ps)"
podman build --format docker --target debug "${BUILD_ARGS[@]}" -t "$DEBUG_IMAGE" -f Containerfile . \
    >"$LOG_DIR/build-debug.log" 2>&1 || { tail -40 "$LOG_DIR/build-debug.log"; die "debug image build failed"; }
podman run --rm "$DEBUG_IMAGE" bash -c 'echo "  debug image: bash $BASH_VERSION, $(curl --version | head -1 | cut -d" " -f1-2), $(command -v ping nc ps | tr "\n" " ")$(bot-server --version)"'

step "2c. OTLP receiver stand-in image (target otlp-receiver-standin; not Jaeger)"
podman build --format docker --target otlp-receiver-standin "${BUILD_ARGS[@]}" -t "$STANDIN_IMAGE" -f Containerfile . \
    >"$LOG_DIR/build-standin.log" 2>&1 || { tail -40 "$LOG_DIR/build-standin.log"; die "stand-in image build failed"; }
podman images "$STANDIN_IMAGE" --format 'size: {{.Size}}'

step "2d. Discord stand-in image (target discord-standin; not Discord)"
podman build --format docker --target discord-standin "${BUILD_ARGS[@]}" -t "$DISCORD_STANDIN_IMAGE" -f Containerfile . \
    >"$LOG_DIR/build-discord-standin.log" 2>&1 || { tail -40 "$LOG_DIR/build-discord-standin.log"; die "Discord stand-in image build failed"; }
podman images "$DISCORD_STANDIN_IMAGE" --format 'size: {{.Size}}'

step "2e. no official name was tagged by this run; stack config checks"
official_after="$(official_images)"
new_official="$(comm -13 <(echo "$official_before") <(echo "$official_after") | sed '/^$/d')"
[ -z "$new_official" ] || [[ "$RUNTIME_IMAGE $RUST_IMAGE" == *docker.io/library/* ]] \
    || die "this run created docker.io/library/* images although it used local stand-ins: $new_official"
for img in $official_after; do
    labels="$(podman image inspect --format '{{json .Labels}}' "$img")"
    [[ "$labels" != *io.botticelli.stand-in* && "$labels" != *'local build from the host toolchain'* ]] \
        || die "$img is a local stand-in under an official name"
done
echo "  docker.io/library/* images before: ${official_before:-none}; after: ${official_after:-none}"
python3 scripts/check-stack-config.py
python3 scripts/check-stack-config.py --self-test | tail -1

# ----------------------------------------------------------------------------- 3. promtool
step "3. alert rules: promtool check rules / test rules, promtool check config (in the Prometheus image)"
podman run --rm --entrypoint promtool -v "$ROOT/prometheus:/etc/prometheus/rules:ro,Z" \
    -v "$ROOT/prometheus.yml:/etc/prometheus/prometheus.yml:ro,Z" "$PROMETHEUS_IMAGE" \
    check config /etc/prometheus/prometheus.yml
podman run --rm --entrypoint promtool -v "$ROOT/prometheus:/rules:ro,Z" -w /rules "$PROMETHEUS_IMAGE" \
    test rules alerts.test.yml

# ------------------------------------------------------------------------------ 4. stack up
step "4. podman-compose up -d ${SERVICES[*]} (jaeger = the OTLP receiver stand-in)"
echo "grafana: NOT started: no Grafana image can be built on this host (no registry; Grafana is in no"
echo "  Debian/PyPI/crates.io package). Its dashboards are proven by step C instead."
# The stack's secret files, in a directory of the test's own (a user's secrets/ is never
# touched): a Discord token in its file, to show it reaches the bot-server as a file only.
export BOTTICELLI_SECRETS_DIR="$LOG_DIR/secrets"
scripts/init-secrets.sh
E2E_TOKEN="e2e-discord-token-$RANDOM$RANDOM$RANDOM"
printf '%s\n' "$E2E_TOKEN" >"$BOTTICELLI_SECRETS_DIR/discord_token"
STACK_STARTED=1
"${COMPOSE[@]}" up -d "${SERVICES[@]}" >"$LOG_DIR/up.log" 2>&1 || { cat "$LOG_DIR/up.log"; die "podman-compose up failed"; }
podman ps --filter name=botticelli- --format '{{.Names}}  {{.Status}}  {{.Ports}}'

# ---------------------------------------------------------------------------- A. startup
step "A. stack startup: running on botticelli-net, healthy, non-root"
for c in "${CONTAINERS[@]}"; do
    state="$(podman inspect -f '{{.State.Status}}' "$c")"
    nets="$(podman inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c")"
    echo "  $c: $state, networks: $nets"
    [ "$state" = running ] || die "$c is $state"
    [[ " $nets " == *" botticelli-net "* ]] || die "$c is not on botticelli-net"
    podman port "$c" >"$LOG_DIR/port-$c.txt"
    sed "s/^/  podman port $c: /" "$LOG_DIR/port-$c.txt"
    [ -s "$LOG_DIR/port-$c.txt" ] || die "$c publishes no port"
    if grep -v -- '-> 127\.0\.0\.1:' "$LOG_DIR/port-$c.txt"; then
        die "$c publishes a port on another address than 127.0.0.1 (BOTTICELLI_BIND_ADDRESS)"
    fi
done
wait_healthy botticelli-bot-server 90
echo "  podman healthcheck run botticelli-bot-server: exit 0 ($(tr '\n' ' ' <"$LOG_DIR/healthcheck.txt"))"
podman inspect -f '  health status: {{.State.Health.Status}}' botticelli-bot-server 2>/dev/null \
    || podman inspect -f '  health status: {{.State.Healthcheck.Status}}' botticelli-bot-server
uid="$(podman exec botticelli-bot-server id -u)"
echo "  podman exec botticelli-bot-server id: $(podman exec botticelli-bot-server id)"
[ "$uid" = 1000 ] || die "bot-server runs as uid $uid, not 1000"
pid1="$(podman exec botticelli-bot-server cat /proc/1/cmdline | tr '\0' ' ')"
echo "  PID 1 in the container: $pid1"
[[ "$pid1" == /usr/local/bin/bot-server* ]] || die "PID 1 is not the bot-server: $pid1"
podman top botticelli-bot-server user pid comm | sed 's/^/  /'
stop_timeout="$(podman inspect -f '{{.Config.StopTimeout}}' botticelli-bot-server)"
echo "  stop timeout: ${stop_timeout}s (containers/containers.conf)"
podman exec botticelli-bot-server ls -ln /var/lib/bot-server | sed 's/^/  /'
# Credentials come as compose secrets: the file is mounted, its value is in no environment, and
# a value given both ways is refused naming both variables.
podman exec botticelli-bot-server test -r /run/secrets/discord_token \
    || die "the bot-server cannot read /run/secrets/discord_token"
podman inspect botticelli-bot-server >"$LOG_DIR/inspect-bot-server.json"
! grep -qF "$E2E_TOKEN" "$LOG_DIR/inspect-bot-server.json" || die "the Discord token is in podman inspect"
if podman exec -e DISCORD_TOKEN=also-in-env botticelli-bot-server bot-server check --offline \
    >"$LOG_DIR/both-set.txt" 2>&1; then
    die "DISCORD_TOKEN next to a filled DISCORD_TOKEN_FILE was accepted"
fi
grep -q "both DISCORD_TOKEN and DISCORD_TOKEN_FILE are set" "$LOG_DIR/both-set.txt" \
    || die "no both-set error: $(cat "$LOG_DIR/both-set.txt")"
! grep -qF "$E2E_TOKEN" "$LOG_DIR/both-set.txt" || die "the Discord token is in an error message"
echo "  /run/secrets/discord_token readable by uid 1000; the token is not in podman inspect; DISCORD_TOKEN set as well is refused naming both"

# ------------------------------------------------------------------------- B. metrics flow
step "B. metrics flow: Prometheus scrapes bot-server:9090; run counters match"
"${CHECK[@]}" target --prom "$PROM" --timeout 90
curl -fsS "$BOT/metrics" -o "$LOG_DIR/bot-metrics-1.txt"
grep -E '^botticelli_build_info' "$LOG_DIR/bot-metrics-1.txt"
"${CHECK[@]}" runs --prom "$PROM" --bot "$BOT/metrics" --min-runs 10 --min-exact 3 --timeout 120

# ----------------------------------------------------------------------------- C. PromQL
step "C. every PromQL expression of dashboards, datasources and alert rules"
# rate()/increase() windows need two scrapes inside them; the 5m/10m ones also need the
# failing actors' errors to be scraped twice. Wait until the stack has run ~75 s.
scrapes() {
    curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=count_over_time(up{job="botticelli-bot-server"}[10m])' 2>/dev/null \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)' 2>/dev/null \
        || echo 0
}
deadline=$((SECONDS + 180))
until [ "$(scrapes)" -ge 7 ]; do
    [ $SECONDS -lt $deadline ] || die "Prometheus has not scraped the bot-server 7 times within 180s"
    sleep 3
done
echo "  Prometheus has $(scrapes) scrapes of the bot-server in the last 10 minutes"
"${CHECK[@]}" promql --prom "$PROM" --dashboards grafana/dashboards \
    --datasources grafana/provisioning/datasources/datasources.yml --rules-file prometheus/alerts.yml \
    --allow-empty 'botticelli_llm_retries_total=counted only for calls that succeed after a retry; nothing here answers after failing once (offline provider, unreachable provider)' \
    | tee "$LOG_DIR/promql.txt"
"${CHECK[@]}" alert --prom "$PROM" --name BotActorCircuitOpen --labels actor=e2e_unreachable_llm --state firing --timeout 180

# ---------------------------------------------------------------------------------- D. traces
step "D. traces flow: bot-server -> jaeger:4317 (OTLP receiver stand-in, not Jaeger)"
podman exec botticelli-bot-server printenv OTEL_TRACES_EXPORTER OTEL_EXPORTER_OTLP_ENDPOINT | paste -sd' ' | sed 's/^/  bot-server env: /'
"${CHECK[@]}" spans --url "$SPANS" --timeout 90

# ------------------------------------------------------------------------- E. stop / start
step "E. podman stop: exit 0 before the stop timeout; state survives podman start"
podman exec botticelli-bot-server bot-server posts list --limit 10000 >"$LOG_DIR/posts-before.txt" 2>>"$LOG_DIR/exec.log"
echo "  posts before stop: $(grep -cE '^ +[0-9]+ ' "$LOG_DIR/posts-before.txt")"
t_stop=$(date +%s.%N)
podman stop botticelli-bot-server >/dev/null 2>"$LOG_DIR/podman-stop.log"
stop_s=$(python3 -c "import time; print(f'{time.time() - $t_stop:.1f}')")
exit_code="$(podman inspect -f '{{.State.ExitCode}}' botticelli-bot-server)"
echo "  podman stop took ${stop_s}s (stop timeout ${stop_timeout}s); ExitCode=$exit_code"
[ "$exit_code" = 0 ] || die "bot-server exited $exit_code on podman stop (137 = SIGKILL)"
python3 -c "import sys; sys.exit(0 if $stop_s < $stop_timeout else 1)" || die "stop took ${stop_s}s: the stop timeout was reached"
podman logs botticelli-bot-server >"$LOG_DIR/bot-server-before-restart.log" 2>&1
grep -E 'SIGTERM received|bot-server stopped' "$LOG_DIR/bot-server-before-restart.log" | sed 's/^/  log: /' | cut -c1-160 || true
grep -q 'SIGTERM received' "$LOG_DIR/bot-server-before-restart.log" || die "no 'SIGTERM received' in the logs"
grep -q 'bot-server stopped' "$LOG_DIR/bot-server-before-restart.log" || die "no 'bot-server stopped' in the logs"
! grep -qF "$E2E_TOKEN" "$LOG_DIR/bot-server-before-restart.log" || die "the Discord token is in the bot-server's logs"
vol="$(podman volume inspect -f '{{.Mountpoint}}' botticelli-e2e-bot-server-state)"
runs_before=""
if command -v sqlite3 >/dev/null; then
    runs_before="$(sqlite3 -readonly "file:$vol/bot-server.db?mode=ro" 'SELECT COUNT(*), MAX(id) FROM runs;')"
    echo "  state volume $vol: runs (count|max id) = $runs_before; posts by status: $(sqlite3 -readonly "file:$vol/bot-server.db?mode=ro" "SELECT group_concat(status || '=' || n, ' ') FROM (SELECT status, COUNT(*) n FROM posts GROUP BY status);")"
else
    echo "  (sqlite3 not installed: run ids are compared from the logs only)"
fi
max_run_before="$(sed -n 's/.*run started .* run=\([0-9]*\).*/\1/p' "$LOG_DIR/bot-server-before-restart.log" | sort -n | awk 'END {print}')"
podman start botticelli-bot-server >/dev/null 2>"$LOG_DIR/podman-start.log"
wait_healthy botticelli-bot-server 90
podman exec botticelli-bot-server bot-server posts list --limit 10000 >"$LOG_DIR/posts-after.txt" 2>>"$LOG_DIR/exec.log"
posts_kept "$LOG_DIR/posts-before.txt" "$LOG_DIR/posts-after.txt" stop/start
# The first run after the restart continues the run ids (a fresh database would start at 1).
deadline=$((SECONDS + 30))
first_after=""
while [ -z "$first_after" ] && [ $SECONDS -lt $deadline ]; do
    sleep 2
    podman logs --since "$(podman inspect -f '{{.State.StartedAt}}' botticelli-bot-server | cut -d. -f1 | tr ' ' 'T')" \
        botticelli-bot-server >"$LOG_DIR/bot-server-after-restart.log" 2>&1 || true
    first_after="$(sed -n 's/.*run started .* run=\([0-9]*\).*/\1/p' "$LOG_DIR/bot-server-after-restart.log" | awk 'NR == 1')"
done
echo "  last run id before stop: $max_run_before; first run id after start: ${first_after:-none}"
[ -n "$first_after" ] && [ "$first_after" -gt "${max_run_before:-0}" ] || die "run ids did not continue after the restart"
grep -E 'interrupted|recovered' "$LOG_DIR/bot-server-after-restart.log" | awk 'NR == 1' | sed 's/^/  log: /' | cut -c1-160 || true

# ---------------------------------------------------------------- F. troubleshooting docs
step "F. network troubleshooting commands (docs/TROUBLESHOOTING.md) print what the docs say"
wait_dns botticelli-prometheus bot-server
wait_dns botticelli-bot-server jaeger
f=$(run_doc network-ls podman network ls);                                 expect "podman network ls" "$f" '^[0-9a-f]+ +botticelli-net +bridge'
f=$(run_doc network-inspect podman network inspect botticelli-net);        expect "podman network inspect botticelli-net" "$f" '"dns_enabled": true'
expect "podman network inspect botticelli-net (subnet)" "$f" '"subnet": "[0-9.]+/[0-9]+"'
f=$(run_doc prom-curl podman exec botticelli-prometheus curl bot-server:9090/metrics)
# Without -s (the seed's exact command) curl's progress meter shares the captured stream
# with the body, so the first HELP line need not start a line.
expect "podman exec botticelli-prometheus curl bot-server:9090/metrics" "$f" '# HELP botticelli_actor_runs_total '
f=$(run_doc prom-ping podman exec botticelli-prometheus ping -c 1 bot-server)
expect "podman exec botticelli-prometheus ping -c 1 bot-server" "$f" '1 packets transmitted, 1 received'
f=$(run_doc bot-curl-absent podman exec botticelli-bot-server curl -v http://jaeger:4317)
expect "podman exec botticelli-bot-server curl ... fails: no curl in the runtime image" "$f" 'executable file not found|no such file'
f=$(run_doc debug-curl-jaeger podman run --rm --network botticelli-net "$DEBUG_IMAGE" curl -v http://jaeger:4317)
expect "podman run --rm --network botticelli-net <debug image> curl -v http://jaeger:4317" "$f" 'Connected to jaeger \([0-9.]+\) port 4317'
expect "  ... then (gRPC port, HTTP/1.1 request)" "$f" 'Received HTTP/0.9 when not allowed'
f=$(run_doc debug-curl-jaeger-h2 just --justfile "$ROOT/justfile" debug curl -sv --http2-prior-knowledge -o /dev/null http://jaeger:4317)
expect "just debug curl -sv --http2-prior-knowledge -o /dev/null http://jaeger:4317" "$f" '^< HTTP/2 200'
expect "  ... a gRPC server answers" "$f" '^< grpc-status: 12'
f=$(run_doc debug-ping just --justfile "$ROOT/justfile" debug ping -c 1 bot-server)
expect "just debug ping -c 1 bot-server" "$f" '1 packets transmitted, 1 received'
f=$(run_doc debug-metrics just --justfile "$ROOT/justfile" debug curl -s bot-server:9090/metrics)
expect "just debug curl -s bot-server:9090/metrics" "$f" '^# HELP botticelli_actor_runs_total '
f=$(run_doc bot-getent podman exec botticelli-bot-server getent hosts jaeger prometheus)
expect "podman exec botticelli-bot-server getent hosts jaeger prometheus" "$f" '^[0-9.]+ +jaeger'
f=$(run_doc targets curl -s "$PROM/api/v1/targets")
expect "curl localhost:$PROM_PORT/api/v1/targets" "$f" '"scrapeUrl":"http://bot-server:9090/metrics"'
f=$(run_doc check-metrics curl -s "$BOT/metrics")
expect "curl localhost:$BOT_PORT/metrics (just check-metrics)" "$f" '^# HELP botticelli_'
f=$(run_doc readyz curl -s "$BOT/readyz")
expect "curl localhost:$BOT_PORT/readyz" "$f" '"status":"ready"'
f=$(run_doc healthcheck podman healthcheck run botticelli-bot-server)
expect_ok "podman healthcheck run botticelli-bot-server" "$f"
f=$(run_doc bot-healthcheck podman exec botticelli-bot-server bot-server healthcheck)
expect "podman exec botticelli-bot-server bot-server healthcheck" "$f" '"scheduler":"ok"'
f=$(run_doc image-healthcheck podman image inspect --format '{{json .Config.Healthcheck}}' "$BOT_IMAGE")
expect "podman image inspect --format '{{json .Config.Healthcheck}}'" "$f" '"Test":\["CMD","/usr/local/bin/bot-server","healthcheck"\]'
f=$(run_doc bash-absent podman exec botticelli-bot-server /bin/bash)
expect "podman exec botticelli-bot-server /bin/bash fails: no bash in the runtime image" "$f" 'executable file not found|no such file'
# just shell-bot-server: the same podman run, interactive; here with a command instead of a tty.
f=$(run_doc debug-bash podman run --rm --network botticelli-net "$DEBUG_IMAGE" bash -c 'echo "$BASH_VERSION $(id -un) $(getent hosts bot-server | cut -d" " -f1)"')
expect "podman run --rm --network botticelli-net <debug image> bash (just shell-bot-server)" "$f" '^5\.[0-9.()a-z-]+ botticelli [0-9.]+$'
f=$(run_doc stop-timeout podman inspect -f '{{.Config.StopTimeout}}' botticelli-bot-server)
expect "podman inspect -f '{{.Config.StopTimeout}}' botticelli-bot-server" "$f" '^30$'
f=$(run_doc host-containers-internal podman exec botticelli-bot-server getent hosts host.containers.internal)
expect "getent hosts host.containers.internal (from a container)" "$f" '^[0-9.]+ +host\.containers\.internal'

step "F2. DNS fix procedure: compose down; podman network rm botticelli-net; compose up -d (state kept)"
f=$(run_doc compose-down "${COMPOSE[@]}" down)
expect "podman-compose down (also removes the network)" "$f" '^botticelli-net$'
f=$(run_doc network-rm podman network rm botticelli-net)
# podman-compose 1.6 already removed it; older versions (and leftovers) leave it to this step.
expect "podman network rm botticelli-net" "$f" '^botticelli-net$|unable to find network with name or ID botticelli-net: network not found'
podman network exists botticelli-net && die "botticelli-net still exists"
"${COMPOSE[@]}" up -d "${SERVICES[@]}" >"$LOG_DIR/dns-up.log" 2>&1 || { cat "$LOG_DIR/dns-up.log"; die "up after network rm failed"; }
wait_healthy botticelli-bot-server 90
wait_dns botticelli-bot-server jaeger
f=$(run_doc bot-getent-2 podman exec botticelli-bot-server getent hosts jaeger)
expect "getent hosts jaeger after recreating the network" "$f" '^[0-9.]+ +jaeger'
podman exec botticelli-bot-server bot-server posts list --limit 10000 >"$LOG_DIR/posts-after-recreate.txt" 2>>"$LOG_DIR/exec.log"
posts_kept "$LOG_DIR/posts-before.txt" "$LOG_DIR/posts-after-recreate.txt" down/up
"${CHECK[@]}" target --prom "$PROM" --timeout 60

# --------------------------------------------------------------- G. stop while Discord hangs
step "G. podman stop while Discord hangs: exit 0 within the shutdown budget, sends cut and set aside"
podman run -d --name "$DISCORD_CONTAINER" --network botticelli-net -e DISCORD_STANDIN_MODE=hang \
    "$DISCORD_STANDIN_IMAGE" >/dev/null
# The bot-server recreated (podman-compose sees the changed mount) with the hanging-Discord
# config: two `immediate` actors send at once, to a channel and to a webhook.
"${COMPOSE_HANG[@]}" up -d --no-deps bot-server >"$LOG_DIR/hang-up.log" 2>&1 \
    || { cat "$LOG_DIR/hang-up.log"; die "podman-compose up with compose.hang.yml failed"; }
podman inspect -f '  bot-server recreated: {{.State.Status}}, mounts: {{range .Mounts}}{{.Destination}} {{end}}' botticelli-bot-server
wait_dns botticelli-bot-server "$DISCORD_CONTAINER"
deadline=$((SECONDS + 120))
until podman logs "$DISCORD_CONTAINER" 2>&1 | grep -qE '^requests received: ([2-9]|[1-9][0-9]+)$'; do
    [ $SECONDS -lt $deadline ] || { podman logs "$DISCORD_CONTAINER"; die "the two sends did not reach the Discord stand-in within 120s"; }
    sleep 1
done
echo "  Discord stand-in: $(podman logs "$DISCORD_CONTAINER" 2>&1 | grep '^requests received' | awk 'END {print}') (none answered)"
hang_timeout="$(podman inspect -f '{{.Config.StopTimeout}}' botticelli-bot-server)"
budget=25   # shutdown_grace_seconds 15 (scripts/e2e/actor_server.hang.toml) + 10 s
t_stop=$(date +%s.%N)
podman stop botticelli-bot-server >/dev/null 2>"$LOG_DIR/podman-stop-hang.log"
hang_stop_s=$(python3 -c "import time; print(f'{time.time() - $t_stop:.1f}')")
hang_exit="$(podman inspect -f '{{.State.ExitCode}}' botticelli-bot-server)"
echo "  podman stop with Discord hanging took ${hang_stop_s}s (budget ${budget}s, stop timeout ${hang_timeout}s); ExitCode=$hang_exit"
[ "$hang_exit" = 0 ] || die "bot-server exited $hang_exit on podman stop with Discord hanging (137 = SIGKILL)"
python3 -c "import sys; sys.exit(0 if $hang_stop_s < $hang_timeout else 1)" || die "stop took ${hang_stop_s}s: the stop timeout was reached"
python3 -c "import sys; sys.exit(0 if $hang_stop_s <= $budget + 1 else 1)" || die "stop took ${hang_stop_s}s: over the shutdown budget (${budget}s)"
podman logs botticelli-bot-server >"$LOG_DIR/bot-server-hang.log" 2>&1
grep -E 'SIGTERM received|shutdown budget|grace period over|bot-server stopped' "$LOG_DIR/bot-server-hang.log" | sed 's/^/  log: /' | cut -c1-170
grep -q 'cutting the Discord requests still in flight' "$LOG_DIR/bot-server-hang.log" || die "no cut Discord request in the logs (did Discord hang?)"
grep -q 'bot-server stopped' "$LOG_DIR/bot-server-hang.log" || die "no 'bot-server stopped' in the logs"
for secret in "$E2E_TOKEN" e2e-hang-webhook-token; do
    ! grep -qF "$secret" "$LOG_DIR/bot-server-hang.log" || die "a token is in the bot-server's logs"
done
# What the stop left, read by `bot-server posts list` from the state volume (the image's own
# config has the same state_dir).
podman run --rm --no-healthcheck -v botticelli-e2e-bot-server-state:/var/lib/bot-server "$BOT_IMAGE" \
    posts list --limit 10000 >"$LOG_DIR/posts-after-hang.txt" 2>&1 || { cat "$LOG_DIR/posts-after-hang.txt"; die "posts list failed"; }
grep -A1 -E 'discord:123456789012345678|webhook:4242' "$LOG_DIR/posts-after-hang.txt" | sed 's/^/  /' | cut -c1-200
grep -qE '^ +[0-9]+  sending +discord:123456789012345678 ' "$LOG_DIR/posts-after-hang.txt" \
    || die "the channel post cut at shutdown is not left sending (to be re-sent with its nonce)"
grep -A1 -E '^ +[0-9]+  failed +webhook:4242 ' "$LOG_DIR/posts-after-hang.txt" | grep -q 'Discord may have posted the message' \
    || die "the webhook post cut at shutdown is not set aside as failed with 'Discord may have posted the message'"
podman rm -f "$DISCORD_CONTAINER" >/dev/null

finish_step
