#!/usr/bin/env python3
"""Where does pylibmc (libmemcached weighted ketama) put each key?

Reads from stdin:

    server WEIGHT HOST:PORT      one line per memcached server, in order
    dead INDEX                   optional: that server (0-based) is down
    key KEY                      one line per key (no whitespace in keys)

Stores every key through one pylibmc client with the behavior
{"ketama_weighted": True} (and, when a server is down, libmemcached's
failure ejection: "remove_failed" and "failure_limit" 1, a long
"dead_timeout", so the down server leaves the continuum at its first
failure; keys are stored a second time once it has), then asks each server on its own (a one-server
client) which of the keys it holds, and prints:

    # pylibmc VERSION libmemcached VERSION
    KEY INDEX                    INDEX: the server holding KEY (0-based, in
                                 input order), or -1 if none or several do

Needs Debian's python3-pylibmc (run it with /usr/bin/python3) and running
memcached servers; flushes them first.
"""

import sys

import pylibmc


def spec(host, port, weight):
    if ":" in host:
        host = "[%s]" % host
    return "%s:%d:%d" % (host, port, weight)


def parse(lines):
    servers, keys, dead = [], [], set()
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        kind, _, rest = line.partition(" ")
        if kind == "server":
            weight, address = rest.split()
            host, _, port = address.rpartition(":")
            servers.append((host.strip("[]"), int(port), int(weight)))
        elif kind == "key":
            keys.append(rest)
        elif kind == "dead":
            dead.add(int(rest))
        else:
            sys.exit("line %d: expected 'server WEIGHT HOST:PORT', 'dead INDEX' or 'key KEY'" % number)
    return servers, keys, dead


def main():
    servers, keys, dead = parse(sys.stdin)
    if not servers:
        sys.exit("no servers given")
    specs = [spec(*s) for s in servers]

    singles = [(i, pylibmc.Client([s])) for i, s in enumerate(specs) if i not in dead]
    for _, single in singles:
        single.flush_all()

    behaviors = {"ketama_weighted": True}
    if dead:
        behaviors.update(remove_failed=1, failure_limit=1, dead_timeout=3600)
    ring = pylibmc.Client(specs, behaviors=behaviors)
    if not ring.behaviors.get("ketama_weighted"):
        sys.exit("pylibmc did not enable ketama_weighted")
    if dead:
        for key in keys:
            try:
                ring.set(key, "1")
            except pylibmc.Error:
                pass
    for key in keys:
        if not ring.set(key, "1"):
            sys.exit("pylibmc could not set %r" % key)

    holders = {key: [] for key in keys}
    for index, single in singles:
        for start in range(0, len(keys), 100):
            for key in single.get_multi(keys[start:start + 100]):
                holders[key].append(index)

    out = sys.stdout
    out.write("# pylibmc %s libmemcached %s\n"
              % (pylibmc.__version__, pylibmc.libmemcached_version))
    for key in keys:
        found = holders[key]
        out.write("%s %d\n" % (key, found[0] if len(found) == 1 else -1))


if __name__ == "__main__":
    main()
