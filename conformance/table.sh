#!/usr/bin/env bash
# The results table of the README: uip-cache's last run of conformance/run.sh
# beside the published results of the other caches shipped with the suite,
# every row counted by summarize.mjs the same way (the results page's rules).
#
#   conformance/run.sh && conformance/table.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite="$here/.suite/cache-tests-b55b8bd"
ours="$here/.suite/results.json"
[ -f "$suite/results/index.mjs" ] || { echo "run conformance/run.sh first (it unpacks the suite)" >&2; exit 1; }
[ -f "$ours" ] || { echo "no results of ours: run conformance/run.sh first" >&2; exit 1; }

counts() {
  node "$here/summarize.mjs" "$suite" "$1" --json | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      const c = JSON.parse(s).counts
      console.log(`${c.required.passed} of ${c.required.total} | ${c.optimal.passed} of ${c.optimal.total}`)
    })'
}

echo "| cache | required passed | optional passed |"
echo "|---|---|---|"
echo "| **uip-cache** | $(counts "$ours") |"
# The reverse proxies and CDNs of the results page, with their versions.
(cd "$suite/results" && node --input-type=module -e '
  const list = (await import(process.cwd() + "/index.mjs")).default
  for (const r of list) if (r.type !== "browser") console.log(r.file + "\t" + r.name + " " + (r.version || ""))
') | while IFS=$'\t' read -r file name; do
  echo "| $name | $(counts "$suite/results/$file") |"
done
