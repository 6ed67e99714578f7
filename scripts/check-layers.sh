#!/usr/bin/env bash
# The layer check: no module of src/ imports a module of a higher layer.
#
# The layers are the list in src/lib.rs's crate documentation (the lines
# `//! - [`a`], [`b`]: ...` after "Layers, lowest first"), read from there so
# that the documentation and this check cannot disagree; every module that
# src/lib.rs declares must be in exactly one layer. A module may import
# modules of its own layer or of lower ones, but two modules of one layer may
# not import each other (a cycle). An import is a `use` tree or an inline
# path through `crate::` or through `super::` out of the module's root; test
# code (items under `#[cfg(test)]`, `#[cfg(all(test, ...))]` and the files such
# a `mod` declaration names) and comments (intra-doc links among them) do not
# count.
#
# Known violations, one per line as "from -> to", each with its reason; the
# check fails on any other, and on an entry here that no longer occurs (so
# that it is deleted when the code is fixed).
ALLOW=(
)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${ALLOW[@]}" <<'PYTHON'
import os
import re
import sys

ALLOW = set(" ".join(a.split()) for a in sys.argv[1:])


def blank(text, start, end):
    """Spaces for text[start:end], newlines kept (offsets and lines stay)."""
    return "".join(c if c == "\n" else " " for c in text[start:end])


def strip(text):
    """The text with comments and the contents of literals blanked."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text, i, j))
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
            out.append(blank(text, i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (
            i and (text[i - 1].isalnum() or text[i - 1] == "_")
            and text[i - 1] != "b"
        ):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            close = '"' + hashes
            j = text.find(close, i + len(hashes) + 2)
            j = n if j < 0 else j + len(close)
            out.append('"' + blank(text, i + 1, j - 1) + '"')
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append('"' + blank(text, i + 1, j - 1) + '"')
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2) + 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append("'" + blank(text, i + 1, j - 1) + "'")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(code, open_at):
    """The offset just past the brace that closes the one at open_at."""
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if not depth:
                return j + 1
    return len(code)


TEST_CFG = re.compile(r"#\s*\[\s*cfg\s*\(([^\]]*)\)\s*\]")
ATTR = re.compile(r"\s*#\s*!?\s*\[")


def drop_tests(code, original):
    """Blank the items under a test-only cfg; return the files of test-only
    `mod x;` declarations (as written: a #[path] or the module's name)."""
    test_files = []
    pos = 0
    while True:
        m = TEST_CFG.search(code, pos)
        if not m:
            return code, test_files
        cond = m.group(1)
        if not re.search(r"\btest\b", cond) or re.search(r"not\s*\(\s*test", cond):
            pos = m.end()
            continue
        start, j = m.start(), m.end()
        path = None
        while True:  # further attributes on the same item
            a = ATTR.match(code, j)
            if not a:
                break
            k = code.index("]", a.end())
            p = re.match(r'\s*path\s*=\s*"([^"]*)"', original[a.end():k])
            if p:
                path = p.group(1)
            j = k + 1
        semi, brace = code.find(";", j), code.find("{", j)
        if semi >= 0 and (brace < 0 or semi < brace):
            d = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code[j:])
            if d:
                test_files.append(path or d.group(1))
            end = semi + 1
        else:
            end = matching(code, brace)
        code = code[:start] + blank(code, start, end) + code[end:]
        pos = end


USE = re.compile(r"\buse\s+")
TOKEN = re.compile(r"\s*(::|[{},*;]|\w+)")


def use_paths(code, at):
    """Expand the use tree starting at `at`: (paths, end). A path is a list
    of (segment, offset)."""
    tokens = []
    i = at
    while True:
        m = TOKEN.match(code, i)
        if not m:
            return [], i + 1
        tokens.append((m.group(1), m.start(1)))
        i = m.end()
        if m.group(1) == ";":
            break
    paths = []

    def tree(k, prefix):
        path = list(prefix)
        while k < len(tokens):
            tok, off = tokens[k]
            if tok == "::":
                k += 1
            elif tok == "{":
                k += 1
                while tokens[k][0] != "}":
                    k = tree(k, path)
                    if tokens[k][0] == ",":
                        k += 1
                return k + 1
            elif tok in (",", "}", ";"):
                break
            elif tok == "as":
                k += 2
            else:
                path.append((tok, off))
                k += 1
        paths.append(path)
        return k

    tree(0, [])
    return paths, i


def module_path(rel):
    """src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]."""
    parts = rel[len("src/"):-len(".rs")].split("/")
    if parts[-1] == "mod":
        parts.pop()
    return parts


def target(modpath, segments):
    """The top-level module a path names, or None (external, or own)."""
    first = segments[0][0]
    if first == "crate":
        return segments[1] if len(segments) > 1 else None
    if first == "super":
        ups = 0
        while ups < len(segments) and segments[ups][0] == "super":
            ups += 1
        base = modpath[:-ups] if ups <= len(modpath) else []
        if base:
            return None  # still inside the module's own tree
        return segments[ups] if ups < len(segments) else None
    return None


def imports(rel, code):
    """(line, module) of every import that leaves the file's module."""
    modpath = module_path(rel)
    found = []

    def line(off):
        return code.count("\n", 0, off) + 1

    pos, spans = 0, []
    while True:
        m = USE.search(code, pos)
        if not m:
            break
        paths, end = use_paths(code, m.end())
        spans.append((m.start(), end))
        for p in paths:
            if p:
                t = target(modpath, p)
                if t:
                    found.append((line(t[1]), t[0]))
        pos = end
    rest = code
    for s, e in spans:
        rest = rest[:s] + blank(rest, s, e) + rest[e:]
    for m in re.finditer(r"\bcrate::(\w+)", rest):
        found.append((line(m.start(1)), m.group(1)))
    for m in re.finditer(r"\b((?:super::)+)(\w+)", rest):
        ups = m.group(1).count("super")
        if ups >= len(modpath):
            found.append((line(m.start(2)), m.group(2)))
    return sorted(set((l, t) for l, t in found if t != modpath[0]))


def main():
    lib = open("src/lib.rs").read()
    layers, in_list = [], False
    for raw in lib.splitlines():
        if not raw.startswith("//!"):
            continue
        text = raw[3:].strip()
        if text.startswith("Layers, lowest first"):
            in_list = True
        elif in_list and text.startswith("- "):
            layers.append(re.findall(r"`(\w+)`", text[2:].split(":", 1)[0]))
        elif in_list and not text:
            break
    layer_of = {}
    errors = []
    for index, names in enumerate(layers):
        for name in names:
            if name in layer_of:
                errors.append(f"src/lib.rs: `{name}` is in two layers")
            layer_of[name] = index
    declared = re.findall(r"^\s*(?:pub\s+)?mod\s+(\w+)\s*;", strip(lib), re.M)
    for name in declared:
        if name not in layer_of:
            errors.append(f"src/lib.rs: module `{name}` is in no layer of the list")
    for name in layer_of:
        if name not in declared:
            errors.append(f"src/lib.rs: the layer list names `{name}`, no module")
    if not layers:
        errors.append("src/lib.rs: no layer list (\"Layers, lowest first\")")

    files = []
    for name in declared:
        if os.path.exists(f"src/{name}.rs"):
            files.append(f"src/{name}.rs")
        for root, _, names in os.walk(f"src/{name}"):
            files += [os.path.join(root, f) for f in names if f.endswith(".rs")]
    parsed, test_only = {}, set()
    for rel in sorted(files):
        original = open(rel).read()
        code, tests = drop_tests(strip(original), original)
        parsed[rel] = code
        here = os.path.dirname(rel)
        modpath = module_path(rel)
        # `mod x;` in src/a.rs or src/a/mod.rs is src/a/x.rs; in src/a/b.rs
        # it is src/a/b/x.rs; a #[path] is relative to the file's folder.
        for t in tests:
            if t.endswith(".rs"):
                test_only.add(os.path.normpath(os.path.join(here, t)))
            else:
                folder = "src/" + "/".join(modpath)
                test_only.add(f"{folder}/{t}.rs")
                test_only.add(f"{folder}/{t}/mod.rs")

    # The submodules of a test-only module are test code too.
    folders = tuple(t[: -len("mod.rs")] if t.endswith("/mod.rs") else t[:-3] + "/" for t in test_only)
    test_only |= {rel for rel in parsed if rel.startswith(folders)}

    edges, used = {}, set()
    for rel, code in parsed.items():
        if rel in test_only:
            continue
        own = module_path(rel)[0]
        for line, other in imports(rel, code):
            if other not in layer_of or own not in layer_of:
                continue
            edge = f"{own} -> {other}"
            edges.setdefault(edge, []).append(f"{rel}:{line}")
            if layer_of[other] > layer_of[own]:
                if edge in ALLOW:
                    used.add(edge)
                    continue
                errors.append(
                    f"{rel}:{line}: {own} (layer {layer_of[own] + 1}) imports "
                    f"{other}, of the higher layer {layer_of[other] + 1}"
                )
    for edge, where in sorted(edges.items()):
        a, b = edge.split(" -> ")
        if layer_of[a] == layer_of[b] and a < b and f"{b} -> {a}" in edges:
            errors.append(
                f"{a} and {b} (one layer) import each other: {where[0]} and "
                f"{edges[f'{b} -> {a}'][0]}"
            )
    for edge in sorted(ALLOW - used):
        errors.append(f"scripts/check-layers.sh: ALLOW has \"{edge}\", which no "
                      "longer occurs: delete it")
    for e in errors:
        print(e)
    if errors:
        print(f"check-layers: {len(errors)} problem(s)")
        return 1
    print(f"check-layers: {len(layers)} layers, {len(parsed) - len(test_only & set(parsed))} files: ok")
    return 0


sys.exit(main())
PYTHON
