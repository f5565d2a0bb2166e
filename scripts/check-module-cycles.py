#!/usr/bin/env python3
"""Fails when two top-level modules of src/ import each other, directly or through others.

A module is a file or folder under src/ (lib.rs and main.rs aside); it depends on every
`crate::NAME` its code names (test modules and comments aside). Hand-written: cargo has no
module-level dependency check, and `cargo-modules` is an extra tool to install for one check.

Usage: scripts/check-module-cycles.py [SRC_DIR]
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
deps = {}
for root, _, files in os.walk(src):
    for name in files:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, src)
        module = rel.split(os.sep)[0].removesuffix(".rs")
        if module in ("lib", "main") or rel.endswith(os.sep + "tests.rs"):
            continue
        text = open(path, encoding="utf-8").read()
        text = text.split("#[cfg(test)]")[0]
        code = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
        named = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", code))
        for group in re.findall(r"crate::\{([^}]*)\}", code):
            named |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
        deps.setdefault(module, set()).update(named - {module})
deps = {m: {d for d in ds if d in deps} for m, ds in deps.items()}


def path_between(start, goal):
    """A dependency path from start to goal, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        if node == goal and len(path) > 1:
            return path
        for nxt in sorted(deps[node]):
            if nxt == goal:
                return path + [goal]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


cycles = sorted({tuple(p) for m in deps if (p := path_between(m, m))}, key=len)
if cycles:
    for cycle in cycles:
        print("FAIL: import cycle: " + " -> ".join(cycle))
    print("Move the type both sides need into a module of its own, next to the code that owns it.")
    sys.exit(1)
print(f"ok: no import cycle among {len(deps)} modules of src/")
