#!/usr/bin/env python3
"""Checks the house rules that the compiler does not: no import cycle among the
crate's modules, no function in src/ over the length limit, and a README that is
short and whose relative links resolve.

    python3 tools/check_house.py [--max-fn-lines 80] [--max-readme-lines 300] [--longest 5]

Exits 1 with one line per violation."""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def module_of(path: Path) -> str:
    """The top-level module a file belongs to: src/rescore/csv_out.rs -> rescore.
    A directory is one module; its files may use each other freely."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts in (["lib"], ["main"]):
        return "crate"
    return parts[0]


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(tree: str) -> list:
    """`a::{b, c::d}` -> [[a, b], [a, c, d]] (nested braces included)."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree.split("::")]
    head = [p for p in tree[:brace].split("::") if p]
    inner, depth, items, start = tree[brace + 1 : tree.rfind("}")], 0, [], 0
    for i, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    return [head + sub for item in items if item for sub in expand_use(item)]


def import_graph() -> dict:
    """Top-level module -> the top-level modules its files name through `crate::`
    (or, from a top-level file, `super::`)."""
    graph = {}
    for path in SRC.rglob("*.rs"):
        module = module_of(path)
        if module == "crate" or path.parent.name == "bin":
            continue
        text = strip_comments(path.read_text())
        # A module's unit tests (last in the file, as clippy wants) may use any module.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests\b", text)[0]
        if path.parent == SRC:
            text = re.sub(r"\bsuper::", "crate::", text)
        names = set()
        for use in re.findall(r"\buse\s+crate::([^;]+);", text):
            names.update(p[0] for p in expand_use(use) if p and p[0])
        names.update(re.findall(r"\bcrate::(\w+)", text))
        graph.setdefault(module, set()).update(n for n in names if n != module and ((SRC / f"{n}.rs").exists() or (SRC / n).is_dir()))
        graph[module].discard(module)
    return graph


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def function_lengths() -> list:
    """(lines, file:line, name) for every `fn` with a body in src/, by brace matching."""
    lengths = []
    for path in sorted(SRC.rglob("*.rs")):
        lines = path.read_text().splitlines()
        code = [strip_line(l) for l in lines]
        i = 0
        while i < len(code):
            match = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\w+)", code[i])
            if not match:
                i += 1
                continue
            end = body_end(code, i)
            if end is not None:
                lengths.append((end - i + 1, f"{path.relative_to(ROOT)}:{i + 1}", match.group(1)))
            i += 1
    return sorted(lengths, reverse=True)


def strip_line(line: str) -> str:
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def body_end(code: list, start: int):
    depth, opened = 0, False
    for j in range(start, len(code)):
        for ch in code[j]:
            if ch == "{":
                depth += 1
                opened = True
            elif ch == "}":
                depth -= 1
                if opened and depth == 0:
                    return j
            elif ch == ";" and not opened and depth == 0:
                return None  # a declaration without a body
    return None


def readme_problems(max_lines: int) -> list:
    problems = []
    readme = ROOT / "README.md"
    count = len(readme.read_text().splitlines())
    if count > max_lines:
        problems.append(f"README.md: {count} lines, over the limit of {max_lines}")
    for page in [readme, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if page.exists():
            problems += broken_links(page)
    return problems


def broken_links(page: Path) -> list:
    problems = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            problems.append(f"{page.relative_to(ROOT)}: link to {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{page.relative_to(ROOT)}: link to {target}: no such heading")
    return problems


def anchors(page: Path) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fn-lines", type=int, default=80)
    parser.add_argument("--max-readme-lines", type=int, default=300)
    parser.add_argument("--longest", type=int, default=5, help="print the N longest functions")
    args = parser.parse_args()
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(import_graph())]
    lengths = function_lengths()
    problems += [f"{where}: fn {name} has {n} lines, over {args.max_fn_lines}" for n, where, name in lengths if n > args.max_fn_lines]
    problems += readme_problems(args.max_readme_lines)
    for n, where, name in lengths[: args.longest]:
        print(f"longest: {n:4} lines  fn {name}  ({where})")
    for problem in problems:
        print(f"house: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
