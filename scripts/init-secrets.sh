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
#
# secrets/ is git-ignored and mode 0700; the files are 0644 because the containers' own users
# (Grafana's uid 472, Alertmanager's nobody) read them through the bind mount.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p secrets
chmod 0700 secrets
umask 022
if [ ! -e secrets/grafana_admin_password ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >secrets/grafana_admin_password
    echo "[secrets] wrote a random Grafana admin password to secrets/grafana_admin_password (user: admin)"
fi
if [ ! -e secrets/discord_webhook_url ]; then
    : >secrets/discord_webhook_url
    echo "[secrets] created an empty secrets/discord_webhook_url: put a Discord webhook URL in it for Alertmanager's notifications"
fi
chmod 0644 secrets/grafana_admin_password secrets/discord_webhook_url
