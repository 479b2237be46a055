"""Imports only run downward: every module of musicbox sits in a layer and imports only its own package
and the layers below it, never a layer above nor a sibling of its own layer. Lazy imports inside
functions count the same as imports at the top of a file."""

from __future__ import annotations

import ast
from pathlib import Path

from scripts.typecheck import ROOT, module_name, package_dirs

# Bottom to top. A layer's units are packages or modules (the longest name that a module starts with is
# its unit; the root package ``musicbox`` is only itself); units of one layer are siblings and never import
# each other. "musicbox.commands.*" makes each command a unit of its own: one command never imports another.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("musicbox", "musicbox.errors")),  # `musicbox` itself holds only the version
    ("tables", ("musicbox.precision", "musicbox.targets")),  # plain data: variant names, targets
    ("firmware", ("musicbox.firmware",)),
    ("boards", ("musicbox.boards",)),
    ("config", ("musicbox.config",)),
    ("engine", ("musicbox.runtime",)),
    ("box | device | model", ("musicbox.runtime.box", "musicbox.device", "musicbox.model")),
    ("quantize", ("musicbox.quantize",)),
    ("commands", ("musicbox.commands", "musicbox.commands.*")),
    ("cli", ("musicbox.cli",)),
)
ORDER = " < ".join(name for name, _ in LAYERS)


def all_modules() -> dict[str | None, Path]:
    """Every module of the installed package (pyproject's package-dir) -> its file."""
    dirs = package_dirs()
    return {module_name(p, dirs): p for folder in dirs for p in sorted(folder.rglob("*.py"))}


def unit_of(module: str) -> tuple[int, str] | None:
    """(layer index, unit) of a musicbox module; None for a module no layer names."""
    best: tuple[int, str] | None = None
    for rank, (_, units) in enumerate(LAYERS):
        for unit in units:
            if unit.endswith(".*"):
                package = unit[:-2]
                if module.startswith(package + "."):
                    name = ".".join(module.split(".")[: package.count(".") + 2])
                    if best is None or len(name) > len(best[1]):
                        best = (rank, name)
            elif (module == unit or (unit != "musicbox" and module.startswith(unit + "."))) and (
                best is None or len(unit) > len(best[1])
            ):
                best = (rank, unit)
    return best


def imports(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported musicbox module) for every import in ``source``, at any depth."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports pkg.module
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
    return [(line, name) for line, name in found if name == "musicbox" or name.startswith("musicbox.")]


def violations(module: str, source: str, path: str, is_package: bool, known: set[str]) -> list[str]:
    """Every backward or sideways import in ``source``, as "file:line: what; the rule"."""
    here = unit_of(module)
    if here is None:
        return [f"{path}:1: {module} is in no layer; add it to LAYERS in tests/test_layers.py"]
    out = []
    for line, target in imports(source, module, is_package, known):
        there = unit_of(target)
        if there is None or there[1] == here[1] or there[0] < here[0]:
            continue
        layer, target_layer = LAYERS[here[0]][0], LAYERS[there[0]][0]
        how = "a sibling" if there[0] == here[0] else "a layer above"
        out.append(
            f"{path}:{line}: {module} imports {target} ({how}: {target_layer}); {layer} may import only "
            f"{here[1]} and the layers below it ({ORDER})"
        )
    return out


def test_imports_only_run_downward():
    modules = all_modules()
    known = set(modules)
    problems = []
    for module, path in modules.items():
        rel = str(path.relative_to(ROOT))
        problems += violations(module, path.read_text(), rel, path.name == "__init__.py", known)
    assert not problems, "\n".join(problems)


def test_the_architecture_page_states_these_layers():
    assert f"`{ORDER}`" in (ROOT / "docs" / "architecture.md").read_text()


def test_a_backward_import_is_named_with_its_file_line_and_rule():
    known = set(all_modules())
    lazy = "def load():\n    from musicbox.device.board import detect_board\n"
    (problem,) = violations("musicbox.config", lazy, "musicbox/config.py", False, known)
    assert problem.startswith("musicbox/config.py:2: musicbox.config imports musicbox.device.board")
    assert "config may import only musicbox.config and the layers below it" in problem
    sideways = "from musicbox.commands import render\n"
    (problem,) = violations("musicbox.commands.play", sideways, "musicbox/commands/play.py", False, known)
    assert "imports musicbox.commands.render (a sibling: commands)" in problem
    box = "from .box import ring\n"  # relative, from the engine into the box
    (problem,) = violations("musicbox.runtime.render", box, "runtime/render.py", False, known)
    assert "imports musicbox.runtime.box.ring (a layer above" in problem
    assert (
        violations(
            "musicbox.runtime.box.worker", "from musicbox.runtime import render\n", "w.py", False, known
        )
        == []
    )
    assert violations("musicbox.device.board", "import musicbox.runtime.box\n", "b.py", False, known)
    (problem,) = violations("musicbox.newthing", "", "musicbox/newthing.py", False, known)
    assert (
        problem
        == "musicbox/newthing.py:1: musicbox.newthing is in no layer; add it to LAYERS in tests/test_layers.py"
    )
