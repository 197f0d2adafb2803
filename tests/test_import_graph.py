"""enofctl's modules import each other without a cycle at module level (imports inside functions, for lazy
loading, and under ``if TYPE_CHECKING:`` do not count), so the package's picture in ARCHITECTURE.md is a
layering; the dataset registry imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "enofctl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: not in a function, not under ``if TYPE_CHECKING:``."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            todo += node.orelse if _is_type_checking(node.test) else node.body + node.orelse
        elif isinstance(node, (ast.Try, ast.With, ast.ClassDef, ast.For, ast.While)):
            for name in ("body", "orelse", "finalbody", "handlers"):
                todo += getattr(node, name, [])
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the enofctl modules its module-level imports name (``from pkg import sub`` names ``pkg.sub``
    when that is a module, else ``pkg``)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_data_layer() -> None:
    graph = import_graph()
    assert "enofctl.augment" in graph["enofctl.events"]
    assert "enofctl.datasets.tensors" in graph["enofctl.events"]
    assert "enofctl.datasets.registry" in graph["enofctl.datasets.load"]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_imports_no_torch() -> None:
    code = ("import sys, enofctl.datasets.registry as r; r.availability(); r.dataset_info('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_module_over_400_lines() -> None:
    """The house's size limit for a module (issue #25); a module that grows past it is split by concern."""
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def long_functions(source: str, limit: int = 60) -> dict[str, int]:
    """Functions of ``source`` longer than ``limit`` lines, their decorators and signature included (a Typer
    command's options count)."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if (n := node.end_lineno - start + 1) > limit:
                out[node.name] = n
    return out


def test_the_length_check_counts_the_signature() -> None:
    body = "    x = 1\n" * 3
    source = "@dec\ndef f(\n" + "    a: int = 0,\n" * 58 + ") -> None:\n" + body
    assert long_functions(source) == {"f": 1 + 1 + 58 + 1 + 3}
    assert long_functions("def g():\n" + body) == {}


def test_no_function_over_60_lines() -> None:
    """The house's size limit for a function (issue #25): a longer one is split into named steps."""
    long = {f"{p.relative_to(PACKAGE)}:{name}": n for p in sorted(PACKAGE.rglob("*.py"))
            for name, n in long_functions(p.read_text()).items()}
    assert long == {}


def _every_import(path: Path, name: str, files: set[str]) -> set[str]:
    """The enofctl modules ``path`` imports when it runs: at module level or in functions (lazily); not under
    ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                anchor = parts[: len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in files and t != name}
    return out


# ARCHITECTURE.md's picture, top to bottom, coarsely: each module imports (even lazily) only its own layer or
# those below it. The bottom: the torch-free models and configs (and what they read: the dataset registry).
_BOTTOM = ("enofctl.schema", "enofctl.config", "enofctl.errors", "enofctl.datasets.registry",
           "enofctl.datasets.paths", "enofctl.datasets.workers")


def _layer(module: str) -> int:
    if module.startswith("enofctl.cli") or module == "enofctl.__main__":
        return 4
    if module in ("enofctl.report", "enofctl.plots"):
        return 3
    if module.startswith("enofctl.stages"):
        return 2
    if module == "enofctl" or module.startswith(_BOTTOM):
        return 0
    return 1


def test_no_arrow_upward() -> None:
    """cli -> report/plots -> stages -> the library -> schema/config; lazy imports count (they are
    dependencies too); only the package root (its version) is read from below. The check sees an arrow up."""
    assert _layer("enofctl.stages.distill") > _layer("enofctl.losses") > _layer("enofctl.config.distill")
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    upward = sorted(f"{m} -> {d}" for m, p in files.items() for d in _every_import(p, m, set(files))
                    if _layer(d) > _layer(m))
    assert upward == []
