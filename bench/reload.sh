#!/usr/bin/env bash
# Config reloads under load: wrk against `uip-cache serve` (memory store,
# cache hits and misses through two routes to a static nginx origin) while
# `POST /config/reload` runs every 100 ms, each reload swapping between two
# configs that change a TTL and a route's backend; then the same run
# without reloads.
#
#   bench/reload.sh                      # 3 rounds of 10 s each way
#   ROUNDS=5 DURATION=5 bench/reload.sh
#
# Reports, per mode, the median req/s and p99, wrk's socket errors and
# non-2xx/3xx answers (expected 0 with reloads too), and how many reloads
# ran and failed (expected 0 failed). A third mode runs the same loop
# (file swap and curl every 100 ms) with `GET /health` instead of the
# reload: the cost of the loop's own processes on a small machine, apart
# from the reload's. The server runs one worker thread,
# wrk one thread with 64 connections; the reload loop is a shell loop of
# curl. Needs nginx, wrk and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
SECRET=bench-reload

for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench/reload.sh needs $tool (apt-get install nginx wrk curl)" >&2; exit 1; }
done

. "$here/common.sh" reload

echo "== building the server (release)"
build_server
origin_port=$(free_port); origin2_port=$(free_port); ours_port=$(free_port); admin_port=$(free_port)
nginx_conf "$origin_port" "$(free_port)"
python3 -c 'import sys; open(sys.argv[1], "w").write("x" * 2048)' "$work/www/body.json"
# The origin alone (the template's cache server is not used here), on two
# ports: the two backends the reloads switch between.
cat > "$work/origin.conf" <<NGINX
worker_processes 1;
pid $work/origin.pid;
error_log $work/origin-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$origin_port;
        listen 127.0.0.1:$origin2_port;
        root $work/www;
        location / { try_files /body.json =404; }
    }
}
NGINX
nginx -c "$work/origin.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$origin_port"

# Two configs: A (TTL 60 s, /cold to the first port) and B (TTL 120 s,
# /cold to the second). /hot is a hit after its first request; /cold is
# a miss every time (no policy), so the route swap is on the request path.
config() { # ttl cold_port
  cat <<YAML
store:
  type: memory
  max_bytes: 256MB
policies:
  - name: hot
    pattern: "/hot*"
    ttl: $1
admin:
  enabled: true
  listen: 127.0.0.1:$admin_port
  secret: $SECRET
logging:
  level: warn
server:
  listen: 127.0.0.1:$ours_port
  workers: 1
  upstream: http://127.0.0.1:$origin_port
  routes:
    - { path_prefix: "/cold", upstream: "http://127.0.0.1:$2" }
YAML
}
config 60 "$origin_port" > "$work/a.yaml"
config 120 "$origin2_port" > "$work/b.yaml"
cp "$work/a.yaml" "$work/serve.yaml"
"$bin" serve --config "$work/serve.yaml" > "$work/serve.log" 2>&1 &
pids+=($!)
wait_port "$ours_port"; wait_port "$admin_port"

# wrk: 9 of 10 requests hit /hot/<n> (8 keys), 1 in 10 goes to /cold.
cat > "$work/mix.lua" <<'LUA'
local i = 0
request = function()
  i = i + 1
  if i % 10 == 0 then
    return wrk.format("GET", "/cold/" .. i)
  end
  return wrk.format("GET", "/hot/" .. (i % 8))
end
LUA
for n in 0 1 2 3 4 5 6 7; do curl -s -o /dev/null "http://127.0.0.1:$ours_port/hot/$n"; done

reloads_ok=0; reloads_failed=0
reload_loop() { # mode; runs until killed; counts in a file
  local n=0 ok=0 failed=0 code
  while :; do
    n=$((n + 1))
    if [ $((n % 2)) = 0 ]; then cp "$work/a.yaml" "$work/serve.yaml.new"; else cp "$work/b.yaml" "$work/serve.yaml.new"; fi
    mv "$work/serve.yaml.new" "$work/serve.yaml"
    if [ "$1" = reloads ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Webhook-Secret: $SECRET" "http://127.0.0.1:$admin_port/config/reload")
    else
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/health")
    fi
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    echo "$ok $failed" > "$work/reloads"
    sleep 0.1
  done
}

run() { # mode round
  local out="$work/wrk-$1-$2.txt" loop=""
  if [ "$1" != none ]; then
    echo "0 0" > "$work/reloads"
    reload_loop "$1" & loop=$!
  fi
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/mix.lua" "http://127.0.0.1:$ours_port/" > "$out"
  if [ -n "$loop" ]; then
    kill "$loop"; wait "$loop" 2>/dev/null || true
    if [ "$1" = reloads ]; then
      read -r ok failed < "$work/reloads"
      reloads_ok=$((reloads_ok + ok)); reloads_failed=$((reloads_failed + failed))
    fi
  fi
}

for round in $(seq "$ROUNDS"); do
  # Each round starts with another mode.
  case $((round % 3)) in
    1) modes="reloads none control" ;;
    2) modes="none control reloads" ;;
    *) modes="control reloads none" ;;
  esac
  for mode in $modes; do
    echo "== round $round: $mode"
    run "$mode" "$round"
  done
done

python3 - "$work" "$ROUNDS" "$reloads_ok" "$reloads_failed" <<'PY'
import re, statistics, sys
work, rounds, ok, failed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def p99(text):
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rows = {}
for mode in ("none", "control", "reloads"):
    rps, tail, sock, non2xx, total = [], [], 0, 0, 0
    for r in range(1, rounds + 1):
        t = open(f"{work}/wrk-{mode}-{r}.txt").read()
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        tail.append(p99(t))
        total += int(re.search(r"(\d+) requests in", t).group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
        if m:
            sock += sum(int(x) for x in m.groups())
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        if m:
            non2xx += int(m.group(1))
    rows[mode] = (statistics.median(rps), statistics.median(tail), sock, non2xx, total)
base = rows["none"][0]
print()
print("| mode | req/s (median) | p99 ms | vs no reloads | requests | socket errors | non-2xx/3xx |")
print("|---|---|---|---|---|---|---|")
for mode, label in (("none", "no reloads"), ("control", "the loop with GET /health, no reload"), ("reloads", "reload every 100 ms")):
    r, t, s, n, total = rows[mode]
    print(f"| {label} | {r:,.0f} | {t:.2f} | {r / base:.2f}x | {total:,} | {s} | {n} |")
print()
print(f"reloads: {ok} answered 200, {failed} failed")
PY
grep -E "ERROR|panicked" "$work/serve.log" | head -5 || true
