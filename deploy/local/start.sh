#!/usr/bin/env bash
# Starts the local blue/green demo in the background:
#   blue  model server v2.6 on 127.0.0.1:5001 (gunicorn)
#   green model server v2.7 on 127.0.0.1:5002 (gunicorn)
#   switchyard: traffic on 127.0.0.1:8080, admin on 127.0.0.1:9901
# Pids and logs go to $RUN_DIR. Stop everything with deploy/local/stop.sh.
#
# Environment:
#   PYTHON          a Python with torch, flask and gunicorn (default /usr/bin/python3)
#   SWITCHYARD_BIN  a prebuilt binary; default: go build -o bin/switchyard ./cmd/switchyard
#   RUN_DIR         where pids and logs go (default ${TMPDIR:-/tmp}/switchyard-local)
#   BLUE_<VAR>, GREEN_<VAR>  the model server's fault knobs for one color, e.g.
#                   GREEN_FAIL_RATIO=0.2, GREEN_LOAD_DELAY_SECONDS=20,
#                   GREEN_WARMUP_SLOW_REQUESTS=3, GREEN_WARMUP_SLOW_SECONDS=2
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-/usr/bin/python3}
run_dir=${RUN_DIR:-${TMPDIR:-/tmp}/switchyard-local}
config=$repo/deploy/local/switchyard.yaml
knobs=(LOAD_DELAY_SECONDS WARMUP_SLOW_REQUESTS WARMUP_SLOW_SECONDS FAIL_RATIO)

fail() {
  echo "start.sh: $*" >&2
  RUN_DIR=$run_dir "$repo/deploy/local/stop.sh" >&2 || true
  exit 1
}

# wait_for NAME URL SECONDS: poll URL until it answers, giving up early if the
# process behind NAME's pid file has died (a taken port, a bad setting).
wait_for() {
  local name=$1 url=$2 deadline=$((SECONDS + $3))
  until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
    if ! kill -0 "$(cat "$run_dir/$name.pid")" 2>/dev/null; then
      tail -n 20 "$run_dir/$name.log" >&2
      fail "$name exited; its log is $run_dir/$name.log"
    fi
    if ((SECONDS >= deadline)); then
      fail "$name did not answer $url within $3s; its log is $run_dir/$name.log"
    fi
    sleep 0.2
  done
}

# start_model COLOR VERSION PORT
start_model() {
  local color=$1 version=$2 port=$3 var from
  local -a env=(BIND="127.0.0.1:$port" MODEL_VERSION="$version" MODEL_COLOR="$color")
  local -a unset=()
  for var in "${knobs[@]}"; do
    unset+=(-u "$var") # an unprefixed FAIL_RATIO in the caller's shell must not reach both colors
    from=${color^^}_$var
    if [[ -n ${!from:-} ]]; then env+=("$var=${!from}"); fi
  done
  (
    cd "$repo/deploy/model-server"
    env "${unset[@]}" "${env[@]}" "$python" -m gunicorn --config gunicorn.conf.py app:app \
      >"$run_dir/$color.log" 2>&1 &
    echo $! >"$run_dir/$color.pid"
  )
  echo "started $color $version on 127.0.0.1:$port (pid $(cat "$run_dir/$color.pid"), log $run_dir/$color.log)"
}

mkdir -p "$run_dir"
for name in blue green switchyard; do
  if [[ -f $run_dir/$name.pid ]] && kill -0 "$(cat "$run_dir/$name.pid")" 2>/dev/null; then
    echo "start.sh: $name is already running (pid $(cat "$run_dir/$name.pid")); run deploy/local/stop.sh first" >&2
    exit 1
  fi
done

"$python" -c 'import torch, flask, gunicorn' 2>/dev/null ||
  { echo "start.sh: $python lacks torch, flask or gunicorn; set PYTHON (see deploy/model-server/README.md)" >&2; exit 1; }

# Build and validate before starting anything, so a compile or config error
# leaves nothing running.
bin=${SWITCHYARD_BIN:-}
if [[ -z $bin ]]; then
  (cd "$repo" && go build -o bin/switchyard ./cmd/switchyard)
  bin=$repo/bin/switchyard
fi
"$bin" validate --config "$config"

start_model blue v2.6 5001
start_model green v2.7 5002
# Live, not ready: the models may still be loading. Switchyard's probes and
# warmup decide when a pool can take traffic.
wait_for blue http://127.0.0.1:5001/v2/health/live 60
wait_for green http://127.0.0.1:5002/v2/health/live 60

"$bin" serve --config "$config" >"$run_dir/switchyard.log" 2>&1 &
echo $! >"$run_dir/switchyard.pid"
echo "started switchyard (pid $!, log $run_dir/switchyard.log)"
wait_for switchyard http://127.0.0.1:9901/healthz 30

cat <<MSG

Ready. Traffic: http://127.0.0.1:8080  Admin: http://127.0.0.1:9901
  curl -s 127.0.0.1:9901/admin/status | jq .
  curl -s -X POST 127.0.0.1:8080/predict -d '{"inputs": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}'
  curl -s -X POST 127.0.0.1:9901/admin/switch -d '{"to":"green"}'
Stop with deploy/local/stop.sh
MSG
