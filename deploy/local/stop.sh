#!/usr/bin/env bash
# Stops what deploy/local/start.sh started: Switchyard first (no new traffic),
# then the model servers. Each gets SIGTERM and up to 35s to drain (gunicorn's
# graceful_timeout is 30s) before it is killed.
set -euo pipefail

run_dir=${RUN_DIR:-${TMPDIR:-/tmp}/switchyard-local}

stop() { # NAME EXPECTED_COMMAND_SUBSTRING
  local name=$1 expect=$2 pidfile=$run_dir/$1.pid pid args
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  args=$(ps -p "$pid" -o args= 2>/dev/null) || { echo "$name (pid $pid) was not running"; return 0; }
  # A stale pid file may name a pid since reused by something unrelated.
  if [[ $args != *"$expect"* ]]; then
    echo "$name: pid $pid is now '$args', not ours; leaving it alone" >&2
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 350); do
    kill -0 "$pid" 2>/dev/null || { echo "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  echo "$name (pid $pid) did not exit within 35s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

stop switchyard switchyard
stop blue gunicorn
stop green gunicorn
