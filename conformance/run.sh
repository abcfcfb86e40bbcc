#!/usr/bin/env bash
# Runs the public HTTP cache test suite against `uip-cache serve` in
# origin-respecting mode and prints the required / optimal / check counts.
#
#   conformance/run.sh                   # summary table
#   conformance/run.sh --min-required N  # exit 1 when fewer required tests pass
#   conformance/run.sh --failures        # also list what fails, with the reason
#   conformance/run.sh --snapshot        # npm's older snapshot (0.4.5) instead
#   conformance/run.sh --suite DIR       # another copy of the suite
#
# The suite is the one cache-tests.fyi publishes (cache-tests at b55b8bd,
# BSD-3-Clause, shipped here as cache-tests-b55b8bd.tar.gz with its licence
# and the published results of the other caches). It is unpacked into
# conformance/.suite and its npm dependencies installed there, once. When
# they cannot be installed, npm's 0.4.5 snapshot is the fallback, said so,
# and checked against --min-required-snapshot instead. The script starts the
# suite's origin and the proxy on free loopback ports and stops both when done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
min_required=0
min_snapshot=0
extra=()
suite=""
snapshot=""
while [ $# -gt 0 ]; do
  case "$1" in
    --min-required) min_required="$2"; shift 2 ;;
    --min-required-snapshot) min_snapshot="$2"; shift 2 ;;
    --failures) extra+=(--failures); shift ;;
    --snapshot) snapshot=1; shift ;;
    --suite) suite="$(cd "$2" && pwd)"; shift 2 ;;
    *) echo "usage: $0 [--min-required N] [--min-required-snapshot N] [--failures] [--snapshot] [--suite DIR]" >&2; exit 2 ;;
  esac
done

revision="b55b8bd"
install_snapshot() {
  suite="$here/.suite/node_modules/http-cache-tests"
  if [ ! -f "$suite/package.json" ]; then
    echo "== installing npm's snapshot http-cache-tests@0.4.5"
    mkdir -p "$here/.suite"
    (cd "$here/.suite" && npm install --no-audit --no-fund --silent "http-cache-tests@0.4.5" >/dev/null)
  fi
  snapshot=1
  min_required="$min_snapshot"
}
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ -z "$suite" ] && [ -z "$snapshot" ] && [ "$node_major" -lt 20 ]; then
  echo "== Node.js $node_major is older than the suite needs (20): falling back to npm's 0.4.5 snapshot"
  snapshot=1
fi
if [ -z "$suite" ] && [ -n "$snapshot" ]; then
  install_snapshot
elif [ -z "$suite" ]; then
  suite="$here/.suite/cache-tests-$revision"
  if [ ! -f "$suite/node_modules/.installed" ]; then
    echo "== unpacking cache-tests $revision and installing its npm dependencies"
    rm -rf "$suite" && mkdir -p "$suite"
    tar xzf "$here/cache-tests-$revision.tar.gz" -C "$suite" --strip-components=1
    if (cd "$suite" && npm install --omit=dev --no-audit --no-fund --silent >/dev/null 2>&1); then
      touch "$suite/node_modules/.installed"
    else
      echo "== could not install the suite's npm dependencies: falling back to npm's 0.4.5 snapshot"
      install_snapshot
    fi
  fi
fi
if [ -n "$snapshot" ]; then
  echo "== suite: npm's snapshot http-cache-tests 0.4.5"
else
  echo "== suite: $suite"
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
