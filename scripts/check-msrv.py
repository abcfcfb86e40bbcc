#!/usr/bin/env python3
"""Check the workspace's stated MSRV against its locked dependencies.

The workspace states its minimum supported Rust version in `rust-version`
([workspace.package] in Cargo.toml). A dependency that needs a newer Rust
makes that statement false, and users on the stated version find out when
their build fails. This script reads the `rust-version` of every locked
dependency (from its own Cargo.toml, through `cargo metadata --locked`),
takes the highest among what the published crates build with (normal and
build dependencies, every feature, every platform), and fails when the
stated MSRV is below it. Dev-dependencies only affect this workspace's own
tests and benches; the highest of those is printed too, and fails the check
as well, so the stated version also builds the tests.

    python3 scripts/check-msrv.py            # check; exit 1 when the MSRV is too low
    python3 scripts/check-msrv.py --verbose  # also list every dependency that states one
"""

import json
import subprocess
import sys
from pathlib import Path


def version(text):
    """'1.85' or '1.85.0' as a comparable tuple (1, 85, 0)."""
    parts = [int(p) for p in text.strip().split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(str(p) for p in v)


def main():
    verbose = "--verbose" in sys.argv[1:]
    root = Path(__file__).resolve().parent.parent
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    members = set(meta["workspace_members"])
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

    stated = {packages[m]["rust_version"] for m in members if packages[m].get("rust_version")}
    if len(stated) != 1:
        print(f"msrv: workspace members state {sorted(stated) or 'no'} rust-version; expected one", file=sys.stderr)
        return 1
    stated = version(stated.pop())

    def walk(roots, include_dev_of_roots):
        """Every package reachable from `roots` over normal and build edges
        (and, for the roots themselves, dev edges when asked)."""
        seen, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds & {None, "build"} or (include_dev_of_roots and pid in roots and "dev" in kinds):
                    todo.append(dep["pkg"])
        return seen - members

    published = [m for m in members if packages[m].get("publish") != []]
    needed = walk(published, False)
    everything = walk(list(members), True)

    def highest(ids):
        found = [(version(packages[i]["rust_version"]), packages[i]["name"], packages[i]["version"])
                 for i in ids if packages[i].get("rust_version")]
        found.sort(reverse=True)
        return found

    libs, all_deps = highest(needed), highest(everything)
    top_lib = libs[0][0] if libs else (0, 0, 0)
    top_all = all_deps[0][0] if all_deps else (0, 0, 0)

    def setters(found, top):
        return ", ".join(f"{n} {v}" for r, n, v in found if r == top)

    print(f"msrv: stated rust-version {show(stated)}")
    print(f"msrv: published crates' dependencies need {show(top_lib)} ({setters(libs, top_lib)}); "
          f"{len(needed)} dependencies, {len(libs)} state one")
    print(f"msrv: with dev-dependencies {show(top_all)} ({setters(all_deps, top_all)})")
    if verbose:
        for r, n, v in all_deps:
            print(f"   {show(r):>8}  {n} {v}")

    failed = False
    if stated < top_lib:
        print(f"msrv: FAIL: rust-version {show(stated)} is below {show(top_lib)}, which "
              f"{setters(libs, top_lib)} need(s); raise rust-version in Cargo.toml", file=sys.stderr)
        failed = True
    if stated < top_all:
        print(f"msrv: FAIL: the tests and benches need {show(top_all)} "
              f"({setters(all_deps, top_all)}), above rust-version {show(stated)}", file=sys.stderr)
        failed = True
    if not failed:
        print("msrv: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
