#!/usr/bin/env python3
"""Lists import cycles among the top-level modules of a crate's src/ (a file `x.rs` or folder
`x/` is module `x`; `crate::y` anywhere in it is an edge x -> y). Exit 1 when there is one.

    scripts/module_cycles.py crates/core/src crates/cli/src
"""
import os, re, sys

def modules(src):
    graph = {}
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        name = entry[:-3] if entry.endswith(".rs") else entry
        if name in ("lib", "main"):
            continue
        files = []
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                # Modules declared `#[cfg(test)] mod x;` are tests: skip them.
                tests = set()
                for n in names:
                    if n.endswith(".rs"):
                        decl = open(os.path.join(root, n), encoding="utf-8").read()
                        tests |= set(re.findall(r"#\[cfg\(test\)\]\s*mod (\w+);", decl))
                files += [
                    os.path.join(root, n)
                    for n in names
                    if n.endswith(".rs") and n[:-3] not in tests
                ]
        elif entry.endswith(".rs"):
            files = [path]
        else:
            continue
        edges = graph.setdefault(name, set())
        for f in files:
            text = open(f, encoding="utf-8").read()
            # Test modules may reach anywhere; only the code counts.
            text = re.split(r"#\[cfg\(test\)\]\s*mod \w+ \{", text)[0]
            # Comments (docs linking a module) are not imports.
            text = "\n".join(l.split("//")[0] for l in text.splitlines())
            for m in re.finditer(r"crate::([a-z_]+)", text):
                if m.group(1) != name:
                    edges.add(m.group(1))
            for m in re.finditer(r"use crate::\{([^}]*)\}", text):
                for part in re.findall(r"([a-z_]+)(?:::|\s*,|\s*$)", m.group(1)):
                    if part != name:
                        edges.add(part)
    return {k: {e for e in v if e in graph} for k, v in graph.items()}

def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    return out

status = 0
for src in sys.argv[1:]:
    found = cycles(modules(src))
    for c in found:
        print(f"{src}: cycle among {', '.join(c)}")
        status = 1
    if not found:
        print(f"{src}: no import cycle")
sys.exit(status)
