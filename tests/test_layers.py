"""The package's layers: imports only go down (core -> verify -> engine -> models -> tools -> cli)."""

import ast
import pathlib

import specdecode

LAYER = {
    "core": 0,
    "prompts": 0,
    "verify": 1,
    "engine": 2,
    "models": 3,
    "analysis": 4,
    "exactness": 4,
    "distill": 5,
    "bench": 5,
    "cli": 6,
    "serve": 6,
}


def _imports():
    root = pathlib.Path(specdecode.__file__).parent
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root).parts
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and len(parts) > 1:
                base = list(parts[:-1])[: len(parts) - node.level]
                mod = base + (node.module.split(".") if node.module else [])
                yield f, parts[0], mod[0] if mod else parts[0]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("specdecode."):
                yield f, parts[0], node.module.split(".")[1]


def test_imports_only_go_down():
    assert set(LAYER) <= {p.name for p in pathlib.Path(specdecode.__file__).parent.iterdir() if p.is_dir()}
    up = [
        f"{f}: {pkg} imports {tgt}"
        for f, pkg, tgt in _imports()
        if tgt in LAYER and pkg in LAYER and LAYER[tgt] > LAYER[pkg]
    ]
    assert not up, up


def test_every_package_is_in_a_layer():
    root = pathlib.Path(specdecode.__file__).parent
    pkgs = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert pkgs == set(LAYER), pkgs ^ set(LAYER)
