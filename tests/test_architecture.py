"""Architecture rules for pipeline/, flows/ and model/, checked statically (tests/architecture.py):
no import cycles, no private names taken across modules, no Prefect in pipeline/, a docstring on
every module. The analyser itself is first proven on a small tree with known answers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.architecture import (
    cycle_edges,
    format_cycles,
    import_cycles,
    import_graph,
    missing_docstrings,
    module_lines,
    parse_errors,
    prefect_imports,
    private_attribute_uses,
    private_imports,
    project_modules,
    unresolved_imports,
)

ROOT = Path(__file__).resolve().parents[1]


def _listing(items) -> str:
    return "\n".join(f"  {item.describe()}" for item in items)


# ------------------------------------------------------------------------------ the real project


def test_analyser_sees_the_project():
    modules = project_modules(ROOT)
    assert {"pipeline", "flows", "model"} <= set(modules), sorted(modules)
    assert len(modules) > 20, sorted(modules)
    errors = parse_errors(ROOT)
    assert not errors, "modules that do not parse (the checks below cannot see into them):\n" + "\n".join(
        f"  {name}: {message}" for name, message in errors
    )


def test_no_import_cycles():
    graph = import_graph(ROOT)
    cycles = import_cycles(graph)
    assert not cycles, format_cycles(graph, cycles)


def test_no_private_cross_module_imports():
    found = private_imports(ROOT)
    assert not found, f"{len(found)} private name(s) imported from another module (`from X import _name`):\n" + _listing(found)


def test_no_private_attributes_of_other_modules():
    found = private_attribute_uses(ROOT)
    assert not found, f"{len(found)} private name(s) of another module used as `module._name`:\n" + _listing(found)


def test_pipeline_never_imports_prefect():
    found = prefect_imports(ROOT, "pipeline")
    assert not found, "pipeline/ must not import Prefect (flows/ wires the stages):\n" + _listing(found)


def test_every_module_has_a_docstring():
    missing = missing_docstrings(ROOT)
    assert not missing, "modules without a module docstring:\n" + "\n".join(f"  {name}" for name in missing)


# ---------------------------------------------------------------- the analyser on a known tree

TREE = {
    "pipeline/__init__.py": '''
        """Pipeline: no imports here."""
        __version__ = "1.0"
        ''',
    # cycle 1: alpha -> beta at module level, beta -> alpha inside a function
    "pipeline/alpha.py": '''
        """Alpha. Not an import: `import pipeline.gamma` in a docstring."""
        from pipeline.beta import B

        A = 1


        def later():
            from pipeline.gone import nothing  # a module that does not exist
        ''',
    "pipeline/beta.py": '''
        """Beta."""
        B = 2


        def load():
            from pipeline.alpha import A
            return A
        ''',
    "pipeline/text/__init__.py": '''
        """Text package, no imports."""
        ''',
    # cycle 2: relative imports, one of them `from . import submodule` inside a method
    "pipeline/text/one.py": '''
        """One."""
        from .two import helper
        ''',
    "pipeline/text/two.py": '''
        """Two."""


        class Reader:
            def read(self):
                from . import one
                return one


        def helper():
            return 2
        ''',
    # Prefect inside pipeline/, three ways
    "pipeline/gamma.py": '''
        """Gamma."""
        import importlib

        try:
            from prefect import flow
        except ImportError:
            flow = None


        def run():
            import prefect.tasks
            return importlib.import_module("prefect")
        ''',
    "pipeline/broken.py": '''
        """Broken."""
        def oops(:
        ''',
    "flows/__init__.py": '''
        """Flows."""
        ''',
    # cycle 3: `from pkg import submodule` one way, TYPE_CHECKING the other
    "flows/main.py": '''
        """Main."""
        from flows import tasks


        def go():
            return tasks._helper() + tasks.__name__.count("x")
        ''',
    "flows/tasks.py": '''
        """Tasks: Prefect is fine in flows/."""
        from typing import TYPE_CHECKING

        import prefect

        if TYPE_CHECKING:
            from flows.main import go


        def _helper():
            return 1
        ''',
    # a re-exporting package: its submodules import siblings by full path (no cycle), but one
    # of them imports a name from the package itself (a cycle: cycle 4)
    "model/__init__.py": '''
        """Model."""
        from model.core import Net
        from model.extra import EXTRA
        ''',
    "model/core.py": '''
        """Core."""
        from pipeline import __version__
        from model.util import size
        from .util import _scale as scale

        Net = size * scale
        ''',
    "model/extra.py": '''
        """Extra."""
        EXTRA = 3


        def net():
            from model import Net
            return Net
        ''',
    "model/util.py": '''
        size = 3
        _scale = 2
        ''',
    # cycle 5: a self-import; its private name of itself is not a cross-module import
    "model/selfish.py": '''
        """Selfish."""
        import model.selfish
        from model.selfish import _own

        _own = 1
        ''',
    # not project modules
    "tests/test_x.py": "from pipeline.alpha import A\n",
    "bench/b.py": "from model.util import _scale\n",
}


def _line(root: Path, rel: str, text: str) -> int:
    for number, line in enumerate((root / rel).read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {rel}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, body in TREE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip("\n"))
    return tmp_path


def test_analyser_modules(tree):
    assert list(project_modules(tree)) == [
        "flows", "flows.main", "flows.tasks",
        "model", "model.core", "model.extra", "model.selfish", "model.util",
        "pipeline", "pipeline.alpha", "pipeline.beta", "pipeline.broken", "pipeline.gamma",
        "pipeline.text", "pipeline.text.one", "pipeline.text.two",
    ]  # fmt: skip
    assert [name for name, _ in parse_errors(tree)] == ["pipeline.broken"]
    lines = module_lines(tree)
    assert [count for _, count in lines] == sorted((count for _, count in lines), reverse=True)
    assert dict(lines)["pipeline.gamma"] == len((tree / "pipeline/gamma.py").read_text().splitlines())
    assert missing_docstrings(tree) == ["model.util"]


def test_analyser_edges(tree):
    graph = import_graph(tree)
    assert set(graph) == set(project_modules(tree))
    # relative imports, resolved
    assert "pipeline.text.two" in graph["pipeline.text.one"]
    assert [s.kind for s in graph["pipeline.text.two"]["pipeline.text.one"]] == ["submodule"]
    # `from flows import tasks` imports the submodule (and runs flows/__init__, an implied edge)
    assert graph["flows.main"]["flows.tasks"][0].kind == "submodule"
    assert [s.kind for s in graph["flows.main"]["flows"]] == ["implied"]
    # an attribute of a package is an import of the package; its parents' __init__ run too
    assert [s.kind for s in graph["model.core"]["pipeline"]] == ["from"]
    assert [s.kind for s in graph["model.extra"]["model"]] == ["from"]
    # TYPE_CHECKING and function scope are recorded
    (site,) = graph["flows.tasks"]["flows.main"]
    assert site.type_checking and site.line == _line(tree, "flows/tasks.py", "from flows.main import go")
    (site,) = graph["pipeline.beta"]["pipeline.alpha"]
    assert site.scope == "function" and site.line == _line(tree, "pipeline/beta.py", "from pipeline.alpha")
    # docstrings are not imports; non-project imports are not edges
    assert set(graph["pipeline.alpha"]) == {"pipeline", "pipeline.beta"}
    assert set(graph["pipeline.gamma"]) == set()
    assert [(i.module, i.imported) for i in unresolved_imports(tree)] == [("pipeline.alpha", "pipeline.gone")]


def test_analyser_cycles(tree):
    graph = import_graph(tree)
    cycles = import_cycles(graph)
    assert cycles == [
        ["flows.main", "flows.tasks"],
        ["model", "model.extra"],
        ["model.selfish"],
        ["pipeline.alpha", "pipeline.beta"],
        ["pipeline.text.one", "pipeline.text.two"],
    ]
    lines = [(s.path, s.line) for s in cycle_edges(graph, ["pipeline.alpha", "pipeline.beta"])]
    assert lines == [
        ("pipeline/alpha.py", _line(tree, "pipeline/alpha.py", "from pipeline.beta import B")),
        ("pipeline/beta.py", _line(tree, "pipeline/beta.py", "from pipeline.alpha import A")),
    ]
    message = format_cycles(graph, cycles)
    assert "5 import cycle(s)" in message
    assert f"pipeline/text/two.py:{_line(tree, 'pipeline/text/two.py', 'from . import one')}" in message
    assert "loop: flows.main -> flows.tasks -> flows.main" in message
    # a plain adjacency mapping works too, every edge counting
    assert import_cycles({"a": ["b"], "b": {"c"}, "c": ("a", "d"), "d": []}) == [["a", "b", "c"]]
    assert import_cycles({"a": ["a"], "b": []}) == [["a"]]


def test_analyser_private_and_prefect(tree):
    found = [(p.importer, p.module, p.name, p.line) for p in private_imports(tree)]
    assert found == [("model.core", "model.util", "_scale", _line(tree, "model/core.py", "_scale as scale"))]
    used = [(p.importer, p.module, p.name) for p in private_attribute_uses(tree)]
    assert used == [("flows.main", "flows.tasks", "_helper")]
    prefect = [(p.module, p.imported, p.line) for p in prefect_imports(tree, "pipeline")]
    assert prefect == [
        ("pipeline.gamma", "prefect", _line(tree, "pipeline/gamma.py", "from prefect import flow")),
        ("pipeline.gamma", "prefect.tasks", _line(tree, "pipeline/gamma.py", "import prefect.tasks")),
        ("pipeline.gamma", "prefect", _line(tree, "pipeline/gamma.py", 'import_module("prefect")')),
    ]
    assert [p.module for p in prefect_imports(tree, "flows")] == ["flows.tasks"]
