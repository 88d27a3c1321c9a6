"""The package's import graph (docs/architecture.md, "Layers"): top-level imports only, no cycles,
and the stages never import the orchestrator or a front end."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "xstereo_gpu"
#: Modules above the stages: a stage package must not import them.
ABOVE_STAGES = {
    "xstereo_gpu.pipeline",
    "xstereo_gpu.batch",
    "xstereo_gpu.batch.process",
    "xstereo_gpu.batch.store",
    "xstereo_gpu.outputs",
    "xstereo_gpu.figures",
    "xstereo_gpu.diagnostics",
    "xstereo_gpu.cli",
    "xstereo_gpu.cli_options",
    "xstereo_gpu.bench",
    "xstereo_gpu.bench_shots",
}
STAGE_PACKAGES = ("xstereo_gpu.phasing", "xstereo_gpu.stereo", "xstereo_gpu.cloud", "xstereo_gpu.simulate")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, bool, int]]:
    """(imported package module, at module level?, line) for every import of ``name``'s source."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for t in names:
            if t in MODULES:
                found.append((t, node in tree.body, node.lineno))
    return found


def test_the_package_is_found():
    assert {"xstereo_gpu.pipeline", "xstereo_gpu.results", "xstereo_gpu.stereo.stage"} <= set(MODULES)


def test_package_modules_are_imported_at_the_top():
    late = [f"{m}:{line} imports {t}" for m in MODULES for t, top, line in _imports(m) if not top]
    assert late == []


def test_no_import_cycles():
    """Between modules (package ``__init__`` re-exports aside)."""
    edges = {
        m: {t for t, _, _ in _imports(m) if MODULES[t].name != "__init__.py"}
        for m in MODULES
        if MODULES[m].name != "__init__.py"
    }
    cycles = []

    def visit(node, path):
        for nxt in edges.get(node, ()):
            if nxt in path:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done: set[str] = set()
    for m in edges:
        if m not in done:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_stages_do_not_import_the_layers_above(package):
    bad = [
        f"{m} imports {t}"
        for m in MODULES
        if m == package or m.startswith(package + ".")
        for t, _, _ in _imports(m)
        if t in ABOVE_STAGES
    ]
    assert bad == []
