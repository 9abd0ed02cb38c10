#!/usr/bin/env bash
# The experiment queue's tests (apps/cli/test/queue.test.ts) start Debian's redis-server on a loopback port
# themselves; this only makes sure the binary is there. Never a mock.
set -euo pipefail
if [ -x /usr/bin/redis-server ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "redis-server is missing: install Debian's package (apt-get install redis-server) as root, then run the tests again" >&2
  exit 1
fi
echo "installing Debian's redis-server for the experiment queue's tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq redis-server >/dev/null
# The package starts a system service on 6379; the tests start their own servers on free ports.
