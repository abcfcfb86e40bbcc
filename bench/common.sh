# Shared by the bench scripts (sourced): a scratch folder on tmpfs removed
# on exit with every background process started through `pids`, free
# loopback ports, waiting for a listener, the release server and the nginx
# config in front of a static origin.
# usage: . "$here/common.sh" NAME
work="$(mktemp -d "/dev/shm/uip-cache-$1.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

# The release server, built once.
build_server() {
  if [ -n "${UIP_CACHE_BIN:-}" ]; then bin="$UIP_CACHE_BIN"; return; fi
  (cd "$root" && cargo build --release -q -p uip-cache-server)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/uip-cache"
}

# nginx.conf for origin port $1 and proxy_cache port $2, in $work.
nginx_conf() {
  mkdir -p "$work/www" "$work/cache"
  # nginx workers run as an unprivileged user when started as root.
  chmod 755 "$work" "$work/www"; chmod 777 "$work/cache"
  sed -e "s#@DIR@#$work#g" -e "s#@CACHE@#$work/cache#g" \
      -e "s#@ORIGIN_PORT@#$1#g" -e "s#@NGINX_PORT@#$2#g" \
      "$here/nginx.conf.template" > "$work/nginx.conf"
}
