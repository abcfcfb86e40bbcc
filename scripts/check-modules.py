#!/usr/bin/env python3
"""Check that the top-level modules of uip-cache-core import each other
without a cycle.

Every file under uip-cache-core/src belongs to one top-level module: `foo.rs`
and everything under `foo/` to `foo` (`lib.rs` is the crate root and
belongs to none). A path that starts with `crate::` (in a `use`, or written
out in code) is an edge from the file's module to the module the path
names; a name the crate root re-exports (`crate::HttpCache`) counts as the
module it comes from. Comments, string literals and test-only code (`mod`
items under `#[cfg(test)]`, inline or in files of their own) are left out:
tests may reach anywhere.

The modules must form a directed graph without a cycle, so that each one
can be read, tested and changed knowing only the modules below it. On a
cycle the script prints it, with one place each edge is made, and exits 1.

    python3 scripts/check-modules.py             # check; exit 1 on a cycle
    python3 scripts/check-modules.py --verbose   # also print every edge
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "uip-cache-core" / "src"


def strip_comments_and_strings(text):
    """The text with comments, string and char literals blanked out (line
    breaks kept, so line numbers stay right)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"\w", text[i - 1 : i] or " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{7f}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


CFG_TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")


def without_test_code(text):
    """The text with inline `#[cfg(test)] mod x { .. }` blanked out, and the
    names of `#[cfg(test)] mod x;` files it declares."""
    test_files = []
    while True:
        m = CFG_TEST_MOD.search(text)
        if not m:
            return text, test_files
        if m.group(2) == ";":
            test_files.append(m.group(1))
            end = m.end()
        else:
            end = matching_brace(text, m.end() - 1) + 1
        text = text[: m.start()] + re.sub(r"[^\n]", " ", text[m.start() : end]) + text[end:]


def module_of(path):
    rel = path.relative_to(SRC)
    if rel.parts == ("lib.rs",):
        return None
    return rel.parts[0].removesuffix(".rs")


def root_reexports(lib_text):
    """Names the crate root re-exports, with the module each comes from."""
    names = {}
    for m in re.finditer(r"pub\s+use\s+(\w+)::([^;]*);", lib_text):
        module, rest = m.group(1), m.group(2)
        for name in re.findall(r"\b(\w+)\b(?!\s*::)", rest.replace("self", "")):
            if name != "as":
                names[name] = module
    return names


def edges():
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f) for f in files} - {None}
    lib = strip_comments_and_strings((SRC / "lib.rs").read_text())
    reexported = root_reexports(lib)

    # Files declared test-only by their parent (`#[cfg(test)] mod tests;`).
    texts, test_only = {}, set()
    for f in files:
        text, test_mods = without_test_code(strip_comments_and_strings(f.read_text()))
        texts[f] = text
        here = f.parent if f.name in ("mod.rs", "lib.rs") else f.with_suffix("")
        for name in test_mods:
            test_only.update({here / f"{name}.rs", here / name / "mod.rs"})
            test_only.update((here / name).rglob("*.rs"))

    found = {}  # (from, to) -> first "file:line"
    for f in files:
        src = module_of(f)
        if src is None or f in test_only:
            continue
        text = texts[f]
        targets = []
        # `crate::a::b`, `crate::Name`, and `use crate::{a::b, Name}` groups.
        for m in re.finditer(r"\bcrate\s*::\s*(\{|\w+)", text):
            if m.group(1) == "{":
                end = matching_brace(text, m.end() - 1)
                group = text[m.end() : end]
                # Only the first segment of each top-level item of the group.
                depth, item_starts = 0, [0]
                for k, ch in enumerate(group):
                    if ch == "{":
                        depth += 1
                    elif ch == "}":
                        depth -= 1
                    elif ch == "," and depth == 0:
                        item_starts.append(k + 1)
                for s in item_starts:
                    w = re.match(r"\s*(\w+)", group[s:])
                    if w:
                        targets.append((w.group(1), m.start()))
            else:
                targets.append((m.group(1), m.start()))
        for name, at in targets:
            if name in modules:
                dst = name
            elif name in reexported:
                dst = reexported[name]
            else:
                continue  # an item of the crate root itself
            if dst != src:
                line = text.count("\n", 0, at) + 1
                found.setdefault((src, dst), f"{f.relative_to(SRC.parent.parent)}:{line}")
    return modules, found


def cycles(modules, found):
    """One cycle per strongly connected component of more than one module."""
    graph = {m: sorted({b for (a, b) in found if a == m}) for m in modules}
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for m in sorted(modules):
        if m not in index:
            visit(m)

    result = []
    for scc in sccs:
        members = set(scc)
        start = scc[0]
        # Shortest way from start back to itself inside the component.
        prev, queue = {start: None}, [start]
        cycle = None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in graph[v]:
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    cycle = [start] + list(reversed(path))[1:] + [start]
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        result.append((scc, cycle))
    return result


def main():
    verbose = "--verbose" in sys.argv[1:]
    modules, found = edges()
    if verbose:
        for (a, b), at in sorted(found.items()):
            print(f"  {a} -> {b}   ({at})")
    bad = cycles(modules, found)
    if not bad:
        print(f"modules: {len(modules)} top-level modules of uip-cache-core, {len(found)} edges, no cycle")
        return 0
    for scc, cycle in bad:
        print(f"cycle among {{{', '.join(scc)}}}:")
        print("  " + " -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            print(f"    {a} -> {b}: {found[(a, b)]}")
    print(f"modules: {len(bad)} cycle(s) between the top-level modules of uip-cache-core")
    return 1


if __name__ == "__main__":
    sys.exit(main())
