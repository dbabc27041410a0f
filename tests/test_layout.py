"""The package's layers stay true: each imports only from the layers below it.

    plume_lite (the method)  <  data  <  train  <  evaluation  <  experiments  <  apps

Every import statement of every module is parsed (module level and inside functions),
including `importlib.import_module("...")` with a literal name, so a lazy import cannot
hide a violation. `__main__.py` is the entry point and may import the CLI.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plume_lite"
LAYERS = ["", "data", "train", "evaluation", "experiments", "apps"]  # "" = the top level
ENTRY_POINTS = {"plume_lite.__main__"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "plume_lite":
        raise ValueError(module)
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return 0


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute plume_lite module) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from plume_lite import train` names a subpackage, not an attribute
            found += [
                (node.lineno, f"{base}.{a.name}")
                for a in node.names
                if (PACKAGE.parent / f"{base}.{a.name}".replace(".", "/")).is_dir()
            ]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
        elif (
            isinstance(node, ast.Assign)
            and any(getattr(target, "id", "") == "_EXPORTS" for target in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            # lazy exports (plume_lite.lazy): name -> module, absolute or ".relative"
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    target = value.value
                    found.append(
                        (node.lineno, ".".join(package) + target if target.startswith(".") else target)
                    )
    return [(line, m) for line, m in found if m == "plume_lite" or m.startswith("plume_lite.")]


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_imports_only_from_its_layer_or_below():
    violations = []
    for path in all_modules():
        name = module_name(path)
        if name in ENTRY_POINTS:
            continue
        own = layer_of(name)
        for line, target in imported_modules(path):
            if layer_of(target) > own:
                violations.append(
                    f"{path.relative_to(ROOT)}:{line} ({LAYERS[own] or 'top level'}) "
                    f"imports {target} ({LAYERS[layer_of(target)]})"
                )
    assert not violations, "layer rule broken:\n" + "\n".join(violations)


def test_the_layer_test_sees_lazy_and_subpackage_imports():
    # the checker itself: a function-level import, a subpackage imported by name and an
    # import_module call all count
    fake = PACKAGE / "_layer_probe.py"
    try:
        fake.write_text(
            "def f():\n    from plume_lite.apps import viz\n    from plume_lite import train\n"
            "import importlib\nimportlib.import_module('plume_lite.experiments.bench')\n"
        )
        seen = {m for _, m in imported_modules(fake)}
    finally:
        fake.unlink()
    assert {"plume_lite.apps", "plume_lite.train", "plume_lite.experiments.bench"} <= seen


def test_the_layer_test_sees_lazy_exports():
    seen = {m for _, m in imported_modules(PACKAGE / "data" / "__init__.py")}
    assert {"plume_lite.data.synth", "plume_lite.media"} <= seen


def test_every_lazy_export_resolves():
    import importlib

    for package in ("plume_lite", "plume_lite.data", "plume_lite.train", "plume_lite.evaluation"):
        module = importlib.import_module(package)
        for name in module._EXPORTS:
            assert getattr(module, name) is not None, f"{package}.{name}"


def test_the_layers_are_the_package_folders():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS[1:])


def test_importing_data_leaves_the_environment_unchanged():
    # a fresh interpreter, so nothing imported earlier in this session can mask it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    code = (
        "import os, json; before = dict(os.environ); import plume_lite.data, plume_lite.data.storage, "
        "plume_lite.data.synth, plume_lite.data.mmeb, plume_lite.media, plume_lite.items; "
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "{}", out.stdout


@pytest.mark.parametrize(
    "module",
    [
        "plume_lite",
        "plume_lite.model",
        "plume_lite.train.loop",
        "plume_lite.evaluation.protocol",
        "plume_lite.apps.cli",
    ],
)
def test_importing_the_library_leaves_the_environment_unchanged(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "GRADIO_"))}
    code = (
        f"import os, json; before = dict(os.environ); import {module}; "
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "{}", out.stdout


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from plume_lite.apps.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'gradio', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-m", "plume_lite", "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip().startswith("plume-lite 0.")


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "plume_lite", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "usage: plume-lite" in out.stdout and "reproduce" in out.stdout
