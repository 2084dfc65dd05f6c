#!/usr/bin/env python3
"""Checks that every #include between server/ and client/ folders runs down the
layer graph (docs/architecture.md, "Layers"), so that no arrow runs back up.

  tests/layers_test.py [ROOT]

Exit 1 listing each include that breaks the graph, with the file and line.
"""
import os
import re
import sys

# Each layer and the layers it may include (itself always). Mirrors the
# target_link_libraries of server/CMakeLists.txt and client/CMakeLists.txt.
ALLOWED = {
    "util": set(),
    "crypto": {"util"},
    "core": {"crypto", "util"},
    "audit": {"core", "crypto", "util"},
    "treaty": {"core", "crypto", "util"},
    "evidence": {"crypto", "util"},
    "config": {"treaty", "core", "crypto", "util"},
    "store": {"audit", "core", "crypto", "util"},
    "node": {"store", "config", "evidence", "treaty", "audit", "core", "crypto", "util"},
    "grpc": {"node", "store", "config", "evidence", "treaty", "audit", "core", "crypto",
             "util"},
    "client": {"config", "evidence", "treaty", "audit", "core", "crypto", "util"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(server|client)/([a-z_]+)/?')


def layer_of(path):
    parts = path.split(os.sep)
    if parts[0] == "client":
        return "client"
    if parts[0] == "server" and len(parts) > 2:
        return parts[1]
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    os.chdir(root)
    errors = []
    for top in ("server", "client"):
        for dirpath, _, files in os.walk(top):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                layer = layer_of(path)
                if layer is None:
                    continue
                if layer not in ALLOWED:
                    errors.append(f"{path}: folder '{layer}' is not a layer; add it to "
                                  "tests/layers_test.py and server/CMakeLists.txt")
                    continue
                with open(path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = "client" if m.group(1) == "client" else m.group(2)
                        if target != layer and target not in ALLOWED[layer]:
                            errors.append(f"{path}:{n}: layer '{layer}' includes '{target}', "
                                          f"which is not below it: {line.strip()}")
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} include(s) break the layer graph")
        return 1
    print("layers ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
