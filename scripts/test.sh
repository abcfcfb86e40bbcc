#!/usr/bin/env bash
# The README's test command: every test of the workspace, then one honest
# summary line. Tests that need redis-server start their own throwaway
# servers; when redis-server is missing this script installs it if it can
# (root or password-less sudo, Debian's package) and says so, and otherwise
# the tests that could not run are counted as skipped, never as passed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "== redis-server is missing: installing Debian's redis-server package for the Redis tests"
    if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null; then
      if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        echo "== installed redis-server ($(command -v redis-server))"
      else
        echo "== redis-server was installed but is not on PATH: the Redis tests will be reported as skipped"
      fi
    else
      echo "== could not install redis-server: the Redis tests will be reported as skipped"
    fi
  else
    echo "== redis-server is not installed and cannot be installed here: the Redis tests will be reported as skipped"
  fi
fi

skips="$(mktemp)"
out="$(mktemp)"
trap 'rm -f "$skips" "$out"' EXIT
export UIP_CACHE_SKIP_LOG="$skips"

cargo test --workspace --all-features "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

# libtest prints one "test result:" line per test binary and doc-test run.
sum() { grep -E '^test result:' "$out" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
passed=$(sum passed)
failed=$(sum failed)
ignored=$(sum ignored)
# A test that returned early because redis-server was missing passed in
# libtest's eyes; it is counted here as skipped instead.
skipped=$(cut -f1,2 "$skips" | sort -u | wc -l)
if [ "$skipped" -gt 0 ]; then
  echo "== skipped (could not run here):"
  cut -f2,3 "$skips" | sort -u | sed 's/^/   /'
fi
echo
echo "tests: $((passed - skipped)) passed, $failed failed, $((skipped + ignored)) skipped"
exit "$status"
