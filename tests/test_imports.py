"""The import graph of the daskmeans package has no cycle; ``--help`` stays light.

The graph is read from the source files with :mod:`ast` (nothing is imported):
every ``import`` and ``from ... import`` of a daskmeans module is an edge,
at module level or inside a function alike (an import inside a function that
reaches back up is still a circle). Imports under ``if TYPE_CHECKING:`` are
left out: they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daskmeans"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import nodes of a module, skipping ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {daskmeans modules it imports}}`` for every module of ``package``.

    ``from .x import y`` is an edge to ``x.y`` when that is a module, else to
    ``x``; the implicit import of a parent package is not an edge.
    """
    files = {_module_name(p, package.parent): p for p in package.rglob("*.py")}
    packages = {_module_name(p, package.parent) for p in package.rglob("__init__.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if name in packages else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                           for alias in node.names]
            for target in targets:
                while target and target not in files:  # import a.b.c -> module a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_reader_sees_cycles_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n"
        "def g():\n    from ..sub import c\n"
    )
    (pkg / "sub" / "c.py").write_text("import pkg.sub\n")
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}  # TYPE_CHECKING left out
    assert graph["pkg.sub.c"] == {"pkg.sub"}
    assert find_cycle(graph) is None
    (pkg / "sub" / "c.py").write_text("def h():\n    from ..a import f\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    assert _groups(import_graph(pkg)) == [{"pkg.a", "pkg.sub.b", "pkg.sub.c"}]


def _groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """Groups of two or more modules that reach each other (strongly connected)."""
    def reach(start: str, edges: dict[str, set[str]]) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reverse: dict[str, set[str]] = {}
    for node, edges in graph.items():
        for nxt in edges:
            reverse.setdefault(nxt, set()).add(node)
    groups, done = [], set()
    for node in sorted(graph):
        if node not in done:
            group = reach(node, graph) & reach(node, reverse)
            done |= group
            if len(group) > 1:
                groups.append(group)
    return groups


def test_daskmeans_has_no_import_cycle():
    graph = import_graph()
    assert "daskmeans.cli._fit" in graph and "daskmeans.cli._common" in graph["daskmeans.cli._fit"]
    groups = _groups(graph)
    report = [" -> ".join(find_cycle({k: graph[k] & g for k in g})) + f" ({len(g)} modules)"
              for g in groups]
    assert not groups, "modules importing each other: " + "; ".join(report)


def test_cli_modules_never_import_up():
    """Within the command line, imports go one way: ``__init__`` -> commands -> _common."""
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("daskmeans.cli."):
            assert "daskmeans.cli" not in edges, name
    assert graph["daskmeans.cli._common"] & {n for n in graph if n.startswith("daskmeans.cli")} \
        == set()


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["--version"]])
def test_help_imports_no_numeric_library(argv):
    """``daskmeans --help`` loads neither NumPy, Dask, Zarr nor any optional library."""
    code = (
        "import sys\n"
        "from daskmeans.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'numpy', 'dask', 'distributed', 'zarr', 'numba', 'scipy', 'sklearn',\n"
        "         'pandas', 'pyarrow', 'xarray', 'matplotlib'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_cli_imports_nothing_heavy_at_module_level():
    """``daskmeans/cli/*.py`` import NumPy, Dask, Zarr and the estimators inside functions."""
    allowed_daskmeans = {"daskmeans._errors"}
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or name in allowed_daskmeans, (
                    f"{path.name} imports {name} at module level"
                )


def test_select_k_stays_the_function_after_its_module_is_imported():
    # importing the submodule first used to rebind daskmeans.select_k to the module
    code = (
        "import daskmeans\n"
        "from daskmeans.select_k import elbow_index\n"
        "import daskmeans.select_k\n"
        "assert callable(daskmeans.select_k), type(daskmeans.select_k)\n"
        "assert daskmeans.select_k.__module__ == 'daskmeans.select_k'\n"
        "assert 'elbow_index' in vars(sys.modules['daskmeans.select_k'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


#: A default fit of a small NumPy array, in a fresh process; prints what it imported.
_FIT = (
    "import sys\n"
    "import numpy as np\n"
    "X = np.random.default_rng(0).normal(size=(2000, 4)).astype(np.float32)\n"
    "import dask.array\n"
    "before = {m for m in sys.modules if m.split('.')[0] == 'scipy'}\n"
    "from daskmeans import {cls}\n"
    "model = {cls}(8, random_state=0).fit(X)\n"
    "model.predict(X), model.transform(X), model.score(X), repr(model)\n"
    "after = {m for m in sys.modules if m.split('.')[0] == 'scipy'}\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'distributed')),\n"
    "      sorted(after - before))\n"
)


@pytest.mark.parametrize("cls", ["KMeans", "MiniBatchKMeans", "HierarchicalKMeans"])
def test_fitting_numpy_data_imports_neither_sklearn_nor_scipy(cls):
    """scikit-learn costs more to import than a small fit: the estimators implement its
    protocol without it. SciPy: nothing beyond what ``import dask.array`` itself loads
    when SciPy is installed (its sparse and fftpack modules). Nor ``distributed``: without
    it imported, no client can exist."""
    code = _FIT.replace("{cls}", cls)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[] []"


def test_fitting_numpy_data_needs_neither_sklearn_nor_scipy():
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = sys.modules['scipy'] = None  # importing them fails\n"
        "import numpy as np\n"
        "from daskmeans import KMeans\n"
        "X = np.random.default_rng(0).normal(size=(2000, 4)).astype(np.float32)\n"
        "km = KMeans(8, random_state=0).fit(X)\n"
        "assert (km.predict(X) == km.labels_).all()\n"
        "assert repr(km) == 'KMeans(random_state=0)', repr(km)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
