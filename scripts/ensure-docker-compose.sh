#!/usr/bin/env bash
# Installs Debian's docker-compose (the v1 CLI) when missing: it validates
# docker-compose.yml offline (`docker-compose config`), with no Docker engine.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "docker-compose is missing and cannot be installed here (needs root and apt-get); install Debian's docker-compose package" >&2
  exit 3
fi
echo "installing Debian's docker-compose to validate docker-compose.yml (first run only)…" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq docker-compose >/dev/null
