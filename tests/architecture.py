"""Static architecture checks on the project's own source, with :mod:`ast` only (nothing is imported).

The project is the ``.py`` files under the top-level packages ``pipeline/``, ``flows/`` and
``model/`` of a repository root (``packages=`` changes the list). Modules are named by dotted
path; a package is the module of its ``__init__.py`` (``pipeline/book/__init__.py`` is
``pipeline.book``).

API (every ``root`` may be a ``str`` or a ``Path``; results are sorted, deterministic):

- :func:`project_modules` -> ``{dotted name: Path}``
- :func:`import_graph` -> ``{module: {imported project module: [ImportSite, ...]}}``, one key per
  project module; the sites say where (file, line, statement) and how each edge arises
- :func:`import_cycles` (graph) -> ``[[module, ...], ...]``: strongly connected components of
  more than one module, and self-imports, each sorted
- :func:`cycle_edges`, :func:`cycle_path`, :func:`format_cycles`: the import lines behind a cycle
- :func:`private_imports` -> ``[PrivateImport]``: ``from X import _name`` across modules
- :func:`private_attribute_uses` -> ``[PrivateImport]``: ``X._name`` where ``X`` is a name bound to
  another project module (``from flows import ingest`` ... ``ingest._fail``), a separate check
- :func:`prefect_imports` -> ``[ImportStatement]``: Prefect imported anywhere under a package
- :func:`module_lines` -> ``[(module, lines)]``, largest first
- :func:`missing_docstrings` -> ``[module]``; :func:`parse_errors` -> ``[(module, message)]``;
  :func:`unresolved_imports` -> ``[ImportStatement]`` (project imports of modules that do not exist)

Edges. Every import statement counts, wherever it is: module level, functions, methods, class
bodies, ``try`` blocks and ``if TYPE_CHECKING:`` blocks (marked on the site). Relative imports
are resolved against the importing module. For ``from X import name``: if ``X.name`` is a project
module the edge goes to that submodule (kind ``"submodule"``), otherwise ``name`` is an attribute
and the edge goes to ``X`` itself (kind ``"from"``); ``import X.Y`` gives an edge to ``X.Y``
(kind ``"import"``). Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a`` and
``a.b`` (and ``from a.b import c`` runs ``a.b``'s), so those are recorded as kind ``"implied"``.

Implied edges and cycles. An implied edge takes part in cycle detection only when the package's
``__init__.py`` holds imports (one that holds none has no outgoing edge and can close no cycle)
*and* the package is not an ancestor of the importer: a module's own enclosing packages have
always begun initialising before the module's code runs, so e.g. ``pipeline.synthetic.writer``
importing ``pipeline.synthetic.audio`` re-runs nothing in ``pipeline/synthetic/__init__.py``,
although that ``__init__`` imports ``writer``. Counting those edges would put every submodule of a
re-exporting package in a cycle with it. Explicit imports of a package (``from pkg import name``
where ``name`` is defined in ``pkg/__init__.py``) always count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_PACKAGES: tuple[str, ...] = ("pipeline", "flows", "model")

__all__ = [
    "PROJECT_PACKAGES",
    "ImportSite",
    "ImportStatement",
    "PrivateImport",
    "cycle_edges",
    "cycle_path",
    "format_cycles",
    "import_cycles",
    "import_graph",
    "missing_docstrings",
    "module_lines",
    "parse_errors",
    "prefect_imports",
    "private_attribute_uses",
    "private_imports",
    "project_modules",
    "unresolved_imports",
]


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True, order=True)
class ImportSite:
    """One edge ``importer -> target`` made by one import statement."""

    path: str  # file of the importer, relative to the root, posix
    line: int
    importer: str
    target: str
    statement: str  # the statement, as ast.unparse writes it
    kind: str  # "import" | "from" | "submodule" | "implied"
    scope: str  # "module" | "class" | "function"
    type_checking: bool  # inside `if TYPE_CHECKING:`
    cycle_edge: bool  # takes part in cycle detection (see the module docstring)

    def describe(self) -> str:
        where = [] if self.scope == "module" else [f"in {self.scope}"]
        if self.type_checking:
            where.append("TYPE_CHECKING")
        if self.kind == "implied":
            where.append(f"runs {self.target}/__init__")
        note = f"  [{', '.join(where)}]" if where else ""
        return f"{self.path}:{self.line}: {self.importer} -> {self.target}: {self.statement}{note}"


@dataclass(frozen=True, order=True)
class ImportStatement:
    """An import statement of interest (Prefect in pipeline/, an unresolved project import)."""

    path: str
    line: int
    module: str  # the module holding the statement
    imported: str  # what it imports (dotted)
    statement: str
    scope: str

    def describe(self) -> str:
        note = {"module": "", "call": "  [dynamic import]"}.get(self.scope, f"  [in {self.scope}]")
        return f"{self.path}:{self.line}: {self.module}: {self.statement}{note}"


@dataclass(frozen=True, order=True)
class PrivateImport:
    """``importer`` takes the private ``name`` of the different project module ``module``."""

    path: str
    line: int
    importer: str
    module: str
    name: str
    statement: str

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} uses {self.module}.{self.name}: {self.statement}"


# --------------------------------------------------------------------------------------- modules


def project_modules(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> dict[str, Path]:
    """Every ``.py`` module under the given top-level packages, ``{dotted name: path}``, sorted."""
    root = Path(root)
    modules: dict[str, Path] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return dict(sorted(modules.items()))


@dataclass
class _Parsed:
    name: str
    path: Path
    rel: str
    is_package: bool
    source: str
    tree: ast.Module | None
    error: str | None
    statements: list[_Stmt] = field(default_factory=list)


def _parse_all(root: Path, packages: Iterable[str]) -> dict[str, _Parsed]:
    parsed = {}
    for name, path in project_modules(root, packages).items():
        rel = path.relative_to(root).as_posix()
        is_package = path.name == "__init__.py"
        try:
            data = path.read_bytes()
        except OSError as exc:  # deleted while we looked: others refactor as this runs
            parsed[name] = _Parsed(name, path, rel, is_package, "", None, f"unreadable: {exc}")
            continue
        source = data.decode("utf-8", errors="replace")
        try:
            tree = ast.parse(data, filename=rel)
        except (SyntaxError, ValueError) as exc:
            parsed[name] = _Parsed(name, path, rel, is_package, source, None, f"{type(exc).__name__}: {exc}")
            continue
        parsed[name] = _Parsed(name, path, rel, is_package, source, tree, None, _statements(tree))
    return parsed


def parse_errors(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[tuple[str, str]]:
    """Modules that do not parse (the other checks cannot see into them): ``[(module, message)]``."""
    return [(p.name, p.error) for p in _parse_all(Path(root), packages).values() if p.error]


def module_lines(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[tuple[str, int]]:
    """Lines per module, largest first (ties by name)."""
    counts = [(p.name, len(p.source.splitlines())) for p in _parse_all(Path(root), packages).values()]
    return sorted(counts, key=lambda item: (-item[1], item[0]))


def missing_docstrings(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[str]:
    """Modules (packages included) without a non-empty module docstring. Unparsable ones are left to
    :func:`parse_errors`."""
    missing = []
    for p in _parse_all(Path(root), packages).values():
        if p.tree is None:
            continue
        doc = ast.get_docstring(p.tree)
        if doc is None or not doc.strip():
            missing.append(p.name)
    return missing


# ------------------------------------------------------------------------------- import statements


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return False


@dataclass(frozen=True)
class _Stmt:
    node: ast.Import | ast.ImportFrom
    scope: str
    type_checking: bool


class _ImportCollector(ast.NodeVisitor):
    """Every import statement in a tree, with its scope and whether it is under TYPE_CHECKING."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.type_checking = 0
        self.found: list[_Stmt] = []

    def _scope(self) -> str:
        if "function" in self.stack:
            return "function"
        return self.stack[-1] if self.stack else "module"

    def _nested(self, node: ast.AST, kind: str) -> None:
        self.stack.append(kind)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node, "function")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node, "function")

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(node, "function")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._nested(node, "class")

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def _record(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append(_Stmt(node, self._scope(), self.type_checking > 0))

    visit_Import = _record
    visit_ImportFrom = _record


def _statements(tree: ast.Module) -> list[_Stmt]:
    collector = _ImportCollector()
    collector.visit(tree)
    return collector.found


def _resolve_base(importer: str, is_package: bool, level: int, module: str | None) -> str | None:
    """The absolute module named by ``from <level dots><module> import ...``; None if it climbs out."""
    if level == 0:
        return module
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    up = level - 1
    if up >= len(package):
        return None  # beyond the top-level package
    base = package[: len(package) - up]
    if module:
        base = base + module.split(".")
    return ".".join(base)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__") and len(name) > 4)


def _in_packages(name: str, packages: Iterable[str]) -> bool:
    return name.split(".")[0] in set(packages)


# ---------------------------------------------------------------------------------------- graph


def _edges_of(p: _Parsed, parsed: Mapping[str, _Parsed], packages: tuple[str, ...]):
    """(sites, unresolved) for one parsed module."""
    sites: list[ImportSite] = []
    unresolved: list[ImportStatement] = []
    if p.tree is None:
        return sites, unresolved
    for stmt in p.statements:
        node = stmt.node
        text = ast.unparse(node)
        explicit: dict[str, str] = {}  # target -> kind, this statement
        implied: set[str] = set()
        missing: list[str] = []

        def reach(target: str, kind: str, explicit=explicit, implied=implied, missing=missing) -> None:
            if target in parsed:
                explicit.setdefault(target, kind)
                implied.update(_ancestors(target))
            else:
                missing.append(target)
                implied.update(a for a in _ancestors(target) if a in parsed)

        if isinstance(node, ast.Import):
            for alias in node.names:
                if _in_packages(alias.name, packages):
                    reach(alias.name, "import")
        else:
            base = _resolve_base(p.name, p.is_package, node.level, node.module)
            if base is None:
                missing.append("." * node.level + (node.module or ""))
            elif _in_packages(base, packages):
                attribute_names = False
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and sub in parsed:
                        reach(sub, "submodule")
                    else:
                        attribute_names = True
                if attribute_names:
                    reach(base, "from")
                elif base in parsed:
                    implied.add(base)  # `from pkg import sub` runs pkg/__init__ first
                else:
                    missing.append(base)
        for target, kind in explicit.items():
            sites.append(ImportSite(p.rel, node.lineno, p.name, target, text, kind, stmt.scope, stmt.type_checking, True))
        for target in sorted(implied - set(explicit) - {p.name}):
            counts = bool(parsed[target].statements) and not p.name.startswith(target + ".")
            sites.append(
                ImportSite(p.rel, node.lineno, p.name, target, text, "implied", stmt.scope, stmt.type_checking, counts)
            )
        for target in dict.fromkeys(missing):
            unresolved.append(ImportStatement(p.rel, node.lineno, p.name, target, text, stmt.scope))
    return sites, unresolved


def import_graph(
    root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES
) -> dict[str, dict[str, list[ImportSite]]]:
    """``{module: {imported project module: [ImportSite, ...]}}`` for every project module.

    Iterating ``graph[module]`` gives the modules it imports, so the graph also works as a plain
    adjacency mapping; the sites carry the file, line and statement of each edge and whether it
    takes part in cycle detection (:attr:`ImportSite.cycle_edge`).
    """
    packages = tuple(packages)
    parsed = _parse_all(Path(root), packages)
    graph: dict[str, dict[str, list[ImportSite]]] = {}
    for name, p in parsed.items():
        edges: dict[str, list[ImportSite]] = {}
        sites, _ = _edges_of(p, parsed, packages)
        for site in sorted(sites):
            edges.setdefault(site.target, []).append(site)
        graph[name] = dict(sorted(edges.items()))
    return graph


def unresolved_imports(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[ImportStatement]:
    """Imports of project modules that do not exist (or relative imports climbing out of the tree)."""
    packages = tuple(packages)
    parsed = _parse_all(Path(root), packages)
    found = []
    for p in parsed.values():
        found.extend(_edges_of(p, parsed, packages)[1])
    return sorted(found)


def _cycle_targets(graph: Mapping[str, Iterable[str]], module: str) -> list[str]:
    edges = graph.get(module, ())
    targets = []
    for target in edges:
        if isinstance(edges, Mapping):
            sites = edges[target]
            if (
                isinstance(sites, (list, tuple))
                and sites
                and all(isinstance(s, ImportSite) for s in sites)
                and not any(s.cycle_edge for s in sites)
            ):
                continue
        targets.append(target)
    return targets


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Import cycles: each strongly connected component of more than one module, and each module
    that imports itself, as a sorted list; the list of them sorted.

    ``graph`` is :func:`import_graph`'s result (edges whose sites all have ``cycle_edge`` False
    are left out) or any ``{module: iterable of modules}`` (every edge counts).
    """
    adjacency = {module: _cycle_targets(graph, module) for module in graph}
    for targets in list(adjacency.values()):
        for target in targets:
            adjacency.setdefault(target, [])

    # Tarjan's algorithm, iterative (no recursion limit on long chains).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(adjacency):
        if start in index:
            continue
        work = [(start, iter(adjacency[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adjacency[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in adjacency[node]:
                    components.append(sorted(component))
    return sorted(components)


def cycle_edges(graph: Mapping[str, Mapping[str, list[ImportSite]]], cycle: Iterable[str]) -> list[ImportSite]:
    """The import sites that make ``cycle``: every counted edge between two of its modules."""
    members = set(cycle)
    sites = []
    for module in sorted(members):
        for target, target_sites in graph.get(module, {}).items():
            if target in members:
                sites.extend(s for s in target_sites if s.cycle_edge)
    return sorted(sites)


def cycle_path(graph: Mapping[str, Iterable[str]], cycle: list[str]) -> list[str]:
    """A shortest loop through the cycle's first module, ``[a, b, ..., a]``, for reading."""
    members = set(cycle)
    start = cycle[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in _cycle_targets(graph, node):
                if target not in members:
                    continue
                if target == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = previous[node]
                    path.append(start)
                    return list(reversed(path))
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    return [start]


def format_cycles(graph: Mapping[str, Mapping[str, list[ImportSite]]], cycles: list[list[str]]) -> str:
    """Every cycle, with a loop through it and every import line that makes it."""
    lines = [f"{len(cycles)} import cycle(s):"]
    for number, cycle in enumerate(cycles, 1):
        lines.append(f"  cycle {number} ({len(cycle)} module(s)): {', '.join(cycle)}")
        lines.append(f"    loop: {' -> '.join(cycle_path(graph, cycle))}")
        for site in cycle_edges(graph, cycle):
            lines.append(f"    {site.describe()}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- checks


def private_imports(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[PrivateImport]:
    """Every ``from X import _name`` (one leading underscore or a non-dunder ``__name``; dunders such
    as ``__version__`` are fine) where ``X`` is a different project module than the importer.
    ``module`` is ``X`` as resolved (relative imports included); ``_name`` may be a submodule."""
    packages = tuple(packages)
    found = []
    for p in _parse_all(Path(root), packages).values():
        if p.tree is None:
            continue
        for stmt in p.statements:
            node = stmt.node
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _resolve_base(p.name, p.is_package, node.level, node.module)
            if base is None or not _in_packages(base, packages) or base == p.name:
                continue
            for alias in node.names:
                if _is_private(alias.name) and f"{base}.{alias.name}" != p.name:
                    found.append(PrivateImport(p.rel, node.lineno, p.name, base, alias.name, ast.unparse(node)))
    return sorted(found)


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return list(reversed(parts))


def private_attribute_uses(root: str | Path, packages: Iterable[str] = PROJECT_PACKAGES) -> list[PrivateImport]:
    """``X._name`` where ``X`` is a name the file binds to a different project module, by
    ``import a.b [as X]`` or ``from pkg import submodule [as X]`` (``from flows import ingest`` then
    ``ingest._fail(...)``). Bindings are taken file-wide (a local variable shadowing an imported
    module's name would be a false positive). One entry per (module, name, line)."""
    packages = tuple(packages)
    parsed = _parse_all(Path(root), packages)
    found = set()
    for p in parsed.values():
        if p.tree is None:
            continue
        bound: dict[str, str] = {}
        for stmt in p.statements:
            node = stmt.node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if not _in_packages(alias.name, packages):
                        continue
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        bound[top] = top
            else:
                base = _resolve_base(p.name, p.is_package, node.level, node.module)
                if base is None or not _in_packages(base, packages):
                    continue
                for alias in node.names:
                    if f"{base}.{alias.name}" in parsed:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        if not bound:
            continue
        lines = p.source.splitlines()
        for node in ast.walk(p.tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            chain = _dotted(node.value)
            if not chain or chain[0] not in bound:
                continue
            module = bound[chain[0]]
            for part in chain[1:]:
                module = f"{module}.{part}"
                if module not in parsed:
                    break
            else:
                if module != p.name and module in parsed:
                    text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ast.unparse(node)
                    found.add(PrivateImport(p.rel, node.lineno, p.name, module, node.attr, text))
    return sorted(found)


def _literal_module(call: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")`` -> ``"x"``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def prefect_imports(
    root: str | Path, package: str = "pipeline", packages: Iterable[str] | None = None
) -> list[ImportStatement]:
    """Every import of ``prefect`` (``import prefect[.x]``, ``from prefect[.x] import ...``, and
    ``import_module``/``__import__`` of a literal ``"prefect..."``), at any depth, in the modules of
    ``package`` (a top-level package or a dotted subpackage)."""
    packages = tuple(packages) if packages is not None else tuple(dict.fromkeys((*PROJECT_PACKAGES, package.split(".")[0])))

    def is_prefect(name: str | None) -> bool:
        return bool(name) and (name == "prefect" or name.startswith("prefect."))

    found = []
    for p in _parse_all(Path(root), packages).values():
        if p.tree is None or not (p.name == package or p.name.startswith(package + ".")):
            continue
        for stmt in p.statements:
            node = stmt.node
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                if is_prefect(name):
                    found.append(ImportStatement(p.rel, node.lineno, p.name, name, ast.unparse(node), stmt.scope))
        for node in ast.walk(p.tree):
            if isinstance(node, ast.Call) and is_prefect(_literal_module(node)):
                found.append(ImportStatement(p.rel, node.lineno, p.name, _literal_module(node), ast.unparse(node), "call"))
    return sorted(set(found))
