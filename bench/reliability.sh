#!/usr/bin/env bash
# Two reliability checks of `uip-cache serve` under load, on loopback:
#
# 1. streaming: a 1 GB response passes through (fast client, and a client
#    reading at 100 MB/s); the server's RSS is sampled every 100 ms and its
#    largest growth over the idle RSS reported (target: under 64 MB);
# 2. Redis outage: wrk runs for 20 s against the Redis-backed proxy while
#    redis-server is killed at 5 s and started again at 10 s; every request
#    must succeed (the store failing is a miss, not an error), and hits must
#    come back once Redis is up, without restarting the proxy.
#
#   bench/reliability.sh
# Needs nginx, wrk, curl, redis-server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
. "$here/common.sh" rel
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

build_server
origin_port=$(free_port); nginx_port=$(free_port); mem_port=$(free_port); redis_port=$(free_port); rproxy_port=$(free_port)
nginx_conf "$origin_port" "$nginx_port"
truncate -s 1G "$work/www/big.bin"
head -c 2048 /dev/zero | tr '\0' 'x' > "$work/www/small.json"
nginx -c "$work/nginx.conf" -p "$work" & pids+=("$!")
cat > "$work/memory.yaml" <<YAML
policies:
  - name: all
    pattern: "/*"
admin:
  enabled: false
logging:
  level: warn
YAML
"$bin" serve --config "$work/memory.yaml" --listen "127.0.0.1:$mem_port" --upstream "http://127.0.0.1:$origin_port" &
server=$!; pids+=("$server")
wait_port "$origin_port"; wait_port "$mem_port"

echo "== 1 GB through the proxy"
curl -s -o /dev/null "http://127.0.0.1:$mem_port/small.json"
idle=$(rss_kb "$server")
for rate in "" "100M"; do
  args=(-s -o /dev/null -w '%{http_code} %{size_download} %{time_total}')
  [ -n "$rate" ] && args+=(--limit-rate "$rate")
  curl "${args[@]}" "http://127.0.0.1:$mem_port/big.bin" > "$work/curl.out" &
  c=$!
  peak=$idle
  while kill -0 "$c" 2>/dev/null; do
    r=$(rss_kb "$server"); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  wait "$c"
  read -r code size secs < "$work/curl.out" || true
  growth=$(( (peak - idle) / 1024 ))
  printf '  client %-9s status %s, %s bytes in %ss; RSS idle %d MB, peak %d MB, growth %d MB (%s)\n' \
    "${rate:-unlimited}" "$code" "$size" "$secs" $((idle / 1024)) $((peak / 1024)) "$growth" \
    "$([ "$growth" -lt 64 ] && echo 'under 64 MB' || echo 'OVER 64 MB')"
  [ "$size" = 1073741824 ] || { echo "  incomplete body" >&2; exit 1; }
done

echo "== Redis killed and restarted under load"
cat > "$work/redis.yaml" <<YAML
store:
  type: redis
redis:
  host: 127.0.0.1
  port: $redis_port
policies:
  - name: all
    pattern: "/*"
admin:
  enabled: false
logging:
  level: error
YAML
redis-server --port "$redis_port" --save "" --appendonly no --loglevel warning & redis=$!
wait_port "$redis_port"
"$bin" serve --config "$work/redis.yaml" --listen "127.0.0.1:$rproxy_port" --upstream "http://127.0.0.1:$origin_port" &
pids+=("$!")
wait_port "$rproxy_port"
curl -s -o /dev/null "http://127.0.0.1:$rproxy_port/small.json"
wrk -t1 -c32 -d20s "http://127.0.0.1:$rproxy_port/small.json" > "$work/wrk.out" &
w=$!
sleep 5; kill -9 "$redis"; wait "$redis" 2>/dev/null || true; echo "  5 s: redis-server killed"
sleep 5; redis-server --port "$redis_port" --save "" --appendonly no --loglevel warning & redis=$!; pids+=("$redis"); echo "  10 s: redis-server started again"
wait "$w"
requests=$(awk '/requests in/{print $1}' "$work/wrk.out")
failures=$(awk '/Non-2xx/{n+=$NF} /Socket errors/{for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) {gsub(",","",$i); n+=$i}} END{print n+0}' "$work/wrk.out")
echo "  $requests requests, $failures failed (non-2xx or socket errors)"
x=""
for _ in $(seq 50); do
  x=$(curl -s -D - -o /dev/null "http://127.0.0.1:$rproxy_port/small.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
  [ "$x" = HIT ] && break
  sleep 0.2
done
echo "  after the restart: X-Cache $x"
[ "$failures" = 0 ] && [ "$x" = HIT ]
