"""The demo as a Hugging Face Space needs it, without a server (seconds): settings from
the environment (a flag wins, a bad value is one line naming the variable, also from
`python app.py`), the requirements file (a CPU torch index, pins the package needs at
the versions tested here), the front matter, the clickable examples (files made in the
cache folder, kept through gradio's cache clean-up), text queries, and the tiny
model's note. The Space itself, started as `python app.py` and answering an example,
is tests/test_demo.py::test_space_entry_point_python_app_py_answers_a_query."""

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from plume_lite.apps.defaults import shipped_checkpoint
from plume_lite.apps.demo.environment import apply_environment
from plume_lite.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "demo_app"


def unset():
    return argparse.Namespace(checkpoint=None, corpus=None, max_k=None, device=None)


# ----------------------------------------------------------------------------- environment


def test_settings_come_from_the_environment_and_a_flag_wins(tmp_path):
    shipped = str(shipped_checkpoint("latent"))
    env = {"PLUME_CHECKPOINT": shipped, "PLUME_CORPUS": str(tmp_path), "PLUME_MAX_K": " 12 "}
    args = apply_environment(unset(), env)
    assert (args.checkpoint, args.corpus, args.max_k) == (shipped, str(tmp_path), 12)
    flags = argparse.Namespace(checkpoint=str(tmp_path), corpus=None, max_k=3)
    args = apply_environment(flags, env)
    assert (args.checkpoint, args.corpus, args.max_k) == (str(tmp_path), str(tmp_path), 3)
    hub = apply_environment(unset(), {"PLUME_CHECKPOINT": "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"})
    assert hub.checkpoint == "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"  # fetched later, by cli.run
    assert vars(apply_environment(unset(), {"PLUME_MAX_K": ""})) == vars(unset())  # empty: unset
    assert apply_environment(unset(), {"PLUME_DEVICE": " CPU "}).device == "cpu"
    assert apply_environment(unset(), {"PLUME_DEVICE": "auto"}).device == "auto"


def test_the_gpu_2b_profile_defaults_to_the_released_weights():
    from plume_lite.apps.defaults import RELEASED_PLUME

    assert apply_environment(unset(), {"PLUME_PROFILE": "gpu-2b"}).checkpoint == RELEASED_PLUME
    assert apply_environment(unset(), {"PLUME_PROFILE": "tiny"}).checkpoint is None  # the shipped one
    mine = apply_environment(unset(), {"PLUME_PROFILE": "gpu-2b", "PLUME_CHECKPOINT": "me/mine"})
    assert mine.checkpoint == "me/mine"  # a checkpoint given wins
    with pytest.raises(ConfigError, match="PLUME_PROFILE='gpu2b': expected tiny or gpu-2b"):
        apply_environment(unset(), {"PLUME_PROFILE": "gpu2b"})


def test_the_demo_model_runs_on_the_device_asked_for(tmp_path):
    from plume_lite.apps.demo.engine import DemoEngine

    engine = DemoEngine.from_checkpoint(shipped_checkpoint("latent"), [], tmp_path, device="cpu")
    assert engine.model.device.type == "cpu"
    assert next(engine.model.parameters()).dtype == torch.float32  # as saved on the CPU


def test_on_cuda_the_demo_model_loads_in_bfloat16(tmp_path, monkeypatch):
    import plume_lite
    from plume_lite import runtime
    from plume_lite.apps.demo.engine import DemoEngine

    asked = {}

    def fake_load(folder, device=None, dtype=None):
        asked.update(device=device, dtype=dtype)
        raise RuntimeError("stop here")

    monkeypatch.setattr(runtime, "resolve_device", lambda name: "cuda")  # no GPU needed to check the choice
    monkeypatch.setattr(plume_lite.PlumeModel, "from_pretrained", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        DemoEngine.from_checkpoint(shipped_checkpoint("latent"), [], tmp_path)
    assert asked == {"device": "cuda", "dtype": torch.bfloat16}
    with pytest.raises(RuntimeError, match="stop here"):
        DemoEngine.from_checkpoint(shipped_checkpoint("latent"), [], tmp_path, dtype="float32")
    assert asked == {"device": "cuda", "dtype": torch.float32}  # --dtype float32 wins


@pytest.mark.parametrize(
    "env, words",
    [
        ({"PLUME_MAX_K": "abc"}, "PLUME_MAX_K='abc': expected an integer"),
        ({"PLUME_MAX_K": "0"}, "PLUME_MAX_K='0': must be >= 1"),
        ({"PLUME_CORPUS": "/no/such/folder"}, "PLUME_CORPUS='/no/such/folder': no such folder"),
        ({"PLUME_CHECKPOINT": "./missing"}, "PLUME_CHECKPOINT='./missing': no such folder, and not a hub id"),
        ({"PLUME_DEVICE": "gpu"}, "PLUME_DEVICE='gpu': not a device: use auto, cpu, cuda or cuda:N"),
        ({"PLUME_DEVICE": "cuda:64"}, "PLUME_DEVICE='cuda:64': no such CUDA device on this machine"),
    ],
)
def test_a_bad_variable_is_one_error_naming_it(env, words):
    with pytest.raises(ConfigError) as err:
        apply_environment(unset(), env)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_bad_flag_is_named_as_the_flag():
    args = argparse.Namespace(checkpoint=None, corpus="/no/such/folder", max_k=None)
    with pytest.raises(ConfigError, match="--corpus='/no/such/folder': no such folder"):
        apply_environment(args, {"PLUME_CORPUS": "/also/missing"})


def test_python_app_py_with_a_bad_variable_ends_in_one_line(tmp_path):
    env = dict(os.environ, PLUME_MAX_K="twelve", PLUME_CACHE=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=SPACE, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["app.py: error: PLUME_MAX_K='twelve': expected an integer, got 'twelve'"], out.stderr


# ----------------------------------------------------------------------------- Space files


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_install_cpu_torch_and_only_what_the_package_needs():
    lines = [line.strip() for line in (SPACE / "requirements.txt").read_text().splitlines()]
    options = [line for line in lines if line.startswith("-")]
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    pins = dict(line.split("==") for line in lines if line and not line.startswith(("#", "-")))
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["demo"]}
    assert {_name(p) for p in pins} <= needed, "a pinned package the package does not use"
    assert {"torch", "torchvision"} <= {_name(p) for p in pins}
    for name, version in pins.items():  # the versions the demo is tested with, here
        installed = importlib.metadata.version(name).split("+")[0]  # (a local build: +cu130)
        assert installed == version, f"{name}: pinned {version}, tested with {installed}"


def test_space_front_matter_fits_the_hub():
    text = (SPACE / "README.md").read_text()
    front = text.split("---")[1]
    fields = dict(line.split(":", 1) for line in front.strip().splitlines())
    assert len(fields["short_description"].strip()) <= 60  # the Hub refuses a longer one
    assert fields["app_file"].strip() == "app.py"
    assert fields["sdk_version"].strip() == importlib.metadata.version("gradio")
    for variable in ("PLUME_CHECKPOINT", "PLUME_CORPUS", "PLUME_MAX_K", "PLUME_DEVICE"):
        assert variable in text


# ----------------------------------------------------------------------------- examples


def test_examples_are_synthmmeb_queries_of_every_kind(tmp_path):
    from plume_lite.apps.demo.examples import build_examples

    examples = build_examples(tmp_path / "examples")
    suffixes = [Path(e.file).suffix if e.file else "text" for e in examples]
    assert suffixes.count(".png") >= 2 and ".mp4" in suffixes and ".pdf" in suffixes
    assert suffixes.count("text") >= 2
    assert all(e.instruction and e.label for e in examples)
    assert len({e.label for e in examples}) == len(examples)
    assert all(e.text for e in examples if not e.file)  # a text example has its text
    for e in examples:
        if e.file:
            assert Path(e.file).parent == tmp_path / "examples" and Path(e.file).stat().st_size > 0
    images = [e for e in examples if e.file and e.file.endswith(".png")]
    assert Image.open(images[0].file).size[0] >= 32
    assert build_examples(tmp_path / "examples") == examples  # made again: the same


def test_example_files_survive_gradios_cache_clean_up(tmp_path):
    """The page deletes gradio's cached files after two hours; the examples' copies are
    kept, or a click would fail after that."""
    from gradio.route_utils import delete_files_created_by_app

    from plume_lite.apps.demo.server import build_app

    demo = build_app(
        tmp_path / "no-checkpoint", [{"text": "x"}], tmp_path / "cache", examples=True, log=False
    )
    try:
        query = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "query-file")
        kept = set(query.keep_in_cache)
        cached = set().union(*demo.temp_file_sets)
        assert len(kept) >= 3 and kept <= cached  # the png, mp4 and pdf examples
        delete_files_created_by_app(demo, None)  # everything gradio made, however new
        assert all(Path(p).is_file() for p in kept)
        labels = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "examples"]
        assert labels and labels[0].sample_labels
    finally:
        demo.close()


def test_no_examples_for_a_corpus_of_ones_own(tmp_path):
    from plume_lite.apps.demo.server import build_app

    demo = build_app(tmp_path / "no-checkpoint", [{"text": "x"}], tmp_path / "cache", log=False)
    assert not any(getattr(b, "elem_id", None) == "examples" for b in demo.blocks.values())
    assert not (tmp_path / "cache" / "examples").exists()


def test_the_note_shows_for_a_tiny_checkpoint_only(tmp_path):
    from plume_lite.apps.demo.startup import Startup

    other = tmp_path / "other"
    other.mkdir()
    (other / "plume_config.json").write_text('{"backbone": "Qwen/Qwen2-VL-2B-Instruct"}')
    assert Startup(None, [], tmp_path).tiny_model()
    assert Startup(shipped_checkpoint("latent"), [], tmp_path).tiny_model()
    assert not Startup(other, [], tmp_path).tiny_model()
    assert not Startup(tmp_path / "missing", [], tmp_path).tiny_model()


# ----------------------------------------------------------------------------- text queries


def test_text_queries_alone_or_beside_an_upload(media_files):
    from plume_lite.apps.demo.corpus import MAX_QUERY_TEXT_CHARS, load_query
    from plume_lite.media import MediaError

    text = load_query(None, 1, " Find an image ", "  a red   circle ")
    assert (text.kind, text.item, text.preview) == (
        "text",
        {"text": "a red circle", "instruction": "Find an image"},
        None,
    )
    both = load_query(media_files["image"], 1, "", "what colour is it?")
    assert both.kind == "image" and both.item["text"] == "what colour is it?" and "image" in both.item
    with pytest.raises(MediaError, match="upload an image, a video or a PDF, or type a text query"):
        load_query(None, 1, "an instruction alone", "  ")
    with pytest.raises(MediaError, match=f"the text query is .* keep it under {MAX_QUERY_TEXT_CHARS}"):
        load_query(None, 1, "", "x" * (MAX_QUERY_TEXT_CHARS + 1))


def test_the_demo_command_passes_device_and_dtype_to_the_app(monkeypatch):
    from plume_lite.apps.demo import cli, server

    got = {}
    # run() sets up logging to this test's stderr when none is set: not here, or later
    # tests' background threads would log to a closed stream
    monkeypatch.setattr(cli.logging, "basicConfig", lambda **kw: None)
    monkeypatch.setattr(server, "build_app", lambda checkpoint, **kw: got.update(kw) or "app")
    monkeypatch.setattr(server, "launch", lambda demo, **kw: got.update(launched=demo))
    args = cli.add_arguments(argparse.ArgumentParser()).parse_args(["--device", "cpu", "--dtype", "bfloat16"])
    assert cli.run(args) == 0
    assert (got["device"], got["dtype"], got["launched"]) == ("cpu", "bfloat16", "app")
    with pytest.raises(SystemExit):  # not a dtype
        cli.add_arguments(argparse.ArgumentParser()).parse_args(["--dtype", "int8"])
