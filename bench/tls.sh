#!/usr/bin/env bash
# HTTPS cache hits of `uip-cache serve` against nginx proxy_cache, with the
# same ECDSA P-256 certificate (made here with openssl), TLS 1.3 only, in
# front of the same static origin, on loopback:
#
#   bench/tls.sh                    # 3 rounds of 10 s per target and test
#   ROUNDS=5 DURATION=5 bench/tls.sh
#   BASELINE_BIN=/tmp/uip-cache-old bench/tls.sh   # also an older build, as "before"
#
# Each server runs one worker on core 0, wrk one thread on core 1 (as
# bench/run.sh's pinned mode). Tests: keep-alive hits of a 2 KB and a
# 64 KB body (`wrk -t1 -c64 --latency`), and new connections per second
# (`-H "Connection: close"`: one full handshake per request, 2 KB body).
# wrk's one thread is the bottleneck of the handshake test (its side of
# each handshake costs more than the server's), so the table also shows
# the server's CPU time per request, read from /proc: that is what
# compares the servers there.
# Both servers offer the same TLS 1.3 suites, wrk (OpenSSL) picks
# TLS_AES_256_GCM_SHA384 with X25519 from either; neither uses kernel TLS
# (nginx's sendfile falls back to SSL_write without it; ours writes
# through rustls). The table shows medians and ratios ours / nginx.
# Needs nginx, wrk, openssl, curl and taskset.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"

for tool in nginx wrk openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "bench/tls.sh needs $tool (apt-get install nginx wrk openssl curl util-linux)" >&2; exit 1; }
done

. "$here/common.sh" tls

echo "== building the server (release)"
build_server
origin_port=$(free_port); nginx_port=$(free_port); ours_port=$(free_port); plain_port=$(free_port)
before_port=$(free_port); before_plain=$(free_port)
nginx_conf "$origin_port" "$(free_port)"
for size in 2048 65536; do
  python3 -c 'import sys; open(sys.argv[1], "w").write("x" * int(sys.argv[2]))' "$work/www/body-$size.json" "$size"
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
chmod 644 "$work/key.pem"

# nginx: the same origin and cache as bench/run.sh, served over TLS 1.3.
python3 - "$work/nginx.conf" "$nginx_port" "$work" <<'PY'
import sys
path, port, work = sys.argv[1], sys.argv[2], sys.argv[3]
conf = open(path).read()
tls = f"""
    server {{
        listen 127.0.0.1:{port} ssl reuseport;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache shared:SSL:10m;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""
conf = conf.rstrip()
assert conf.endswith("}")
open(path, "w").write(conf[:-1] + tls)
PY

cat > "$work/tls.yaml" <<YAML
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
server:
  listen: 127.0.0.1:$plain_port
  tls:
    listen: 127.0.0.1:$ours_port
    certificates:
      - { cert: $work/cert.pem, key: $work/key.pem }
YAML

start() {
  local cpus="$1"; shift
  taskset -c "$cpus" "$@" &
  pids+=("$!")
}
start 0 nginx -c "$work/nginx.conf" -p "$work"
nginx_pid="${pids[-1]}"
TOKIO_WORKER_THREADS=1 start 0 "$bin" serve --config "$work/tls.yaml" --upstream "http://127.0.0.1:$origin_port"
ours_pid="${pids[-1]}"
wait_port "$nginx_port"; wait_port "$ours_port"
targets="nginx:$nginx_port ours:$ours_port"
before_pid=
if [ -n "${BASELINE_BIN:-}" ]; then
  sed -e "s#127.0.0.1:$plain_port#127.0.0.1:$before_plain#" -e "s#127.0.0.1:$ours_port#127.0.0.1:$before_port#" \
    "$work/tls.yaml" > "$work/before.yaml"
  TOKIO_WORKER_THREADS=1 start 0 "$BASELINE_BIN" serve --config "$work/before.yaml" --upstream "http://127.0.0.1:$origin_port"
  before_pid="${pids[-1]}"
  wait_port "$before_port"
  targets="$targets before:$before_port"
fi

# CPU ticks (user + system) of a process and its children (nginx's worker).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(ps -o pid= --ppid "$1"); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  echo "$total"
}
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))

for t in $targets; do
  for size in 2048 65536; do
    url="https://127.0.0.1:${t#*:}/body-$size.json"
    for _ in 1 2 3; do curl -sk -o /dev/null "$url"; done
    x=$(curl -sk --tlsv1.3 -D - -o /dev/null "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
    [ "$x" = HIT ] || { echo "$t does not answer hits for body-$size.json (X-Cache: $x)" >&2; exit 1; }
  done
  cipher=$(echo | openssl s_client -connect "127.0.0.1:${t#*:}" -tls1_3 2>/dev/null | awk '/Cipher is/{print $NF; exit}')
  echo "  ${t%%:*}: TLS 1.3, $cipher"
done

echo "== $(nproc) cores; servers on core 0, wrk -t1 -c$CONNECTIONS -d${DURATION}s on core 1; $ROUNDS rounds"
list=($targets)
for test in "hit 2048" "hit 65536" "handshake 2048"; do
  read -r kind size <<<"$test"
  for round in $(seq "$ROUNDS"); do
    for i in "${!list[@]}"; do
      t=${list[$(( (i + round - 1) % ${#list[@]} ))]}
      cmd=(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
      [ "$kind" = handshake ] && cmd+=(-H "Connection: close")
      pid=$ours_pid; [ "${t%%:*}" = nginx ] && pid=$nginx_pid; [ "${t%%:*}" = before ] && pid=$before_pid
      before=$(cpu_ticks "$pid")
      out=$(taskset -c 1 "${cmd[@]}" "https://127.0.0.1:${t#*:}/body-$size.json")
      after=$(cpu_ticks "$pid")
      rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
      requests=$(awk '/requests in/{print $1}' <<<"$out")
      cpu=$(( (after - before) * tick_us / requests ))
      p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
      errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
      [ -z "$errors" ] || echo "  $kind $size ${t%%:*} round $round: $errors" >&2
      echo "$kind $size ${t%%:*} $rps $p99 $cpu" >> "$work/results"
      printf '  %-9s %6s B  %-6s round %s: %10s req/s  p99 %8s ms  server CPU %5s us/request\n' "$kind" "$size" "${t%%:*}" "$round" "$rps" "$p99" "$cpu"
    done
  done
done

python3 - "$work/results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(lambda: ([], [], []))
for line in open(sys.argv[1]):
    kind, size, target, rps, p99, cpu = line.split()
    rows[(kind, int(size), target)][0].append(float(rps))
    rows[(kind, int(size), target)][1].append(float(p99))
    rows[(kind, int(size), target)][2].append(float(cpu))
print()
print("| test | body | target | req/s (median) | p99 ms (median) | server CPU us/request (median) | throughput vs nginx | p99 vs nginx | CPU/request vs nginx |")
print("|---|---|---|---|---|---|---|---|---|")
for (kind, size, target) in sorted(rows, key=lambda k: (k[0] != "hit", k[1], k[2] != "nginx")):
    rps = statistics.median(rows[(kind, size, target)][0])
    p99 = statistics.median(rows[(kind, size, target)][1])
    cpu = statistics.median(rows[(kind, size, target)][2])
    base = rows.get((kind, size, "nginx"))
    if base and target != "nginx":
        ratio = f"{rps / statistics.median(base[0]):.2f}x"
        lat = f"{p99 / statistics.median(base[1]):.2f}x"
        cpur = f"{cpu / statistics.median(base[2]):.2f}x"
    else:
        ratio, lat, cpur = "1.00x", "1.00x", "1.00x"
    label = "keep-alive hits" if kind == "hit" else "new connection per request"
    print(f"| {label} | {size // 1024} KB | {target} | {rps:,.0f} | {p99:.2f} | {cpu:.0f} | {ratio} | {lat} | {cpur} |")
PY
