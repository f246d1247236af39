#!/usr/bin/env python3
"""Checks the declared MSRV against the locked dependency graph.

For every workspace package that is published (`publish` not false), walks
its normal and build dependencies (not dev) through the resolved graph of
`cargo metadata` (the lock file, all features) and takes the highest
`rust-version` any of them declares. Fails if a published package declares
a lower `rust-version` than that, and prints what needs it.

Usage: .ci/msrv.py            check (exit 1 on a mismatch)
       .ci/msrv.py --print    print the required version and its crate
"""

import json
import subprocess
import sys


# Target cfgs no build of these crates ever sets.
NEVER_BUILT = {"cfg(loom)"}


def version_key(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])

    def normal_deps(node_id):
        for dep in nodes[node_id]["deps"]:
            kinds = [k for k in dep["dep_kinds"] if k["kind"] != "dev"]
            # Dependencies only under a model-checking cfg (`cfg(loom)`,
            # never set in a build of ours) do not bound the MSRV.
            kinds = [k for k in kinds if k.get("target") not in NEVER_BUILT]
            if kinds:
                yield dep["pkg"]

    failures = []
    overall = ("0", None)
    for member in sorted(members):
        package = packages[member]
        if package.get("publish") == []:
            continue
        seen, stack = set(), [member]
        need = ("0", None)
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            rv = packages[current].get("rust_version")
            if rv and version_key(rv) > version_key(need[0]):
                need = (rv, packages[current]["name"] + " " + packages[current]["version"])
            stack.extend(normal_deps(current))
        declared = package.get("rust_version") or "0"
        if version_key(need[0]) > version_key(overall[0]):
            overall = need
        if version_key(declared) < version_key(need[0]):
            failures.append("%s declares rust-version %s but %s needs %s"
                            % (package["name"], declared, need[1], need[0]))
    if "--print" in sys.argv:
        print("%s (%s)" % overall)
        return 0
    for failure in failures:
        print("MSRV: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
