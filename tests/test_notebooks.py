"""The numbered notebooks are stored clean (no outputs, no execution counts, kernel python3)
and teach the library rather than contain it: one set-up line, no function or class defined
in a cell, no code cell copied from one notebook into another.

Running them is nbmake's job: `pytest --nbmake notebooks` (see notebooks/README.md)."""

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "00_quickstart",
    "01_data",
    "02_curriculum_training",
    "03_latent_rollout_inspection",
    "04_failure_case_analysis",
    "05_efficiency",
]
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_cells(path: Path) -> list[str]:
    return [_source(c) for c in _load(path)["cells"] if c["cell_type"] == "code"]


def normalised_lines(source: str) -> tuple[str, ...]:
    """A cell's lines with surrounding whitespace stripped and blank lines dropped."""
    return tuple(line.strip() for line in source.splitlines() if line.strip())


def shared_cells(notebooks: dict[str, list[str]], longer_than: int = 3) -> list[str]:
    """Code cells of more than `longer_than` normalised lines found in two or more notebooks.

    `notebooks` maps a notebook name to its code cells' sources; each finding names the
    notebooks and cell numbers (among code cells, from 0) that hold the same cell."""
    where: dict[tuple, list[str]] = {}
    for name, cells in notebooks.items():
        for i, source in enumerate(cells):
            lines = normalised_lines(source)
            if len(lines) > longer_than:
                where.setdefault(lines, []).append(f"{name} code cell {i}")
    return [
        f"{' and '.join(places)} share a {len(lines)}-line cell starting {lines[0]!r}"
        for lines, places in where.items()
        if len({p.split(" code cell")[0] for p in places}) > 1
    ]


def definitions(source: str) -> list[str]:
    """Names of the functions and classes a code cell defines (IPython magics ignored)."""
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return [
        f"{type(node).__name__} {node.name}"
        for node in ast.walk(ast.parse(python))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]


def test_the_six_numbered_notebooks_exist():
    missing = [name for name in EXPECTED if not (NOTEBOOKS / f"{name}.ipynb").exists()]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = _load(path)
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs or execution counts; clear them"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: stored widget state"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_kernel_is_python3(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3", f"{path.name}: kernel must be python3"
    assert nb["nbformat"] == 4


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    """Title first, imports plume_lite, closes with 'What you learned'."""
    cells = _load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert re.search(r"^\s*(from|import) plume_lite", code, re.M), f"{path.name} does not import plume_lite"
    learned = [
        i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "## What you learned" in _source(c)
    ]
    assert learned and learned[-1] >= len(cells) - 2, f"{path.name}: no closing 'What you learned' cell"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_sets_up_with_one_line_and_shows_the_status(path):
    """The first code cell imports setup, calls `NB = setup()` (whose one training setting lets
    a test session train each checkpoint once in a shared PLUME_CACHE) and displays NB, whose
    repr is the status line; nothing else is set up there."""
    first = normalised_lines(_code_cells(path)[0])
    assert first[0] == "from plume_lite.apps.notebook import setup", f"{path.name}: {first[0]!r}"
    assert re.search(r"^NB = setup\(\)$", first[1]), f"{path.name} does not call setup() as `NB = setup()`"
    assert re.match(r"^NB\b\s*(#.*)?$", first[-1]) and len(first) == 3, (
        f"{path.name}: the set-up cell is `from ... import setup`, `NB = setup()`, `NB` (the status), "
        f"got {first}"
    )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_defines_no_function_or_class(path):
    """A helper a notebook needs belongs in the library (plume_lite.inspection, apps.viz, ...)."""
    found = [f"code cell {i}: {d}" for i, source in enumerate(_code_cells(path)) for d in definitions(source)]
    assert not found, f"{path.name} defines " + "; ".join(found) + " — move it into plume_lite"


def test_no_code_cell_longer_than_three_lines_is_shared_between_notebooks():
    found = shared_cells({p.stem: _code_cells(p) for p in PATHS})
    assert not found, "copied code cells (move the code into plume_lite):\n" + "\n".join(found)


def test_the_checkers_see_copies_and_definitions():
    # the checkers themselves: indentation and blank lines do not hide a copy, three lines
    # may repeat, a copy inside one notebook is not a finding, nested and magic-led cells count
    four = "a = 1\nb = 2\n\nc = 3\nd = 4"
    assert shared_cells({"x": [four], "y": ["  " + four.replace("\n", "\n  ")]}) == [
        "x code cell 0 and y code cell 0 share a 4-line cell starting 'a = 1'"
    ]
    assert shared_cells({"x": ["a\nb\nc"], "y": ["a\nb\nc"]}) == []
    assert shared_cells({"x": [four, four], "y": []}) == []
    nested = "%matplotlib inline\nfor i in range(2):\n    def f():\n        pass\nclass C: pass"
    assert sorted(definitions(nested)) == ["ClassDef C", "FunctionDef f"]
    assert definitions("f = lambda x: x\nprint(f(1))") == []
