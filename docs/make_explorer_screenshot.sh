#!/usr/bin/env bash
# Draws docs/explorer.png: the explorer (glowflow serve, the bundled celeba64 model) in headless
# Chromium, editing a held-out gallery face.
# Usage: bash docs/make_explorer_screenshot.sh [STATE]   (STATE: the page's query string)
set -euo pipefail
state=${1:-"view=edit&image=g2&Smiling=2&Mouth_Slightly_Open=1"}
port=8765
glowflow serve --port $port &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/api/attributes" >/dev/null && break
    sleep 0.5
done
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --window-size=1280,720 --virtual-time-budget=8000 \
    --screenshot=docs/explorer.png "http://127.0.0.1:$port/?$state"
rm -rf "$profile"
