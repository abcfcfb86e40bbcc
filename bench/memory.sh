#!/usr/bin/env bash
# Resident memory of `uip-cache serve` with a full memory store, against
# `store.max_bytes`:
#
#   bench/memory.sh                      # max_bytes 64MB and 256MB, 2 KB and 64 KB bodies
#   MAX_BYTES="256MB" SIZES=2048 bench/memory.sh
#   FILL=3 bench/memory.sh               # cache FILL x max_bytes worth of bodies (default 3)
#   BIN=path/to/uip-cache bench/memory.sh   # that binary instead of a release build
#
# For each max_bytes and body size, a fresh server (memory store, one
# catch-all policy) in front of a static nginx origin is sent unique URLs
# (`wrk` with a Lua script numbering them) until it has been given FILL
# times max_bytes of bodies, so the store is full and evicting. Then it
# prints:
#   - base: the idle server's memory before the first request;
#   - memory: what the process holds once full. That is its anonymous
#     resident memory (VmRSS without file pages) plus every page of the
#     sealed memory files that large entries live in (the kernel charges
#     those to the process's cgroup whether or not they are mapped, so
#     VmRSS alone would miss them); shown also as VmRSS;
#   - (memory - base) / max_bytes, the figure the bound is about (at most
#     1.15), and memory / max_bytes;
#   - accounted: the store's own count of its bytes (admin /cache/metrics);
#   - memory per cached body byte: (memory - base) / (entries x body size).
# Needs nginx, wrk, curl and python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
MAX_BYTES="${MAX_BYTES:-64MB 256MB}"
SIZES="${SIZES:-2048 65536}"
FILL="${FILL:-3}"
CONNECTIONS="${CONNECTIONS:-32}"

for tool in nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/memory.sh needs $tool" >&2; exit 1; }
done

. "$here/common.sh" memory

if [ -n "${BIN:-}" ]; then
  bin="$BIN"
else
  echo "== building the server (release)"
  build_server
fi
origin_port=$(free_port); nginx_port=$(free_port)
nginx_conf "$origin_port" "$nginx_port"
for size in $SIZES; do
  head -c "$size" /dev/zero | tr '\0' 'x' > "$work/www/body-$size.json"
done
nginx -c "$work/nginx.conf" -p "$work" &
pids+=("$!")
wait_port "$origin_port"

# Every request a new URL: /body-SIZE.json?u=RUN-N.
cat > "$work/unique.lua" <<'LUA'
local path, run, n = "/", "0", 0
function init(args) path = args[1]; run = args[2] end
function request()
  n = n + 1
  return wrk.format("GET", path .. "?u=" .. run .. "-" .. n)
end
LUA

bytes_of() {
  python3 -c '
import sys, re
m = re.fullmatch(r"(\d+)\s*(B|KB|MB|GB)?", sys.argv[1].strip(), re.I)
print(int(m.group(1)) * {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[(m.group(2) or "").upper()])' "$1"
}

# The process's memory in bytes: anonymous resident memory plus all pages
# of its sealed memory files; then VmRSS.
memory_of() {
  python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
status = {}
for line in open(f"/proc/{pid}/status"):
    k, _, v = line.partition(":")
    if v.strip().endswith("kB"):
        status[k] = int(v.split()[0]) * 1024
sealed = 0
fds = f"/proc/{pid}/fd"
for fd in os.listdir(fds):
    try:
        if os.readlink(f"{fds}/{fd}").startswith("/memfd:uip-cache-entry"):
            sealed += (os.stat(f"{fds}/{fd}").st_size + 4095) // 4096 * 4096
    except OSError:
        pass
print(status["RssAnon"] + sealed, status["VmRSS"])
PY
}

metric() {
  curl -s "http://127.0.0.1:$admin_port/cache/metrics" |
    python3 -c "import json,sys; m=json.load(sys.stdin); print(m['keys_count'], m['memory']['used_memory_bytes'])"
}

mb() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }

rows=()
run=0
for max in $MAX_BYTES; do
  max_b=$(bytes_of "$max")
  for size in $SIZES; do
    port=$(free_port); admin_port=$(free_port)
    cat > "$work/memory.yaml" <<YAML
store:
  type: memory
  max_bytes: $max
policies:
  - name: all
    pattern: "/*"
    ttl: 3600
admin:
  enabled: true
  listen: "127.0.0.1:$admin_port"
logging:
  level: warn
YAML
    "$bin" serve --config "$work/memory.yaml" --listen "127.0.0.1:$port" \
      --upstream "http://127.0.0.1:$origin_port" &
    server=$!
    pids+=("$server")
    wait_port "$port"; wait_port "$admin_port"
    sleep 1
    read -r base _ < <(memory_of "$server")
    target=$(( FILL * max_b / size ))
    sent=0
    while [ "$sent" -lt "$target" ]; do
      run=$((run + 1))
      out=$(wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/unique.lua" "http://127.0.0.1:$port" -- "/body-$size.json" "$run")
      n=$(awk '/requests in/{print $1}' <<<"$out")
      sent=$((sent + n))
      errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
      [ -z "$errors" ] || echo "  $max $size: $errors" >&2
    done
    read -r entries accounted < <(metric)
    read -r mem rss < <(memory_of "$server")
    row=$(python3 - "$max" "$size" "$max_b" "$entries" "$accounted" "$base" "$mem" "$rss" <<'PY'
import sys
max_s, size, max_b, entries, accounted, base, mem, rss = sys.argv[1], *map(int, sys.argv[2:])
M = 1 << 20
print(f"| {max_s} | {size // 1024} KB | {entries} | {accounted / M:.1f} | {base / M:.1f} | {mem / M:.1f} ({rss / M:.1f}) "
      f"| {(mem - base) / max_b:.2f} | {mem / max_b:.2f} | {(mem - base) / max(1, entries * size):.2f} |")
PY
)
    echo "  $row"
    rows+=("$row")
    kill "$server"; wait "$server" 2>/dev/null || true
  done
done

echo
echo "| max_bytes | body | entries | accounted MB | base MB | memory MB (VmRSS) | (memory - base) / max_bytes | memory / max_bytes | memory per cached body byte |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
