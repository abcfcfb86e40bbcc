#!/usr/bin/env bash
# The disk store (`store.type: disk`) of `uip-cache serve` against nginx
# proxy_cache, whose cache also lives in files, in front of the same static
# origin, on loopback:
#
#   bench/disk.sh                      # 3 rounds of 5 s per target and size
#   ROUNDS=5 DURATION=10 bench/disk.sh
#   ENTRIES=1000000 bench/disk.sh      # the start test with more entries
#   DISK_DIR=/mnt/ssd/x bench/disk.sh  # where both caches live
#   HITS=0 ENTRIES=1000000 bench/disk.sh   # the start test alone
#   BASE_BIN=/path/to/older/uip-cache bench/disk.sh  # before/after, one run
#
# 1. Hits: for 2 KB, 64 KB and 1 MB bodies, nginx, ours with every hit read
#    from disk (`memory_bytes: 0`) and ours with its memory tier, each
#    pinned to core 0 with one worker and wrk -t1 -c64 on core 1; the table
#    shows the medians and the ratios to nginx. Both caches live under
#    DISK_DIR (a real disk, not tmpfs; the page cache helps both alike).
# 2. Start: ENTRIES entries (default 100000) written through the proxy,
#    the process killed (-9), started again: the time from its start to its
#    first hit, the disk bytes per entry and the RSS after the first hit.
# Needs nginx, wrk, taskset and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
SIZES="${SIZES:-2048 65536 1048576}"
ENTRIES="${ENTRIES:-100000}"
CONNECTIONS="${CONNECTIONS:-64}"

for tool in nginx wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench/disk.sh needs $tool" >&2; exit 1; }
done

. "$here/common.sh" disk
disk="${DISK_DIR:-/var/tmp/uip-cache-disk-bench.$$}"
mkdir -p "$disk"
trap 'cleanup; rm -rf "$disk"' EXIT

echo "== building the server (release)"
build_server
origin_port=$(free_port); nginx_port=$(free_port); disk_port=$(free_port); tier_port=$(free_port)
nginx_conf "$origin_port" "$nginx_port"
# nginx's cache on the same disk as ours.
mkdir -p "$disk/nginx"; chmod 777 "$disk/nginx"
sed -i "s#proxy_cache_path $work/cache#proxy_cache_path $disk/nginx#" "$work/nginx.conf"
for size in $SIZES 2048; do
  python3 -c 'import base64, os, sys; n = int(sys.argv[1]); sys.stdout.write(base64.b64encode(os.urandom(n))[:n].decode())' "$size" > "$work/www/body-$size.json"
done
chmod 644 "$work"/www/*

config() { # name memory_bytes
  cat > "$work/$1.yaml" <<YAML
store:
  type: disk
  disk:
    path: $disk/$1
    max_bytes: 8GB
    memory_bytes: $2
policies:
  - name: all
    pattern: "/*"
admin:
  enabled: false
logging:
  level: warn
YAML
}
config disk 0
config tier 256MB

start() { # cpus command...
  local cpus="$1"; shift
  taskset -c "$cpus" "$@" &
  pids+=("$!")
}

start 0 nginx -c "$work/nginx.conf" -p "$work"
TOKIO_WORKER_THREADS=1 start 0 "$bin" serve --config "$work/disk.yaml" \
  --listen "127.0.0.1:$disk_port" --upstream "http://127.0.0.1:$origin_port"
TOKIO_WORKER_THREADS=1 start 0 "$bin" serve --config "$work/tier.yaml" \
  --listen "127.0.0.1:$tier_port" --upstream "http://127.0.0.1:$origin_port"
targets="nginx:$nginx_port ours-disk:$disk_port ours-disk+memory:$tier_port"
if [ -n "${BASE_BIN:-}" ]; then
  # Another build of the server, measured in the same rounds (its own
  # folders), to compare before and after a change.
  config base-disk 0
  config base-tier 256MB
  base_disk_port=$(free_port); base_tier_port=$(free_port)
  TOKIO_WORKER_THREADS=1 start 0 "$BASE_BIN" serve --config "$work/base-disk.yaml" \
    --listen "127.0.0.1:$base_disk_port" --upstream "http://127.0.0.1:$origin_port"
  TOKIO_WORKER_THREADS=1 start 0 "$BASE_BIN" serve --config "$work/base-tier.yaml" \
    --listen "127.0.0.1:$base_tier_port" --upstream "http://127.0.0.1:$origin_port"
  targets="$targets base-disk:$base_disk_port base-disk+memory:$base_tier_port"
fi
for t in $targets; do wait_port "${t#*:}"; done

if [ "${HITS:-1}" != 0 ]; then
echo "== hits: $(nproc) cores; one core each; wrk -t1 -c$CONNECTIONS -d${DURATION}s; $ROUNDS rounds"
for size in $SIZES; do
  for t in $targets; do
    for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:${t#*:}/body-$size.json"; done
    x=$(curl -s -D - -o /dev/null "http://127.0.0.1:${t#*:}/body-$size.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
    [ "$x" = HIT ] || { echo "$t does not answer hits for body-$size.json (X-Cache: $x)" >&2; exit 1; }
  done
  list=($targets)
  for round in $(seq "$ROUNDS"); do
    for i in "${!list[@]}"; do
      t=${list[$(( (i + round - 1) % ${#list[@]} ))]}
      out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${t#*:}/body-$size.json")
      rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
      p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
      errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
      [ -z "$errors" ] || echo "  $size ${t%%:*} round $round: $errors" >&2
      echo "$size ${t%%:*} $rps $p99" >> "$work/results"
      printf '  %8s B  %-18s round %s: %10s req/s  p99 %8s ms\n' "$size" "${t%%:*}" "$round" "$rps" "$p99"
    done
  done
done
python3 - "$work/results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    size, target, rps, p99 = line.split()
    rows[(int(size), target)][0].append(float(rps))
    rows[(int(size), target)][1].append(float(p99))
print()
print("| body | target | req/s (median) | p99 ms (median) | throughput vs nginx |")
print("|---|---|---|---|---|")
for (size, target) in sorted(rows, key=lambda k: (k[0], k[1] != "nginx", k[1])):
    rps = statistics.median(rows[(size, target)][0]); p99 = statistics.median(rows[(size, target)][1])
    base = statistics.median(rows[(size, "nginx")][0])
    print(f"| {size // 1024} KB | {target} | {rps:,.0f} | {p99:.2f} | {rps / base:.2f}x |")
PY
fi

echo "== start: $ENTRIES entries of 2 KB"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
rm -rf "$disk/disk"
cat > "$work/fill.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/body-2048.json?i=" .. n)
end
LUA
serve_disk() {
  "$bin" serve --config "$work/disk.yaml" --listen "127.0.0.1:$disk_port" \
    --upstream "http://127.0.0.1:$origin_port" &
  pids+=("$!")
}
start 1 nginx -c "$work/nginx.conf" -p "$work"
serve_disk
wait_port "$disk_port"
# One wrk thread: its connections share one Lua state, so one count, and
# every request has a path of its own.
t0=$(date +%s)
while :; do
  count=$(find "$disk/disk/bodies" -type f | wc -l)
  [ "$count" -ge "$ENTRIES" ] && break
  wrk -t1 -c4 -d5s -s "$work/fill.lua" "http://127.0.0.1:$disk_port/" >/dev/null
  # Each wrk run starts its count again: shift the numbers.
  sed -i "s/^local n = .*/local n = $count/" "$work/fill.lua"
done
echo "  $count entries written in $(( $(date +%s) - t0 )) s"
bytes=$(du -s --block-size=1 "$disk/disk" | cut -f1)
echo "  disk (blocks allocated): $bytes bytes, $(( bytes / count )) bytes per entry, $(( (1 << 30) * count / bytes )) entries per GB"
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
start_ns=$(date +%s%N)
serve_disk
until [ "$(curl -s -D - -o /dev/null "http://127.0.0.1:$disk_port/body-2048.json?i=1" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')" = HIT ]; do
  sleep 0.01
  [ $(( ($(date +%s%N) - start_ns) / 1000000000 )) -lt 60 ] || { echo "no hit within 60 s" >&2; exit 1; }
done
echo "  first hit $(( ($(date +%s%N) - start_ns) / 1000000 )) ms after start (kill -9, then start)"
echo "  RSS after the first hit: $(awk '/VmRSS/{print $2, $3}' "/proc/${pids[-1]}/status")"
