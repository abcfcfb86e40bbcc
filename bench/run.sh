#!/usr/bin/env bash
# Throughput, tail latency and CPU per request of `uip-cache serve` (memory
# store, Redis, tiered) against nginx and Varnish, in front of the same
# static origin, on loopback, in one run:
#
#   bench/run.sh                        # every kind and size, 5 rounds of 10 s, pinned
#   ROUNDS=3 DURATION=5 bench/run.sh    # quicker
#   KINDS=hit SIZES=2048 bench/run.sh   # one row group
#   MODES="unpinned pinned" bench/run.sh
#   WORKERS=2 MODES=unpinned bench/run.sh   # ours with two threads
#   UIP_CACHE_BIN=new/uip-cache BASELINE_BIN=old/uip-cache bench/run.sh
#                                       # two builds of ours in one run (memory store)
#   CSV_OUT=bench/last-run.csv bench/run.sh # keep the raw rows
#
# Kinds of request:
#   hit   the same URL again and again, answered from the cache;
#   pass  a path no policy caches (nginx `proxy_pass` without a cache, a
#         Varnish `pass`), each request goes to the origin;
#   miss  a new URL every request (`/m/<run>-<n>/...`), fetched and stored.
# Targets: nginx (proxy_cache, or proxy_pass for `pass`: the baseline of
# every ratio), nginx-file (nginx serving the file itself; hits only),
# varnish (`-s malloc`, one thread pool; skipped when varnishd is missing),
# ours-memory, baseline-memory (BASELINE_BIN), ours-redis and ours-tiered
# (hits only; skipped without redis-server).
#
# Pinned mode (the default): every target on core 0, wrk and the origin on
# core 1; ours runs one worker thread as nginx runs one worker process.
# Each round starts one target later, so that no target always follows the
# same other one. Each measurement is `wrk -t1 -c64 -d${DURATION}s
# --latency`; the CPU time of the target's processes (user + system, from
# /proc) over the run, divided by the requests, is its CPU per request. The
# table shows medians and ratios to nginx in the same run; the raw rows
# are printed as CSV at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
SIZES="${SIZES:-2048 65536 1048576}"
MISS_SIZES="${MISS_SIZES:-2048}"
KINDS="${KINDS:-hit pass miss}"
MODES="${MODES:-pinned}"
CONNECTIONS="${CONNECTIONS:-64}"

for tool in nginx wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install nginx wrk util-linux python3)" >&2; exit 1; }
done

. "$here/common.sh" bench

echo "== building the server (release)"
build_server
origin_port=$(free_port); nginx_port=$(free_port); file_port=$(free_port); varnish_port=$(free_port)
mem_port=$(free_port); base_port=$(free_port); redis_proxy_port=$(free_port); tiered_proxy_port=$(free_port)
mkdir -p "$work/www" "$work/cache"
# nginx workers run as an unprivileged user when started as root.
chmod 755 "$work" "$work/www"; chmod 777 "$work/cache"
for t in origin edge; do
  sed -e "s#@DIR@#$work#g" -e "s#@CACHE@#$work/cache#g" -e "s#@ORIGIN_PORT@#$origin_port#g" \
      -e "s#@NGINX_PORT@#$nginx_port#g" -e "s#@FILE_PORT@#$file_port#g" \
      "$here/nginx-$t.conf.template" > "$work/nginx-$t.conf"
done
sed -e "s#@ORIGIN_PORT@#$origin_port#g" "$here/varnish.vcl.template" > "$work/varnish.vcl"
for size in $SIZES $MISS_SIZES; do
  [ -e "$work/www/body-$size.json" ] && continue
  python3 - "$work/www/body-$size.json" "$size" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2])
item = '{"id":"urn:ngsi-ld:Camera:%03d","type":"Camera","status":{"type":"Property","value":"on"}},'
parts, n, i = ["["], 1, 0
while n < size - 1:
    s = item % (i % 1000); parts.append(s); n += len(s); i += 1
out = "".join(parts)[: size - 1] + "]"
open(path, "w").write(out)
PY
done
# A new URL for every request of a run: /m/<run>-<n>/<file>.
cat > "$work/miss.lua" <<'LUA'
local prefix, file, n = "", "", 0
function init(args) prefix = args[1]; file = args[2] end
function request()
  n = n + 1
  return wrk.format(nil, "/m/" .. prefix .. "-" .. n .. "/" .. file)
end
LUA

policies='policies:
  - name: cached
    pattern: "/c/*"
  - name: misses
    pattern: "/m/*"'
cat > "$work/memory.yaml" <<YAML
store:
  type: memory
  max_bytes: 512MB
$policies
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
$policies
admin:
  enabled: false
logging:
  level: warn
YAML
  done
fi
varnish=""
command -v varnishd >/dev/null && varnish=1

# start <name> <cpu list or ""> <command...>: runs in the background, pinned
# when asked; the pid is kept under the target's name for the CPU reading.
declare -A pid_of
start() {
  local name="$1" cpus="$2"; shift 2
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@" & else "$@" & fi
  pids+=("$!")
  pid_of[$name]=$!
}

# cpu_ticks <pid>: user + system clock ticks of the process and its descendants.
cpu_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); stat = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        stat[int(d)] = (int(f[1]), int(f[11]) + int(f[12]))
seen, todo, total = set(), [root], 0
while todo:
    p = todo.pop()
    if p in seen or p not in stat:
        continue
    seen.add(p); total += stat[p][1]
    todo += [c for c, (pp, _) in stat.items() if pp == p]
print(total)
PY
}
hz=$(getconf CLK_TCK)

# The path a target is asked for, for a kind and size.
path_for() {
  local target="$1" kind="$2" size="$3"
  case "$kind:$target" in
    hit:nginx-file) echo "/body-$size.json" ;;
    hit:*) echo "/c/body-$size.json" ;;
    pass:*) echo "/p/body-$size.json" ;;
    miss:*) echo "/m/x/body-$size.json" ;;
  esac
}

# x_cache <url>: the X-Cache of a GET of url (upper case); fails unless 200.
x_cache() {
  local out
  out=$(curl -s -D - -o /dev/null "$1" | tr -d '\r')
  head -1 <<<"$out" | grep -q ' 200' || { echo "GET $1: $(head -1 <<<"$out")" >&2; exit 1; }
  awk -F': ' 'tolower($1)=="x-cache"{print toupper($2)}' <<<"$out"
}

targets_for() {
  local kind="$1" list="nginx"
  [ "$kind" = hit ] && list="$list nginx-file"
  [ -n "$varnish" ] && list="$list varnish"
  list="$list ours-memory"
  [ -n "${BASELINE_BIN:-}" ] && list="$list baseline-memory"
  [ "$kind" = hit ] && [ -n "$redis_port" ] && list="$list ours-redis ours-tiered"
  echo "$list"
}

declare -A port_of=([nginx]=$nginx_port [nginx-file]=$file_port [varnish]=$varnish_port
  [ours-memory]=$mem_port [baseline-memory]=$base_port [ours-redis]=$redis_proxy_port [ours-tiered]=$tiered_proxy_port)
# The process whose CPU a target spends (the edge nginx serves nginx and nginx-file).
declare -A proc_of=([nginx]=edge [nginx-file]=edge [varnish]=varnish [ours-memory]=ours-memory
  [baseline-memory]=baseline-memory [ours-redis]=ours-redis [ours-tiered]=ours-tiered)

echo "mode,kind,size,target,round,requests_per_s,p99_ms,cpu_us_per_request,errors" > "$work/results.csv"

run_mode() {
  local mode="$1" server_cpus="" side_cpus=""
  if [ "$mode" = pinned ]; then server_cpus=0; side_cpus=1; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  rm -rf "$work/cache"/* "$work/varnish"
  # One worker thread, as nginx has one worker process (WORKERS=2 unpinned
  # shows ours with a thread per core, competing with wrk for the cores).
  local threads="${WORKERS:-1}"
  [ "$mode" = pinned ] && threads=1
  start origin "$side_cpus" nginx -c "$work/nginx-origin.conf" -p "$work"
  start edge "$server_cpus" nginx -c "$work/nginx-edge.conf" -p "$work"
  if [ -n "$varnish" ]; then
    mkdir -p "$work/varnish"
    start varnish "$server_cpus" varnishd -F -n "$work/varnish" -a "127.0.0.1:$varnish_port" \
      -f "$work/varnish.vcl" -s malloc,1G -p thread_pools=1 >"$work/varnish.log" 2>&1
  fi
  TOKIO_WORKER_THREADS="$threads" start ours-memory "$server_cpus" "$bin" serve --config "$work/memory.yaml" \
    --listen "127.0.0.1:$mem_port" --upstream "http://127.0.0.1:$origin_port"
  if [ -n "${BASELINE_BIN:-}" ]; then
    TOKIO_WORKER_THREADS="$threads" start baseline-memory "$server_cpus" "$BASELINE_BIN" serve --config "$work/memory.yaml" \
      --listen "127.0.0.1:$base_port" --upstream "http://127.0.0.1:$origin_port"
  fi
  if [ -n "$redis_port" ]; then
    start redis "$side_cpus" redis-server --port "$redis_port" --save "" --appendonly no --daemonize no --loglevel warning --logfile "$work/redis.log"
    wait_port "$redis_port"
    TOKIO_WORKER_THREADS="$threads" start ours-redis "$server_cpus" "$bin" serve --config "$work/redis.yaml" \
      --listen "127.0.0.1:$redis_proxy_port" --upstream "http://127.0.0.1:$origin_port"
    TOKIO_WORKER_THREADS="$threads" start ours-tiered "$server_cpus" "$bin" serve --config "$work/tiered.yaml" \
      --listen "127.0.0.1:$tiered_proxy_port" --upstream "http://127.0.0.1:$origin_port"
  fi
  wait_port "$origin_port"
  for t in "${!port_of[@]}"; do
    case "$t" in varnish) [ -n "$varnish" ] || continue ;; baseline-memory) [ -n "${BASELINE_BIN:-}" ] || continue ;;
      ours-redis|ours-tiered) [ -n "$redis_port" ] || continue ;; esac
    wait_port "${port_of[$t]}"
  done
  local run=0
  for kind in $KINDS; do
    local sizes="$SIZES"
    [ "$kind" = miss ] && sizes="$MISS_SIZES"
    local list=($(targets_for "$kind"))
    for size in $sizes; do
      for t in "${list[@]}"; do
        # Check each target does what the kind says (and warm it up).
        local base="http://127.0.0.1:${port_of[$t]}" url x
        url="$base$(path_for "$t" "$kind" "$size")"
        [ "$kind" = miss ] && url="$base/m/check$RANDOM$RANDOM/body-$size.json"
        x=$(x_cache "$url")
        [ "$kind" = miss ] && [ "$x" = HIT ] && { echo "$t answers a new URL from its cache ($url)" >&2; exit 1; }
        for _ in 1 2; do x=$(x_cache "$url"); done
        case "$kind:$t" in
          hit:nginx-file) ;;
          hit:*|miss:*) [ "$x" = HIT ] || { echo "$t does not store and answer $url (X-Cache: $x)" >&2; exit 1; } ;;
          pass:*) [ "$x" != HIT ] || { echo "$t answers $url from its cache" >&2; exit 1; } ;;
        esac
      done
      for round in $(seq "$ROUNDS"); do
        for i in "${!list[@]}"; do
          local t=${list[$(( (i + round - 1) % ${#list[@]} ))]}
          local cmd=(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
          if [ "$kind" = miss ]; then
            run=$((run + 1))
            cmd+=(-s "$work/miss.lua" "http://127.0.0.1:${port_of[$t]}" -- "$mode$round$run$RANDOM" "body-$size.json")
          else
            cmd+=("http://127.0.0.1:${port_of[$t]}$(path_for "$t" "$kind" "$size")")
          fi
          local pid=${pid_of[${proc_of[$t]}]} before after out
          before=$(cpu_ticks "$pid")
          if [ -n "$side_cpus" ]; then out=$(taskset -c "$side_cpus" "${cmd[@]}"); else out=$("${cmd[@]}"); fi
          after=$(cpu_ticks "$pid")
          local rps p99 errors requests cpu
          rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
          requests=$(awk '/requests in/{print $1}' <<<"$out")
          p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
          errors=$(awk '/Non-2xx|Socket errors/{printf "%s; ", $0}' <<<"$out")
          cpu=$(python3 -c "print(round(($after - $before) * 1e6 / $hz / max(int('$requests'), 1), 2))")
          [ -z "$errors" ] || echo "  $mode $kind $size $t round $round: $errors" >&2
          echo "$mode,$kind,$size,$t,$round,$rps,$p99,$cpu,\"$errors\"" >> "$work/results.csv"
          printf '  %-8s %-4s %8s B  %-15s round %s: %10s req/s  p99 %8s ms  %7s us CPU/req\n' \
            "$mode" "$kind" "$size" "$t" "$round" "$rps" "$p99" "$cpu"
        done
      done
    done
  done
}

echo "== $(nproc) cores; wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency; $ROUNDS rounds; CPU ticks of $hz Hz"
for mode in $MODES; do run_mode "$mode"; done

python3 - "$work/results.csv" <<'PY'
import sys, csv, statistics, collections
rows = collections.defaultdict(lambda: ([], [], []))
for r in csv.DictReader(open(sys.argv[1])):
    k = (r["mode"], r["kind"], int(r["size"]), r["target"])
    rows[k][0].append(float(r["requests_per_s"])); rows[k][1].append(float(r["p99_ms"]))
    rows[k][2].append(float(r["cpu_us_per_request"]))
med = {k: tuple(statistics.median(v) for v in vs) for k, vs in rows.items()}
order = ["nginx", "nginx-file", "varnish", "ours-memory", "baseline-memory", "ours-redis", "ours-tiered"]
kinds = ["hit", "pass", "miss"]
print()
print("| mode | kind | body | target | req/s | p99 ms | CPU us/req | req/s vs nginx | CPU vs nginx | p99 vs nginx |")
print("|---|---|---|---|---|---|---|---|---|---|")
for k in sorted(med, key=lambda k: (k[0], kinds.index(k[1]), k[2], order.index(k[3]))):
    rps, p99, cpu = med[k]
    base = med.get((k[0], k[1], k[2], "nginx"))
    ratios = ("1.00x",) * 3
    if base and k[3] != "nginx":
        ratios = (f"{rps / base[0]:.2f}x", f"{cpu / base[2]:.2f}x" if base[2] else "-", f"{p99 / base[1]:.2f}x")
    size = f"{k[2] // 1024} KB" if k[2] < 1 << 20 else f"{k[2] >> 20} MB"
    print(f"| {k[0]} | {k[1]} | {size} | {k[3]} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} | " + " | ".join(ratios) + " |")
PY
echo
echo "raw rows (CSV):"
cat "$work/results.csv"
[ -z "${CSV_OUT:-}" ] || cp "$work/results.csv" "$CSV_OUT"
