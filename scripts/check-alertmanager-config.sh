#!/usr/bin/env bash
# amtool check-config alertmanager/alertmanager.yml (`just check-stack-config`, .ci/run).
#
# The stack runs Alertmanager >= 0.26 (docker-compose.observability.yml), whose Discord receiver
# reads its webhook URL from a file (webhook_url_file). The amtool this host has may be older:
# Debian bookworm's prometheus-alertmanager is 0.25.0, which has discord_configs but not
# webhook_url_file ("field webhook_url_file not found"). With such an amtool the config is
# checked as written except for that one field, replaced by a placeholder webhook_url (the
# secret's file is not read by amtool either way); the script says so when it does. Everything
# else (routes, matchers, inhibit rules, templates, receivers) is checked as written.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-alertmanager/alertmanager.yml}"
command -v amtool >/dev/null || { echo "amtool is not installed (scripts/install-deps.sh installs prometheus-alertmanager)" >&2; exit 1; }
version="$(amtool --version 2>&1 | sed -n 's/^amtool, version \([0-9]*\.[0-9]*\).*/\1/p')"
echo "amtool $version: amtool check-config $config"
major="${version%%.*}"; minor="${version#*.}"
if [ "$major" -gt 0 ] || [ "$minor" -ge 26 ]; then
    amtool check-config "$config"
    exit
fi
grep -q 'webhook_url_file:' "$config" || { amtool check-config "$config"; exit; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed -E 's#^([[:space:]]*(- )?)webhook_url_file:.*#\1webhook_url: https://discord.com/api/webhooks/0/placeholder-checked-by-amtool-0.25#' \
    "$config" >"$tmp/alertmanager.yml"
echo "  (amtool $version predates webhook_url_file for Discord (0.26): checking a copy in which"
echo "   $(grep -c 'webhook_url_file:' "$config") webhook_url_file line(s) are replaced by a placeholder webhook_url)"
amtool check-config "$tmp/alertmanager.yml"
