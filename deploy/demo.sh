#!/usr/bin/env bash
# The README's first command ends here. On this machine, with the embedded defaults:
#   a controller (embedded MQTT broker on 1883, HTTP API and metrics on 8080),
#   an agent registered with a device token (metrics on 9464),
#   images built offline (busybox base + the ONNX Runtime module layer) and a generated model,
#   pushed to the controller's blob store, then a deployment applied: the model runs in a
#   container and its measured latency shows in `featherctl describe` and in /metrics.
# It leaves both daemons running; `npm run demo:stop` (deploy/demo.sh stop) ends them.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="${FEATHER_DEMO_DIR:-/var/lib/feather-demo}"
DEVICE="${FEATHER_DEMO_DEVICE:-demo-edge}"
export FEATHER_CONTROLLER_DATA_DIR="$DEMO/controller"   # featherctl finds the admin token there
agent() { node dist/agent/cli/main.js "$@"; }
ctl() { node dist/controller/ctl.js "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(process.argv[1].split(".").reduce((o,k)=>o[k],v))})' "$1"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $until ]; then echo "demo: timed out waiting for $what (logs in $DEMO)" >&2; exit 1; fi
    sleep 0.5
  done
}

stop() {
  for p in agent controller; do
    if [ -f "$DEMO/$p.pid" ]; then kill "$(cat "$DEMO/$p.pid")" 2>/dev/null || true; rm -f "$DEMO/$p.pid"; fi
  done
  sleep 1
  if [ -d "$DEMO/agent/containers" ]; then
    for c in "$DEMO"/agent/containers/*/; do [ -d "$c" ] && agent --data-dir "$DEMO/agent" rm --force "$(basename "$c")" >/dev/null 2>&1 || true; done
  fi
}
if [ "${1:-}" = stop ]; then stop; echo "demo stopped (data kept in $DEMO)"; exit 0; fi

[ -x native/build/feather-shim ] && [ -f dist/controller/main.js ] || npm run build
stop
mkdir -p "$DEMO"

echo "== controller (embedded broker :1883, API :8080)"
node dist/controller/main.js --data-dir "$DEMO/controller" >"$DEMO/controller.log" 2>&1 &
echo $! >"$DEMO/controller.pid"
wait_for 30 "the controller" curl -sf http://127.0.0.1:8080/healthz

echo "== agent $DEVICE, with a device token from featherctl device add"
TOKEN=$(ctl device add "$DEVICE" --rotate -o json | json token)
FEATHER_TELEMETRY_INTERVAL=2 FEATHER_RUN_DIR="$DEMO/run" node dist/agent/cli/main.js daemon \
  --data-dir "$DEMO/agent" --broker mqtt://127.0.0.1:1883 --device-id "$DEVICE" \
  --username "$DEVICE" --password "$TOKEN" --metrics-port 9464 >"$DEMO/agent.log" 2>&1 &
echo $! >"$DEMO/agent.pid"
wait_for 30 "the agent to come online" sh -c "node dist/controller/ctl.js get devices -o json | grep -Eq '\"online\": *true'"

echo "== artifacts: busybox base, ONNX Runtime module layer, a generated model"
BUILD="$DEMO/build"
agent --data-dir "$BUILD" images --json | grep -q '"name":"busybox"' || agent --data-dir "$BUILD" image build busybox
agent --data-dir "$BUILD" images --json | grep -q '"name":"onnx"' || agent --data-dir "$BUILD" image build onnx
node --input-type=module -e "
  import { heavyModel } from './dist/test/helpers/onnx-models.js';
  import { writeFileSync } from 'node:fs';
  writeFileSync('$BUILD/model.onnx', heavyModel().bytes);"
BASE=$(ctl push "$BUILD/images/busybox.tar.gz" --name busybox.tar.gz -o json)
MODULE=$(ctl push "$BUILD/images/onnx.tar.gz" --name onnx.tar.gz -o json)
MODEL=$(ctl push "$BUILD/model.onnx" --name mlp.onnx -o json)
ARCH=$(uname -m)

cat >"$DEMO/deployment.yaml" <<YAML
name: demo-detector
model:
  name: mlp
  variants:
    - { accelerator: cpu, precision: fp32, url: "$(echo "$MODEL" | json url)", sha256: "$(echo "$MODEL" | json sha256)" }
runtime:
  variants:
    - arch: $ARCH
      image: busybox
      url: "$(echo "$BASE" | json url)"
      sha256: "$(echo "$BASE" | json sha256)"
      layers:
        - { name: onnx, url: "$(echo "$MODULE" | json url)", sha256: "$(echo "$MODULE" | json sha256)" }
  args: [feather-runner, --model-name, mlp, --rate, "50", --threads, "1"]
replicas: 1
resources: { memory: 512Mi, cpus: 1, pids: 64 }
accelerators: [cpu]
p95LatencyMs: 100
YAML
echo "== featherctl apply -f $DEMO/deployment.yaml --wait"
ctl apply -f "$DEMO/deployment.yaml" --wait --timeout 5m

echo "== waiting for the first latency figures"
wait_for 90 "latency in /metrics" sh -c "curl -s http://127.0.0.1:9464/metrics | grep -q '^feather_inference_latency_seconds_count{.*model=\"mlp\"'"
# A measured p95 ("p95Ms": <number>), not the objective's p95LatencyMs that every deployment has.
wait_for 60 "latency at the controller" sh -c "node dist/controller/ctl.js describe deployment demo-detector -o json | grep -Eq '\"p95Ms\": *[0-9]'"
ctl describe deployment demo-detector
echo
curl -s http://127.0.0.1:9464/metrics | grep -E '^feather_inference_(latency_seconds_(count|sum)|requests_total)'
cat <<EON

The model runs in container demo-detector-0 on agent $DEVICE. Try:
  FEATHER_CONTROLLER_DATA_DIR=$DEMO/controller node dist/controller/ctl.js get devices
  node dist/agent/cli/main.js --data-dir $DEMO/agent ps
  curl -s localhost:9464/metrics | grep feather_
Stop both daemons with: npm run demo:stop
EON
