#!/usr/bin/env bash
# Checks that Cargo.toml's `rust-version` is what the build needs, no more and no less.
#
# A toolchain other than the installed one cannot be downloaded here, so the minimum is
# computed instead of tried: it is the highest `rust-version` declared by any package the
# release build compiles (normal and build dependencies, from `cargo metadata` of the locked
# graph; dev-dependencies only matter to contributors). The project's own code is held to the
# same version by clippy's `incompatible_msrv` lint (on by default, `-D warnings` in CI), which
# flags any standard-library API stabilised after `rust-version`.
#
# Usage: scripts/check-msrv.sh        (exit 1 with the fix when the two disagree)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --format-version 1 --locked | python3 -c '
import json, re, sys

meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = meta["resolve"]["root"]

def version(text):
    return tuple(int(part) for part in text.split("."))

# Walk the normal and build dependencies of the root package.
seen, stack = set(), [root]
while stack:
    node = stack.pop()
    if node in seen:
        continue
    seen.add(node)
    for dep in nodes[node]["deps"]:
        if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
            stack.append(dep["pkg"])
seen.discard(root)

needed = max(
    ((version(packages[p]["rust_version"]), "%s %s" % (packages[p]["name"], packages[p]["version"]),
      packages[p]["rust_version"])
     for p in seen if packages[p]["rust_version"]),
)
declared = packages[root]["rust_version"]
if declared is None:
    sys.exit("FAIL: Cargo.toml has no rust-version; set rust-version = \"%s\" (%s needs it)" % (needed[2], needed[1]))
# Compare as major.minor: a patch level in a dependency still needs that minor release.
need_mm, have_mm = needed[0][:2], version(declared)[:2]
need_text = "%d.%d" % need_mm
print("rust-version: Cargo.toml says %s; the highest a dependency needs is %s (%s), over %d packages"
      % (declared, needed[2], needed[1], len(seen)))
if have_mm < need_mm:
    sys.exit("FAIL: %s needs Rust %s but Cargo.toml says rust-version = \"%s\": set it to \"%s\""
             % (needed[1], needed[2], declared, need_text))
if have_mm > need_mm:
    sys.exit("FAIL: rust-version = \"%s\" shuts out Rust %s, which every dependency supports: set it to \"%s\" "
             "(or, if the code itself needs more, say why next to rust-version and raise this check)"
             % (declared, need_text, need_text))
print("ok: rust-version %s is what the build needs" % declared)
'
