#!/usr/bin/env bash
# Calls Switchyard's admin API on every running Switchyard pod, one after the
# other. Each replica holds its own routing state, and the switchyard-admin
# Service would reach only one of them, so a switch or rollback must be sent
# to each pod. Reaches pods through kubectl port-forward and reads the token
# from the switchyard-admin-token Secret.
#
#   deploy/k8s/admin.sh GET  /admin/status
#   deploy/k8s/admin.sh POST /admin/switch '{"to":"green"}'
#   deploy/k8s/admin.sh POST /admin/rollback
#
# A POST stops at the first pod that does not answer 2xx (say a 409: green not
# ready there) and names the pods it already changed. Exit status 0 only when
# every pod answered 2xx. JQ (default .) is a jq filter for each answer, e.g.
#   JQ='{active, green: .pools.green.ready_backends}' deploy/k8s/admin.sh GET /admin/status
# NAMESPACE (default ml) and KUBECTL (default kubectl) can be overridden.
set -euo pipefail

ns=${NAMESPACE:-ml}
kubectl=${KUBECTL:-kubectl}
if (($# < 2)); then
  echo "usage: $0 GET|POST PATH [JSON_BODY]" >&2
  exit 2
fi
method=$1 path=$2 body=${3:-}

tmp=$(mktemp -d)
pf=""
trap '[[ -z $pf ]] || kill "$pf" 2>/dev/null; rm -rf "$tmp"' EXIT

# The token goes to curl through a file, so it never shows in ps output.
umask 077
token=$("$kubectl" -n "$ns" get secret switchyard-admin-token -o jsonpath='{.data.token}' | base64 -d)
printf 'Authorization: Bearer %s\n' "$token" >"$tmp/auth"
curl_args=(-sS -o "$tmp/body" -w '%{http_code}' -X "$method" -H "@$tmp/auth")
if [[ -n $body ]]; then
  curl_args+=(-H 'Content-Type: application/json' --data "$body")
fi

mapfile -t pods < <("$kubectl" -n "$ns" get pods -l app=switchyard --field-selector=status.phase=Running \
  -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
if ((${#pods[@]} == 0)); then
  echo "admin.sh: no running Switchyard pods in namespace $ns" >&2
  exit 1
fi

# forward POD: starts a port-forward to POD's admin port on a free local port
# and sets $pf (its pid) and $port.
forward() {
  : >"$tmp/pf.log"
  "$kubectl" -n "$ns" port-forward "pod/$1" :9901 >"$tmp/pf.log" 2>&1 &
  pf=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/pf.log" | head -n 1)
    if [[ -n $port ]]; then return 0; fi
    if ! kill -0 "$pf" 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat "$tmp/pf.log" >&2
  return 1
}

changed=()
failed=0
for pod in "${pods[@]}"; do
  if ! forward "$pod"; then
    echo "admin.sh: cannot port-forward to $pod" >&2
    code=000
  else
    code=$(curl "${curl_args[@]}" "http://127.0.0.1:$port$path") || code=000
    kill "$pf" 2>/dev/null || true
    wait "$pf" 2>/dev/null || true
    pf=""
  fi
  echo "== $pod: HTTP $code"
  if [[ -s $tmp/body ]]; then
    jq "${JQ:-.}" "$tmp/body" 2>/dev/null || cat "$tmp/body"
  fi
  rm -f "$tmp/body"
  if [[ $code != 2?? ]]; then
    failed=1
    if [[ $method != GET ]]; then
      echo "admin.sh: stopped at $pod; already changed: ${changed[*]:-none}" >&2
      echo "admin.sh: pods now disagree until you retry, or undo on those pods with a switch back" >&2
      exit 1
    fi
  else
    changed+=("$pod")
  fi
done
exit "$failed"
