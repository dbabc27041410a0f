"""The numbered notebooks are stored clean: no outputs, no execution counts, kernel python3.

Running them is nbmake's job: `pytest --nbmake notebooks` (see notebooks/README.md)."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["00_quickstart", "01_data", "02_curriculum_training", "03_latent_rollout_inspection",
            "04_failure_case_analysis", "05_efficiency"]
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def test_the_six_numbered_notebooks_exist():
    missing = [name for name in EXPECTED if not (NOTEBOOKS / f"{name}.ipynb").exists()]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = _load(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
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
    learned = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
               and "## What you learned" in _source(c)]
    assert learned and learned[-1] >= len(cells) - 2, f"{path.name}: no closing 'What you learned' cell"


def test_notebooks_share_one_checkpoint_setting():
    """Every notebook gets its checkpoints through plume_lite.apps.notebook.setup(), whose one
    training setting lets a test session train each checkpoint once (shared PLUME_CACHE)."""
    for path in PATHS:
        code = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "code")
        assert re.search(r"^NB = setup\(\)$", code, re.M), f"{path.name} does not call setup()"
        assert "def shared_eval" not in code and "def hub_reachable" not in code, \
            f"{path.name} redefines what plume_lite.apps.notebook provides"
