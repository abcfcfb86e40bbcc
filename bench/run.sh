#!/usr/bin/env bash
# Cache-hit throughput and latency of `uip-cache serve` (memory store, Redis,
# and tiered: L1 + Redis) against nginx proxy_cache, in front of the same static origin, on
# loopback, in one run:
#
#   bench/run.sh                   # 5 rounds of 10 s per target, size and mode
#   ROUNDS=3 DURATION=5 bench/run.sh
#   MODES=pinned SIZES=2048 bench/run.sh
#   WORKERS=2 MODES=unpinned bench/run.sh   # ours with two threads
#   UIP_CACHE_BIN=new/uip-cache BASELINE_BIN=old/uip-cache bench/run.sh
#                                  # two builds of ours in one run (memory store)
#
# For each body size (2 KB, 64 KB JSON) and mode (unpinned; pinned: every
# server on core 0 and wrk on core 1, since nginx runs one worker), the
# targets are measured in turn (each round starting one target later),
# round after round, with
# `wrk -t1 -c64 -d${DURATION}s --latency`; the table shows the medians of
# requests/s and p99 and the ratios ours / nginx. Needs nginx, wrk,
# redis-server (the Redis rows are skipped without it) and taskset.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
SIZES="${SIZES:-2048 65536}"
MODES="${MODES:-unpinned pinned}"
CONNECTIONS="${CONNECTIONS:-64}"

for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install nginx wrk util-linux)" >&2; exit 1; }
done

. "$here/common.sh" bench

echo "== building the server (release)"
build_server
origin_port=$(free_port); nginx_port=$(free_port); mem_port=$(free_port); base_port=$(free_port); redis_proxy_port=$(free_port); tiered_proxy_port=$(free_port)
nginx_conf "$origin_port" "$nginx_port"
for size in $SIZES; do
  python3 - "$work/www/body-$size.json" "$size" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2])
item = '{"id":"urn:ngsi-ld:Camera:%03d","type":"Camera","status":{"type":"Property","value":"on"}},'
out, i = "[", 0
while len(out) < size - 1:
    out += item % (i % 1000); i += 1
out = out[: size - 1] + "]"
open(path, "w").write(out)
PY
done

cat > "$work/memory.yaml" <<YAML
store:
  type: memory
  max_bytes: 512MB
policies:
  - name: all
    pattern: "/*"
admin:
  enabled: false
logging:
  level: warn
YAML

redis_port=""
if command -v redis-server >/dev/null; then
  redis_port=$(free_port)
  for kind in redis tiered; do
    cat > "$work/$kind.yaml" <<YAML
store:
  type: $kind
redis:
  host: 127.0.0.1
  port: $redis_port
policies:
  - name: all
    pattern: "/*"
admin:
  enabled: false
logging:
  level: warn
YAML
  done
fi

# start <cpu list or ""> <command...>: runs in the background, pinned when asked.
start() {
  local cpus="$1"; shift
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@" & else "$@" & fi
  pids+=("$!")
}

run_mode() {
  local mode="$1" server_cpus="" wrk_cpus=""
  if [ "$mode" = pinned ]; then server_cpus=0; wrk_cpus=1; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  rm -rf "$work/cache"/*
  # One worker thread each when pinned (nginx has one worker).
  # One worker thread, as nginx has one worker process (WORKERS=2 unpinned
  # shows ours with a thread per core, competing with wrk for the cores).
  local threads="${WORKERS:-1}"
  [ "$mode" = pinned ] && threads=1
  start "$server_cpus" nginx -c "$work/nginx.conf" -p "$work"
  TOKIO_WORKER_THREADS="$threads" start "$server_cpus" "$bin" serve --config "$work/memory.yaml" \
    --listen "127.0.0.1:$mem_port" --upstream "http://127.0.0.1:$origin_port"
  local targets="nginx:$nginx_port ours-memory:$mem_port"
  if [ -n "${BASELINE_BIN:-}" ]; then
    TOKIO_WORKER_THREADS="$threads" start "$server_cpus" "$BASELINE_BIN" serve --config "$work/memory.yaml" \
      --listen "127.0.0.1:$base_port" --upstream "http://127.0.0.1:$origin_port"
    targets="$targets baseline-memory:$base_port"
  fi
  if [ -n "$redis_port" ]; then
    start "$server_cpus" redis-server --port "$redis_port" --save "" --appendonly no --daemonize no --loglevel warning
    wait_port "$redis_port"
    TOKIO_WORKER_THREADS="$threads" start "$server_cpus" "$bin" serve --config "$work/redis.yaml" \
      --listen "127.0.0.1:$redis_proxy_port" --upstream "http://127.0.0.1:$origin_port"
    TOKIO_WORKER_THREADS="$threads" start "$server_cpus" "$bin" serve --config "$work/tiered.yaml" \
      --listen "127.0.0.1:$tiered_proxy_port" --upstream "http://127.0.0.1:$origin_port"
    targets="$targets ours-redis:$redis_proxy_port ours-tiered:$tiered_proxy_port"
  fi
  for t in $targets; do wait_port "${t#*:}"; done
  for size in $SIZES; do
    for t in $targets; do
      # Fill the cache, and check it answers hits.
      for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:${t#*:}/body-$size.json"; done
      local x
      x=$(curl -s -D - -o /dev/null "http://127.0.0.1:${t#*:}/body-$size.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
      [ "$x" = HIT ] || { echo "$t does not answer hits for body-$size.json (X-Cache: $x)" >&2; exit 1; }
    done
    # Each round starts one target later, so that no target always runs
    # right after the same other one (whose connections the kernel is
    # still tearing down, say).
    local list=($targets)
    for round in $(seq "$ROUNDS"); do
      for i in "${!list[@]}"; do
        local t=${list[$(( (i + round - 1) % ${#list[@]} ))]}
        local cmd=(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${t#*:}/body-$size.json")
        local out
        if [ -n "$wrk_cpus" ]; then out=$(taskset -c "$wrk_cpus" "${cmd[@]}"); else out=$("${cmd[@]}"); fi
        local rps p99 errors
        rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
        p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
        [ -z "$errors" ] || echo "  $mode $size ${t%%:*} round $round: $errors" >&2
        echo "$mode $size ${t%%:*} $rps $p99" >> "$work/results"
        printf '  %-8s %6s B  %-12s round %s: %10s req/s  p99 %8s ms\n' "$mode" "$size" "${t%%:*}" "$round" "$rps" "$p99"
      done
    done
  done
}

echo "== $(nproc) cores; wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency; $ROUNDS rounds"
for mode in $MODES; do run_mode "$mode"; done

python3 - "$work/results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    mode, size, target, rps, p99 = line.split()
    rows[(mode, int(size), target)][0].append(float(rps))
    rows[(mode, int(size), target)][1].append(float(p99))
print()
print("| mode | body | target | req/s (median) | p99 ms (median) | throughput vs nginx | p99 vs nginx |")
print("|---|---|---|---|---|---|---|")
for (mode, size, target) in sorted(rows, key=lambda k: (k[0] != "unpinned", k[1], k[2] != "nginx", k[2])):
    rps = statistics.median(rows[(mode, size, target)][0])
    p99 = statistics.median(rows[(mode, size, target)][1])
    base = rows.get((mode, size, "nginx"))
    if base and target != "nginx":
        r = rps / statistics.median(base[0]); l = p99 / statistics.median(base[1])
        ratio, lat = f"{r:.2f}x", f"{l:.2f}x"
    else:
        ratio, lat = "1.00x", "1.00x"
    label = f"{size // 1024} KB"
    print(f"| {mode} | {label} | {target} | {rps:,.0f} | {p99:.2f} | {ratio} | {lat} |")
PY
