"""No import cycles among the project's own modules (the guide's rule, checked rather than hoped).

Reads every module's imports with ``ast`` (nothing is imported or run): the benches (the
``bench`` package, its scripts put the repository on ``sys.path``) and the two packages,
voxgate_server and voxgate_manager. Imports inside functions count too: a cycle through a function-level import
still ties two modules together, and only works by the accident of call order. Imports under
``if TYPE_CHECKING:`` do not run, so they do not count. An edge is a module's own import: that
``import a.b.c`` also runs ``a`` and ``a.b`` first is not counted, so a package whose
``__init__`` imports its submodules (a registry) is not a cycle with them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# (folder on sys.path, what under it is the project's own)
SOURCES = [(ROOT, "bench/**/*.py"), (ROOT / "tts-inference-server", "voxgate_server/**/*.py"),
           (ROOT / "manager", "voxgate_manager/**/*.py")]


def module_name(base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Module name -> file, for every module the project ships or runs."""
    found: dict[str, Path] = {}
    for base, pattern in SOURCES:
        for path in sorted(base.glob(pattern)):
            found[module_name(base, path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in the tree, at any depth, except those under ``if TYPE_CHECKING``."""
    out: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``import name`` executes last: the name itself, or its nearest parent
    package that is the project's (None: not the project's)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` (file ``path``) imports."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[:len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one, else a name of pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            dep = _resolve(target, modules)
            if dep is not None and dep != name:
                deps.add(dep)
    return deps


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle
    through it, so a failure names the modules and the order they import each other in."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # the graphs here are a few hundred modules: recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(comp, graph) for comp in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first module: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def test_graph_sees_the_project() -> None:
    """The scan finds the modules and edges it is meant to (so that an empty graph cannot pass)."""
    graph = import_graph()
    assert "bench.turbo.gpu_turbo_bench" in graph and "voxgate_server.app" in graph and "voxgate_manager" in graph
    assert "bench.turbo.gpu_common" in graph["bench.turbo.gpu_turbo_bench"]
    assert any(dep.startswith("voxgate_server.") for dep in graph["voxgate_server.app"])


def test_find_cycles_names_a_cycle() -> None:
    """The detector itself: a function-level import back is a cycle, and it is named in order."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text("def f():\n    from . import two\n")
    (pkg / "two.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import one\n"
                                "from .sub import x\n")
    (pkg / "sub.py").write_text("from pkg.one import f\n")
    modules = {module_name(tmp_path, p): p for p in sorted(tmp_path.glob("pkg/*.py"))}
    graph = {n: imports_of(n, p, modules) for n, p in modules.items()}
    assert graph["pkg.one"] == {"pkg.two"} and graph["pkg.two"] == {"pkg.sub"}
    assert find_cycles(graph) == [["pkg.one", "pkg.two", "pkg.sub", "pkg.one"]]


def part_of(module: str) -> str:
    """Which part of the project a module is: its top-level package (bench, voxgate_server, voxgate_manager)."""
    return module.split(".")[0]


@pytest.mark.parametrize("part", ["bench", "voxgate_server", "voxgate_manager"])
def test_no_import_cycles(part: str) -> None:
    cycles = [c for c in find_cycles(import_graph()) if any(part_of(m) == part for m in c)]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
