#!/usr/bin/env bash
# Creates the secret files docker-compose.observability.yml reads, where they are missing
# (`just init-secrets`; `just start-observability` runs it). Existing files are never changed.
#
#   secrets/grafana_admin_password  Grafana's admin password (GF_SECURITY_ADMIN_PASSWORD__FILE):
#                                   32 random characters. Read it with
#                                   `cat secrets/grafana_admin_password`, or write your own.
#   secrets/discord_webhook_url     Alertmanager's Discord webhook URL (webhook_url_file): left
#                                   empty; put the URL of a Discord channel webhook in it to get
#                                   the alerts in Discord (then: podman restart botticelli-alertmanager).
#   secrets/discord_token, bot_discord_webhook_url, gemini_api_key, openai_api_key,
#   anthropic_api_key, otlp_headers The bot-server's credentials (DISCORD_TOKEN_FILE, ...,
#                                   OTEL_EXPORTER_OTLP_HEADERS_FILE for a collector's token): left
#                                   empty (= unset); write the ones you use (or set them in .env,
#                                   not both), then `just restart-bot-server`.
#
# BOTTICELLI_SECRETS_DIR (default secrets/) puts them elsewhere, as the compose file reads it.
# secrets/ is git-ignored and mode 0700; the files are 0644 because the containers' own users
# (Grafana's uid 472, Alertmanager's nobody) read them through the bind mount.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${BOTTICELLI_SECRETS_DIR:-secrets}"
mkdir -p "$dir"
chmod 0700 "$dir"
umask 022
if [ ! -e "$dir/grafana_admin_password" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$dir/grafana_admin_password"
    echo "[secrets] wrote a random Grafana admin password to $dir/grafana_admin_password (user: admin)"
fi
if [ ! -e "$dir/discord_webhook_url" ]; then
    : >"$dir/discord_webhook_url"
    echo "[secrets] created an empty $dir/discord_webhook_url: put a Discord webhook URL in it for Alertmanager's notifications"
fi
created=""
for name in discord_token bot_discord_webhook_url gemini_api_key openai_api_key anthropic_api_key otlp_headers; do
    if [ ! -e "$dir/$name" ]; then
        : >"$dir/$name"
        created="$created $name"
    fi
done
[ -z "$created" ] || echo "[secrets] created empty$created in $dir/: write the bot-server's credentials there (or in .env, not both)"
for name in grafana_admin_password discord_webhook_url discord_token bot_discord_webhook_url \
    gemini_api_key openai_api_key anthropic_api_key otlp_headers; do
    chmod 0644 "$dir/$name"
done
