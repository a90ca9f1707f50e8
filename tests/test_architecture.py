"""The house's rules, read from the source: imports run one way, the engine knows no Streamlit, a private name stays in
its module, and Streamlit's and Keras's internals are each reached through one seam."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from conftest import PROJECT_ROOT

PACKAGES = ("explainers", "ui")
# Streamlit's runtime (a private API): touched only here, behind one tested function (budget.run_stopped).
STREAMLIT_INTERNALS_SEAM = "ui.budget"
# Keras's private graph API: touched only here, behind functions tests/test_keras_internals.py checks on every upgrade.
KERAS_INTERNALS_SEAM = "explainers.runtime.keras_internals"
KERAS_PRIVATE_ATTRIBUTES = frozenset({"_keras_history", "_inbound_nodes", "_functional", "_run_through_graph"})


class Imported(NamedTuple):
    importer: str  # the module importing
    module: str  # the dotted name imported from, resolved
    names: tuple[str, ...]  # the names taken from it (empty for ``import x``)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path) -> Iterator[Imported]:
    """Every import of the module, at any depth (a lazy import inside a function closes a circle too), except under
    ``if TYPE_CHECKING:``, which never runs."""
    tree = ast.parse(path.read_text())
    skipped = {id(child) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for statement in node.body for child in ast.walk(statement)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Imported(module, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield Imported(module, base, tuple(alias.name for alias in node.names))


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted name lies in (``explainers.trust.masks.mask_at_size`` -> ``explainers.trust.masks``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports. A module importing its own package (``explainers.x`` reading
    ``explainers``) is left out: Python runs the package first, so that import is no circle."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for imported in _imports(module, path):
            for name in [imported.module, *(f"{imported.module}.{n}" for n in imported.names)]:
                owner = _owner(name, modules)
                if owner and owner != module and not module.startswith(owner + "."):
                    graph[module].add(owner)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def test_the_circle_finder_finds_a_planted_circle_and_nothing_in_a_line():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_two_project_modules_import_each_other_even_through_others():
    circles = _circles(_graph(_modules()))
    assert circles == [], f"import circles: {circles}"


def test_the_engine_imports_no_streamlit():
    modules = _modules()
    for module, path in modules.items():
        if module.startswith("explainers"):
            streamlit = [i.module for i in _imports(module, path) if i.module.split(".")[0] == "streamlit"]
            assert not streamlit, f"{module} imports {streamlit}"


def test_no_module_takes_a_private_name_from_another():
    modules = _modules()
    taken = [f"{i.importer} takes {name} from {i.module}"
             for module, path in modules.items() for i in _imports(module, path)
             if _owner(i.module, modules) not in (None, module)
             for name in i.names if name.startswith("_") and not name.startswith("__")]
    assert taken == []


def test_streamlit_s_runtime_is_reached_only_through_its_one_seam():
    reached = sorted({i.importer for root in (*PACKAGES, "views") for path in (PROJECT_ROOT / root).rglob("*.py")
                      for i in _imports(".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts), path)
                      if i.module.startswith(("streamlit.runtime", "streamlit.web"))})
    assert reached == [STREAMLIT_INTERNALS_SEAM]


def _all_sources() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every Python file of the project: packages, views, tools, tests and the scripts."""
    paths = [path for root in (*PACKAGES, "views", "tools", "tests") for path in (PROJECT_ROOT / root).rglob("*.py")]
    for path in [*paths, *PROJECT_ROOT.glob("*.py")]:
        yield ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts), path


def _attributes_read(path: Path, names: frozenset[str]) -> set[str]:
    """Which of ``names`` the file reads as an attribute (``x.name``), anywhere in it."""
    return {node.attr for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in names}


def test_keras_s_private_graph_api_is_reached_only_through_its_one_seam():
    reached = {module: _attributes_read(path, KERAS_PRIVATE_ATTRIBUTES) for module, path in _all_sources()}
    elsewhere = sorted(f"{module} reads .{name}" for module, names in reached.items() if module != KERAS_INTERNALS_SEAM
                       for name in names)
    assert elsewhere == [], f"go through {KERAS_INTERNALS_SEAM} instead: {elsewhere}"
    # The seam reads every one of them: the scan finds what it looks for, and the list names what the seam covers.
    assert reached[KERAS_INTERNALS_SEAM] == KERAS_PRIVATE_ATTRIBUTES


def test_the_readme_layout_names_every_folder_and_engine_module():
    readme = (PROJECT_ROOT / "README.md").read_text()
    layout = readme[readme.index("## Project layout"):].split("\n## ")[0]
    folders = [path.name for path in PROJECT_ROOT.iterdir()
               if path.is_dir() and path.name not in ("artifacts", "__pycache__") and not path.name.startswith(".")]
    engine = [path.relative_to(PROJECT_ROOT).as_posix() for path in (PROJECT_ROOT / "explainers").iterdir()
              if path.is_dir() and path.name != "__pycache__"]
    modules = [path.name for path in (PROJECT_ROOT / "explainers").glob("*.py") if not path.name.startswith("__")]
    missing = [name for name in [*(f"`{f}/" for f in folders), *(f"`{e}/`" for e in engine), ".streamlit/"]
               if name not in layout]
    missing += [module for module in modules if module not in layout]
    assert missing == [], f"not in the README's layout table: {missing}"
