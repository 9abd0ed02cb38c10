#!/usr/bin/env bash
# The notebook's end-to-end test drives Debian's chromium through playwright-core (never `playwright install`).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium is missing: install Debian's package (apt-get install chromium) as root, then run the tests again" >&2
  exit 1
fi
echo "installing Debian's chromium for the notebook's browser test..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
