"""Architecture report for pipeline/, flows/ and model/: the largest modules, import cycles (with
the import lines that make them), private names taken across modules, Prefect imports in
pipeline/ and modules without a docstring. Static (ast); nothing of the project is imported.

Usage: python bench/architecture_report.py [--root DIR] [--top N]   (default root: this repository)

The checks are those of tests/test_architecture.py; see tests/architecture.py for the rules.
Always exits 0: it reports, the tests enforce.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import architecture as arch  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[1]


def _section(title: str, items: list, describe=lambda item: item.describe()) -> None:
    print(f"\n{title}: {len(items)}")
    for item in items:
        print(f"  {describe(item)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: this one)")
    parser.add_argument("--top", type=int, default=5, help="how many of the largest modules to list")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    modules = arch.project_modules(root)
    lines = arch.module_lines(root)
    print(f"architecture of {root}: {len(modules)} modules, {sum(n for _, n in lines)} lines")

    errors = arch.parse_errors(root)
    if errors:
        _section("modules that do not parse (left out of every check)", errors, lambda e: f"{e[0]}: {e[1]}")

    print(f"\nlargest modules (top {args.top}):")
    for name, count in lines[: args.top]:
        print(f"  {count:6d}  {modules[name].relative_to(root).as_posix()}  ({name})")

    graph = arch.import_graph(root)
    cycles = arch.import_cycles(graph)
    print()
    print(arch.format_cycles(graph, cycles))

    _section("private cross-module imports (`from X import _name`)", arch.private_imports(root))
    _section("private names of other modules used as `module._name`", arch.private_attribute_uses(root))
    _section("Prefect imports in pipeline/", arch.prefect_imports(root, "pipeline"))
    _section("modules without a docstring", arch.missing_docstrings(root), str)
    unresolved = arch.unresolved_imports(root)
    if unresolved:
        _section("imports of project modules that do not exist", unresolved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
