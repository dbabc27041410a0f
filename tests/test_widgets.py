"""plume_lite.apps.widgets: the rollout explorer and the failure browser, built headless on
the tiny model and on a hand-made evaluation result, their controls moved programmatically."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from plume_lite.apps import widgets  # noqa: E402
from plume_lite.data.formats import EvalTask  # noqa: E402
from plume_lite.media import MediaError  # noqa: E402

pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def _no_figures_left():
    yield
    left = plt.get_fignums()
    plt.close("all")
    assert not left, "a widget left a pyplot figure open (a later notebook cell would show it)"


def _shown(box) -> dict:
    """The mime bundle the box's Output widget holds now."""
    (output,) = box.output.outputs
    assert output["output_type"] == "display_data"
    return output["data"]


ITEMS = [
    {"text": "a red circle above a blue square"},
    {"text": "two green triangles", "instruction": "Find the picture"},
    {"text": "one moving dot"},
]
CANDIDATES = [{"text": w} for w in ("red circle", "blue square", "green triangle", "moving dot", "three")]


def test_rollout_view_is_the_trace_at_the_chosen_step(tiny_model):
    trace = widgets.rollout_trace(tiny_model, ITEMS[0])
    K = tiny_model.config.latent_steps
    assert trace["states"].shape[0] == K and trace["gates"].shape == (K, tiny_model.config.num_experts)
    assert torch.allclose(trace["states"].norm(dim=1), torch.ones(K))
    cand = tiny_model.encode(CANDIDATES, mode="latent")
    for step in (1, K):
        view = widgets.rollout_step(trace, cand, step, k=3, positives=[2])
        assert view["experts"] == trace["chosen"][step - 1].tolist()
        assert view["gates"] == pytest.approx(trace["gates"][step - 1].tolist(), abs=1e-4)
        cos = cand @ trace["states"][step - 1]
        assert [i for i, _ in view["nearest"]] == cos.topk(3).indices.tolist()
        assert view["positive_rank"] == int((cos >= cos[2]).sum())
        assert view["words"] == trace["words"][step - 1] and len(view["words"]) == widgets.WORDS
    with pytest.raises(ValueError, match="step must be in 1..8"):
        widgets.rollout_step(trace, cand, K + 1)


def test_rollout_explorer_redraws_when_the_step_and_the_item_change(tiny_model):
    box = widgets.rollout_explorer(tiny_model, ITEMS, CANDIDATES, positives=[0, 2, 3])
    item, step, output = box.children
    assert (item, step, output) == (box.controls["item"], box.controls["step"], box.output)
    assert (step.min, step.max, step.value, item.value) == (1, tiny_model.config.latent_steps, 1, 0)
    first = _shown(box)
    assert first["text/plain"].startswith("latent step 1 of 8") and first["text/html"].count("<img") == 1
    # the box's own display carries the same view as a fallback, with the picture alone too
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["image/png"] in first["text/html"]
    assert bundle["text/plain"] == first["text/plain"]

    trace = widgets.rollout_trace(tiny_model, ITEMS[0])
    step.value = 5
    assert box.view["step"] == 5 and box.view["experts"] == trace["chosen"][4].tolist()
    text = _shown(box)["text/plain"]
    experts = ", ".join(f"E{e} p={box.view['gates'][e]:.2f}" for e in box.view["experts"])
    assert text.startswith("latent step 5 of 8") and f"routing: {experts}" in text
    assert "logit lens: " + repr(box.view["words"][0][0]) in text and "right answer: rank" in text

    item.value = 2  # another item: its own trace, at the step the slider shows
    assert (box.view["item"], box.view["step"]) == (2, 5)
    other = widgets.rollout_trace(tiny_model, ITEMS[2])
    assert box.view["experts"] == other["chosen"][4].tolist()
    assert "one moving dot" in _shown(box)["text/plain"]


def test_rollout_explorer_refuses_what_it_cannot_show(tiny_model):
    with pytest.raises(ValueError, match="at least one item"):
        widgets.rollout_explorer(tiny_model, [], CANDIDATES)
    with pytest.raises(ValueError, match="2 positives for 3 items"):
        widgets.rollout_explorer(tiny_model, ITEMS, CANDIDATES, positives=[0, 1])
    with pytest.raises(ValueError, match="K > 0"):
        widgets.rollout_trace(tiny_model, ITEMS[0], steps=0)


def _task(name, n_queries=3):
    return EvalTask(
        name=name,
        modality="image",
        meta_task="classification",
        protocol="local",
        metric="hit@1",
        queries=[{"text": f"{name} query {i}"} for i in range(n_queries)],
        candidates=[{"text": f"{name} label {j}"} for j in range(4)],
        query_candidates=[[0, 1, 2, 3]] * n_queries,
        qrels=[{i % 4: 1} for i in range(n_queries)],
    )


def _result(mode, ranks: dict) -> dict:
    """An evaluate()-shaped result: per task, per query its target's rank."""
    tasks = {}
    for name, rows in ranks.items():
        per_query = []
        for i, rank in enumerate(rows):
            target = i % 4
            others = [j for j in range(4) if j != target]
            top = others[: rank - 1] + [target] + others[rank - 1 :]
            per_query.append(
                {
                    "score": float(rank == 1),
                    "rank": rank,
                    "pos_score": 0.5,
                    "top": top,
                    "top_scores": [0.9 - 0.1 * r for r in range(4)],
                }
            )
        tasks[name] = {"name": name, "score": 50.0, "per_query": per_query}
    return {"setting": {"mode": mode}, "tasks": tasks}


TASKS = [_task("alpha"), _task("beta")]
RESULTS = {
    "latent": _result("latent", {"alpha": [1, 3, 2], "beta": [1, 1, 4]}),
    "direct": _result("direct", {"alpha": [2, 1, 1], "beta": [1, 1, 1]}),
}


def test_failed_queries_and_their_view():
    failures = widgets.failed_queries(RESULTS["latent"])
    assert [(f["task"], f["query"], f["rank"]) for f in failures] == [
        ("alpha", 1, 3),
        ("alpha", 2, 2),
        ("beta", 2, 4),
    ]
    assert widgets.failed_queries(RESULTS["direct"], "beta") == []
    view = widgets.failure_view(RESULTS, TASKS, failures[0], "latent")
    assert view["target"][:2] == (1, "alpha label 1") and view["rank"] == 3
    assert [(j, ok) for j, _, _, ok in view["top"]][:3] == [(0, False), (2, False), (1, True)]
    assert view["other_ranks"] == {"direct": 1} and view["query_label"] == "alpha query 1"
    with pytest.raises(ValueError, match="per-query rows"):
        widgets.failed_queries({"tasks": {"alpha": {"score": 1.0}}})


def test_failure_browser_steps_through_the_failures():
    box = widgets.failure_browser(RESULTS, TASKS)
    mode, task, failure, output = box.children
    assert (mode.value, task.value, failure.max) == ("latent", "", 3)
    assert [label for label, _ in task.options] == [
        "all tasks (3 failed)",
        "alpha (2 failed)",
        "beta (1 failed)",
    ]
    text = _shown(box)["text/plain"]
    assert text.startswith("latent: failure 1 of 3 (alpha, query 1)") and "direct ranks the target #1" in text
    assert "<img" in _shown(box)["text/html"] and "image/png" in box.static

    failure.value = 3
    assert (box.view["task"], box.view["query"], box.view["rank"]) == ("beta", 2, 4)
    assert "target: beta label 2 (candidate 2), rank 4" in _shown(box)["text/plain"]

    task.value = "alpha"  # a task: its failures only, from the first
    assert (failure.max, failure.value, box.view["query"]) == (2, 1, 1)
    mode.value = "direct"  # another mode: the task is kept, the counts are that mode's
    assert task.value == "alpha" and [label for label, _ in task.options][1] == "alpha (1 failed)"
    assert (box.view["mode"], box.view["query"], box.view["other_ranks"]) == ("direct", 0, {"latent": 1})
    task.value = "beta"  # no failure there
    assert box.view == {"n_failures": 0} and failure.disabled
    assert _shown(box)["text/plain"] == "direct: no failed query on beta"


def test_failure_browser_takes_one_result_and_checks_its_tasks():
    box = widgets.failure_browser(RESULTS["latent"], {t.name: t for t in TASKS})
    assert box.controls["mode"].options == ("latent",) and box.view["other_ranks"] == {}
    with pytest.raises(ValueError, match="not in `tasks`"):
        widgets.failure_browser(RESULTS, TASKS[:1])
    with pytest.raises(ValueError, match="mode 'explicit'"):
        widgets.failure_browser(RESULTS, TASKS, mode="explicit")


def test_a_view_that_cannot_be_drawn_says_why_and_the_first_one_raises(tmp_path):
    broken = _task("alpha")
    broken.queries[2] = {"image": str(tmp_path / "gone.png")}  # failure 2 of latent's alpha
    box = widgets.failure_browser(RESULTS, [broken, TASKS[1]])
    box.controls["failure"].value = 2
    assert box.view["error"].startswith("this view could not be drawn: MediaError")
    assert "gone.png" in _shown(box)["text/plain"]
    box.controls["failure"].value = 3  # the next one draws again
    assert box.view["task"] == "beta"
    broken.queries[1] = broken.queries[2]  # now latent's first failure: building the box fails
    with pytest.raises(MediaError, match="gone.png"):
        widgets.failure_browser(RESULTS, [broken, TASKS[1]])


def test_item_label_names_files_and_cuts_long_words():
    assert widgets.item_label({"image": "/x/y/00003.png", "text": "which?"}) == "[image] 00003.png which?"
    assert widgets.item_label({"pdf": "/d/doc.pdf", "page": 2}) == "[pdf] doc.pdf p2"
    assert widgets.item_label({"text": "word " * 40}, width=20).endswith("…")
    assert len(widgets.item_label({"text": "word " * 40}, width=20)) == 20
