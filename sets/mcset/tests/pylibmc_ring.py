#!/usr/bin/env python3
"""Where does pylibmc (libmemcached weighted ketama) put each key?

Reads from stdin:

    server WEIGHT HOST:PORT      one line per memcached server, in order
    key KEY                      one line per key (no whitespace in keys)

Stores every key through one pylibmc client with the behavior
{"ketama_weighted": True}, then asks each server on its own (a one-server
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
    servers, keys = [], []
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
        else:
            sys.exit("line %d: expected 'server WEIGHT HOST:PORT' or 'key KEY'" % number)
    return servers, keys


def main():
    servers, keys = parse(sys.stdin)
    if not servers:
        sys.exit("no servers given")
    specs = [spec(*s) for s in servers]

    singles = [pylibmc.Client([s]) for s in specs]
    for single in singles:
        single.flush_all()

    ring = pylibmc.Client(specs, behaviors={"ketama_weighted": True})
    if not ring.behaviors.get("ketama_weighted"):
        sys.exit("pylibmc did not enable ketama_weighted")
    for key in keys:
        if not ring.set(key, "1"):
            sys.exit("pylibmc could not set %r" % key)

    holders = {key: [] for key in keys}
    for index, single in enumerate(singles):
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
