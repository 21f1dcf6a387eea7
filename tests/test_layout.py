"""The package layout: folders are CodeIt's stages and imports between them point down only.

Order, bottom to top: the DSL, programs, execution, the policy, replay, the typed run config
(``codeit_jax/config/``), the loop, the report (it reads a run's files; jobs write it when they
end), the jobs, the benchmarks. A module may import its own stage, any stage below it and the
base modules (tasks, errors, files, schema, progress, host_process, block_cache); never a
stage above it. ``main.py`` sits on top, over ``config_table.py`` (every job's fields as text).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "codeit_jax"
LAYERS = ["dsl", "programs", "execution", "policy", "replay", "config", "loop", "report", "jobs",
          "bench", "config_table", "main"]  # fmt: skip
BASE = {"tasks", "errors", "files", "schema", "progress", "host_process", "block_cache"}


def layer_of(module: str) -> str | None:
    """The layer of ``codeit_jax.<part>...``; None for a base module or the package itself."""
    parts = module.split(".")
    if parts[0] != "codeit_jax" or len(parts) < 2 or parts[1] in BASE:
        return None
    return parts[1]


def imported_modules(path: Path) -> list[str]:
    """Every codeit_jax module ``path`` imports (``from codeit_jax import x`` counts as x)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("codeit_jax")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "codeit_jax":
                found += [f"codeit_jax.{a.name}" for a in node.names]
            elif node.module.startswith("codeit_jax."):
                found.append(node.module)
    return found


def upward_imports(package: Path) -> list[str]:
    """``file -> module`` for every import of a higher layer."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if own in BASE or own == "__init__":
            own_rank = -1
        elif own in LAYERS:
            own_rank = LAYERS.index(own)
        else:
            bad.append(f"{relative}: not in a stage folder nor a base module")
            continue
        for module in imported_modules(path):
            layer = layer_of(module)
            if layer is None:
                continue
            if layer not in LAYERS:
                bad.append(f"{relative} -> {module}: unknown layer")
            elif LAYERS.index(layer) > own_rank:
                bad.append(f"{relative} -> {module}")
    return bad


def test_imports_point_down_only():
    assert upward_imports(PACKAGE) == []


def test_the_check_can_fail(tmp_path):
    """An upward import and a base module reaching into a stage are both caught."""
    for folder in ("execution", "loop"):
        (tmp_path / folder).mkdir()
    (tmp_path / "execution" / "bad.py").write_text("from codeit_jax.loop import iteration\n")
    (tmp_path / "tasks.py").write_text("import codeit_jax.policy.t5\n")
    (tmp_path / "loop" / "fine.py").write_text("from codeit_jax.execution import sandbox\n")
    assert upward_imports(tmp_path) == [
        "execution/bad.py -> codeit_jax.loop",
        "tasks.py -> codeit_jax.policy.t5",
    ]


@pytest.mark.parametrize("folder", [d for d in LAYERS if (PACKAGE / d).is_dir()])
def test_every_stage_says_its_job(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()) >= 2


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}
