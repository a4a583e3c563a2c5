#!/usr/bin/env bash
# The README's first command ends here: build the offline busybox image and run a container
# in it with the seed limits, in a demo data dir (FEATHER_DATA_DIR overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
export FEATHER_DATA_DIR="${FEATHER_DATA_DIR:-/var/lib/feather-demo}"
agent() { node dist/agent/cli/main.js "$@"; }

[ -x native/build/feather-shim ] || npm run build
agent images --json | grep -q '"name":"busybox"' || agent image build busybox
agent rm --force demo >/dev/null 2>&1 || true

echo "== a container from the busybox image (128Mi, 0.5 CPU, 10 pids, no network):"
agent run --image busybox --name demo -- sh -c \
  'echo "hello from $(hostname), I am PID $$"; echo "network: $(ls /sys/class/net)"; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status'
echo "== exited; its writable layer stays until rm:"
agent ps --all
agent rm demo
echo "== interactive: feather-agent run --image busybox --name box -it --shell /bin/sh   (data dir $FEATHER_DATA_DIR)"
