"""The package's layers (higen/__init__.py) import only downward, and never the tests' helpers."""

import ast
from pathlib import Path

import higen

PACKAGE = Path(higen.__file__).parent
# higen/__init__.py's layer order, lowest first.
LAYERS = {
    "io": 1, "assets": 1, "diffusion": 1, "cues": 1,
    "models": 2, "encoders": 2,
    "pipeline": 3, "world": 3, "tiny": 3,
    "data": 4,
    "training": 5,
    "benchmark": 6, "bundled": 6, "evaluation": 6,
    "cli": 7,
}


def _part(module: str) -> str | None:
    """``higen.x.y`` -> ``x``; the package's face (``higen``) and ``__main__`` have no layer."""
    parts = module.split(".")
    return parts[1] if parts[0] == "higen" and len(parts) > 1 and parts[1] in LAYERS else None


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops - {"__init__", "__main__"} == set(LAYERS)


def test_imports_run_only_downward():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = "higen." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _part(module)
        if own is None:
            continue
        for name in _imports(path):
            assert not name.startswith(("support", "tests", "conftest")), f"{module} imports test code: {name}"
            other = _part(name)
            if other is not None and LAYERS[other] > LAYERS[own]:
                upward.append(f"{module} -> {name}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(set(upward)))
