#!/usr/bin/env bash
# Runs the public HTTP cache test suite (npm package http-cache-tests)
# against `uip-cache serve` in origin-respecting mode and prints the
# required / optimal / check counts.
#
#   conformance/run.sh                 # summary table
#   conformance/run.sh --min-required N  # exit 1 when fewer required tests pass
#   conformance/run.sh --failures      # also list what fails, with the reason
#   conformance/run.sh --suite DIR     # another copy of the suite (a checkout of
#                                      # the current version), instead of npm's
#
# Installs the suite into conformance/.suite (once), starts its origin and
# the proxy on free loopback ports, and stops both when done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
min_required=0
extra=()
suite=""
while [ $# -gt 0 ]; do
  case "$1" in
    --min-required) min_required="$2"; shift 2 ;;
    --failures) extra+=(--failures); shift ;;
    --suite) suite="$(cd "$2" && pwd)"; shift 2 ;;
    *) echo "usage: $0 [--min-required N] [--failures] [--suite DIR]" >&2; exit 2 ;;
  esac
done

# npm has one version of the suite, 0.4.5 (an older snapshot than the one
# cache-tests.fyi shows); it is what CI can install.
suite_version="0.4.5"
if [ -z "$suite" ]; then
  suite="$here/.suite/node_modules/http-cache-tests"
fi
if [ ! -f "$suite/package.json" ]; then
  echo "== installing http-cache-tests@$suite_version"
  mkdir -p "$here/.suite"
  (cd "$here/.suite" && npm install --no-audit --no-fund --silent "http-cache-tests@$suite_version" >/dev/null)
fi

echo "== building uip-cache"
(cd "$root" && cargo build -q -p uip-cache-server)
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
bin="$target_dir/debug/uip-cache"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
proxy_port=$(free_port)
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# The suite's scripts read npm's variables; set them directly.
# The two layouts: npm's (server/, cli.mjs) and the current one (test-engine/).
engine="$suite"
[ -d "$suite/test-engine" ] && engine="$suite/test-engine"
# `exec`: the background job is node itself, so the cleanup's kill reaches it.
(cd "$suite" && npm_package_config_protocol=http npm_package_config_port="$origin_port" \
  npm_package_config_pidfile="$work/origin.pid" exec node "$engine/server/server.mjs" >"$work/origin.log" 2>&1) &
pids+=($!)
wait_port "$origin_port"

"$bin" serve --config "$here/origin-respecting.yaml" \
  --listen "127.0.0.1:$proxy_port" --upstream "http://127.0.0.1:$origin_port" \
  >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_port "$proxy_port"

echo "== running the suite against uip-cache serve (127.0.0.1:$proxy_port)"
(cd "$suite" && npm_config_base="http://127.0.0.1:$proxy_port" npm_package_config_id= \
  node --no-warnings "$engine/cli.mjs" >"$work/results.json")
mkdir -p "$here/.suite" && cp "$work/results.json" "$here/.suite/results.json"

node "$here/summarize.mjs" "$suite" "$work/results.json" "${extra[@]}"
passed=$(node "$here/summarize.mjs" "$suite" "$work/results.json" --json \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).counts.required.passed))')
echo "required passed: $passed (minimum $min_required)"
if [ "$passed" -lt "$min_required" ]; then
  echo "conformance regression: $passed required tests pass, fewer than $min_required" >&2
  exit 1
fi
