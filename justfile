# bot-server: development, container image and observability stack.
# `just --list` shows every recipe. Container recipes call podman with
# CONTAINERS_CONF=containers/containers.conf (runc + explicit ulimits + a 30 s stop timeout;
# see containers/containers.conf). To use your own Podman settings instead: CONTAINERS_CONF= just ...

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export CONTAINERS_CONF := env_var_or_default("CONTAINERS_CONF", justfile_directory() / "containers/containers.conf")
# podman-compose builds (and ours) keep HEALTHCHECK: the OCI image format drops it.
export BUILDAH_FORMAT := "docker"
export PODMAN_COMPOSE_WARNING_LOGS := "false"

compose := "podman-compose -f docker-compose.observability.yml"
image := env_var_or_default("BOT_SERVER_IMAGE", "localhost/botticelli-bot-server:latest")
prometheus_image := env_var_or_default("PROMETHEUS_IMAGE", "localhost/botticelli-prometheus:2.42.0")
standin_image := "localhost/botticelli-otlp-receiver-standin:latest"
debug_image := env_var_or_default("BOT_SERVER_DEBUG_IMAGE", "localhost/botticelli-bot-server:debug")

# List the recipes
default:
    @just --list

# ---------------------------------------------------------------------------------------------
# Development

# Install every package the tests and the container stack need, by name (Debian/Ubuntu; root or sudo)
install-deps *args:
    scripts/install-deps.sh {{args}}

# Build the release binary on the host
build:
    cargo build --release --locked

# Run the offline demo on the host (admin on 127.0.0.1:9090)
run:
    cargo run --release --locked

# Run the tests (cargo test), the alert rule tests, the stack config checks, and check formatting and lints
test: test-rules check-stack-config
    cargo fmt --all -- --check
    cargo clippy --locked --all-targets -- -D warnings
    cargo test --locked

# Run the benchmarks: load at 100/1,000/10,000 actors, idle, start-up, micro-benchmarks (docs/PERFORMANCE.md)
bench:
    scripts/bench.sh

# Check the alert rules and unit-test them with promtool (host promtool, Debian's prometheus package)
test-rules:
    promtool check rules prometheus/alerts.yml
    promtool test rules prometheus/alerts.test.yml

# Check the stack's config statically (ports on 127.0.0.1, no default passwords, Jaeger 2 wiring, dashboards use $job and ${DS_...}, runbook_url), its self-test, and amtool check-config
check-stack-config:
    python3 scripts/check-stack-config.py
    python3 scripts/check-stack-config.py --self-test
    scripts/check-alertmanager-config.sh

# Exactly what CI runs: cargo fmt/clippy/test, then the container end-to-end test
ci:
    .ci/run

# ---------------------------------------------------------------------------------------------
# Container image and stack

# Check in seconds that this host can run the stack (netavark + aardvark-dns, runtime, DNS between containers)
check-host:
    scripts/check-container-host.sh

# Test the host check: it fails naming aardvark-dns when the backend is forced to CNI, passes otherwise
test-host-check:
    scripts/test-check-container-host.sh

# Pull the base images (debian, rust), or build local localhost/botticelli-* stand-ins where pulls fail; build prometheus
build-base-images *args:
    containers/build-base-images.sh {{args}}

# Build the bot-server container image (Containerfile target runtime; --format docker keeps HEALTHCHECK)
build-container: (_build-target "runtime" image)
    @podman images {{image}} --format '✅ {{{{.Repository}}:{{{{.Tag}} {{{{.Size}}'

# Build the troubleshooting image (Containerfile target debug: the runtime's binary plus bash, curl, ping, nc, ps)
build-debug: (_build-target "debug" debug_image)
    @podman images {{debug_image}} --format '✅ {{{{.Repository}}:{{{{.Tag}} {{{{.Size}}'

# podman build --target TARGET -t TAG, with the base images containers/build-base-images.sh chose
_build-target target tag:
    #!/usr/bin/env bash
    set -euo pipefail
    echo "🐋 Building {{tag}} (Containerfile, target {{target}})..."
    base="$(containers/build-base-images.sh --print-env debian rust)"
    eval "$base"
    podman build --format docker --target {{target}} \
        --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
        --build-arg GIT_REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$([ -z "$(git status --porcelain 2>/dev/null)" ] || echo -dirty)" \
        --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" \
        --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -t {{tag}} -f Containerfile .

# Build the stack's Prometheus image (Debian's prometheus + curl + ping), FROM the debian image build-base-images chose
build-prometheus:
    containers/build-base-images.sh --force prometheus

# Build the OTLP receiver stand-in image (NOT Jaeger: a test receiver that lists spans on :16686/api/spans)
build-otlp-standin:
    podman build --format docker --target otlp-receiver-standin -t {{standin_image}} -f Containerfile .

# Create the secret files the stack reads (secrets/grafana_admin_password: random; secrets/discord_webhook_url: empty), keeping existing ones
init-secrets:
    scripts/init-secrets.sh

# Start the full observability stack with the bot-server (builds missing images first; needs secrets/, see init-secrets)
start-observability:
    @scripts/check-container-host.sh
    @scripts/init-secrets.sh
    @echo "🚀 Starting observability stack with bot-server..."
    @podman image exists {{image}} || just build-container
    @podman image exists {{prometheus_image}} || just build-prometheus
    {{compose}} up -d
    @just urls

# Start the stack with the OTLP receiver stand-in as `jaeger`, without Grafana and Alertmanager (hosts without a registry)
start-observability-offline:
    @scripts/check-container-host.sh
    @scripts/init-secrets.sh
    @echo "🚀 Starting bot-server, Prometheus and the OTLP receiver stand-in (no Grafana, not Jaeger)..."
    @podman image exists {{image}} || just build-container
    @podman image exists {{prometheus_image}} || just build-prometheus
    @podman image exists {{standin_image}} || just build-otlp-standin
    JAEGER_IMAGE={{standin_image}} {{compose}} up -d bot-server prometheus jaeger
    @just urls
    @echo "   (Grafana and Alertmanager not started; :16686 is the stand-in: curl -s localhost:16686/api/spans)"

# Stop the observability stack (containers removed; the named volumes keep the state)
stop-observability:
    @echo "🛑 Stopping observability stack..."
    {{compose}} down

# Show the stack's containers and their health
status:
    podman ps -a --filter name=botticelli- --format 'table {{{{.Names}}\t{{{{.Status}}\t{{{{.Ports}}'
    @podman healthcheck run botticelli-bot-server && echo "bot-server: healthy" || echo "bot-server: NOT healthy"

# Print the stack's URLs
urls:
    @echo "✅ Stack running:"
    @echo "   📊 Grafana: http://localhost:3000"
    @echo "   📈 Prometheus: http://localhost:9091"
    @echo "   🔍 Jaeger: http://localhost:16686"
    @echo "   🚨 Alertmanager: http://localhost:9093"
    @echo "   🤖 Bot metrics: http://localhost:9090/metrics"
    @echo "   (published on ${BOTTICELLI_BIND_ADDRESS:-127.0.0.1} only: BOTTICELLI_BIND_ADDRESS in .env)"

# Follow the bot-server's logs
logs-bot-server:
    podman logs -f botticelli-bot-server

# Rebuild the bot-server image and recreate its container (the state volume is kept)
restart-bot-server:
    @echo "🔄 Rebuilding and restarting bot-server..."
    just build-container
    {{compose}} up -d --force-recreate --no-deps bot-server
    @just urls

# Open a bash in the troubleshooting image on botticelli-net, next to the bot-server (its runtime image has no shell tools)
shell-bot-server:
    @podman image exists {{debug_image}} || just build-debug
    podman run --rm -it --network botticelli-net --sysctl net.ipv4.ping_group_range="0 2147483647" {{debug_image}} bash

# Run one command in the troubleshooting image on botticelli-net (e.g. just debug curl -v http://jaeger:4317)
debug +cmd:
    @podman image exists {{debug_image}} || just build-debug
    podman run --rm $([ -t 0 ] && echo -it || echo -i) --network botticelli-net --sysctl net.ipv4.ping_group_range="0 2147483647" {{debug_image}} {{cmd}}

# Check the bot-server's metrics endpoint
check-metrics:
    @echo "📊 Checking metrics endpoint..."
    @curl -fsS http://localhost:9090/metrics | head -20
    @echo "   🤖 Bot metrics: http://localhost:9090/metrics   📈 Prometheus: http://localhost:9091/targets"

# Check that Prometheus scrapes the bot-server (target health)
check-targets:
    @curl -fsS http://localhost:9091/api/v1/targets | python3 -c 'import json,sys; [print(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]) for t in json.load(sys.stdin)["data"]["activeTargets"]]'
    @echo "   📈 Prometheus: http://localhost:9091/targets"

# List the post queue inside the container (e.g. just posts --status pending)
posts *args:
    podman exec botticelli-bot-server bot-server posts list {{args}}

# Remove the stack and its volumes: ALL bot-server state and Prometheus data are deleted
clean-observability:
    {{compose}} down -v

# The container end-to-end test: base images, image build, stack up, metrics/traces/stop assertions, teardown
e2e:
    scripts/e2e.sh
