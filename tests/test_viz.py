"""plume_lite.apps.viz: the plotting helpers of the notebooks, on fake logs/traces and real media."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from plume_lite.apps import viz  # noqa: E402
from plume_lite.data.formats import EvalTask  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _records(n=20):
    out = []
    for s in range(1, n + 1):
        stage = min(4, (s - 1) * 8 // n) if s <= n // 2 else 4
        out.append(
            {
                "step": s,
                "stage": stage,
                "n_latent": 2 * stage,
                "drop_answer": s > 3 * n // 4,
                "total": 10.0 / s,
                "ce_q": 3.0,
                "ce_c": 2.0,
                "nce_gen": 1.0,
                "nce_disc": 1.5,
                "balance": 0.01,
            }
        )
    return out


def test_read_log_and_stage_spans(tmp_path):
    recs = _records()
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + "\n")
    assert viz.read_log(tmp_path) == recs
    assert viz.read_log(tmp_path / "log.jsonl") == recs
    spans = viz.stage_spans(recs)
    # contiguous, covering every step, one span per (stage, n_latent, drop_answer) phase
    assert spans[0]["start"] == 1 and spans[-1]["end"] == 20
    assert all(a["end"] + 1 == b["start"] for a, b in zip(spans, spans[1:]))
    assert [s["stage"] for s in spans] == [0, 1, 2, 3, 4, 4]
    assert spans[-1]["drop_answer"] and not spans[-2]["drop_answer"]


def test_plot_losses_skips_missing_parts_and_overlays():
    recs = _records()
    fig = viz.plot_losses(recs, label="latent")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6
    # direct-mode log: no CE parts, no stage changes
    direct = [
        {"step": r["step"], "stage": 0, "n_latent": 0, "total": r["total"], "nce_gen": 1.0, "nce_disc": 1.0}
        for r in recs
    ]
    fig2 = viz.plot_losses(direct, label="direct")
    assert sum(ax.get_visible() for ax in fig2.axes) == 3
    # overlay: each run's curve lands on the panel of its part, whatever its first run had
    viz.plot_losses(recs, axes=np.array(fig2.axes), label="latent")
    nce = next(ax for ax in fig2.axes if ax.get_gid() == "loss:nce_gen")
    assert len(nce.get_lines()) == 4  # two runs, raw + smoothed each
    total = next(ax for ax in fig.axes if ax.get_gid() == "loss:total")
    ce = next(ax for ax in fig.axes if ax.get_gid() == "loss:ce_q")
    before = len(total.get_lines()), len(ce.get_lines())  # curves + stage-switch lines
    viz.plot_losses(direct, axes=np.array(fig.axes), label="direct")
    assert len(total.get_lines()) == before[0] + 2
    assert len(ce.get_lines()) == before[1]  # direct has no CE: nothing added there


def test_expert_usage_chosen_and_gates():
    g = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.4, 0.4]])
    traces = [
        {"gates": g, "chosen": torch.tensor([[0, 1], [2, 3]])},
        {"gates": g, "chosen": torch.tensor([[0, 2], [2, 3]])},
    ]
    use = viz.expert_usage(traces)
    assert use.shape == (2, 4)
    np.testing.assert_allclose(use.sum(1), 1.0)
    np.testing.assert_allclose(use[0], [0.5, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(viz.expert_usage(traces, weight="gates"), g.numpy(), rtol=1e-6)
    with pytest.raises(ValueError):
        viz.expert_usage([{"mode": "direct"}])
    ax = viz.plot_routing(use, col_labels=list("ABCD"), title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == list("ABCD")


def test_cosine_to_target_and_curves():
    target = np.array([1.0, 0.0])
    states = [np.array([0.0, 2.0]), np.array([1.0, 1.0]), np.array([3.0, 0.0])]
    np.testing.assert_allclose(viz.cosine_to_target(states, target), [0.0, 2**-0.5, 1.0], atol=1e-9)
    ax = viz.plot_cosine_curves(
        {
            "latent": [np.linspace(0, 1, 8)] * 3,
            "explicit": [np.linspace(0, 0.5, 40), np.linspace(0, 0.4, 25)],
            "empty": [],
        }
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["latent (n=3)", "explicit (n=2)"]
    y = ax.get_lines()[0].get_ydata()
    assert y[0] == pytest.approx(0.0) and y[-1] == pytest.approx(1.0)


def test_items_gallery_and_failure_gallery(media_files):
    items = [
        {"text": "a red circle", "instruction": "Find it"},
        {"image": media_files["image"]},
        {"video": media_files["video"]},
        {"pdf": media_files["pdf"], "page": 1},
        {"image": Image.new("RGB", (20, 10), (255, 0, 0))},
    ]
    assert viz.item_picture(items[0]) is None
    strip = viz.item_picture(items[2])
    assert strip.width > 3 * strip.height  # four frames side by side
    assert "red circle" in viz.item_caption(items[0])
    fig = viz.show_items(items, titles=list("abcde"), ncols=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 5

    task = EvalTask(
        name="t",
        modality="image",
        meta_task="qa",
        protocol="local",
        metric="hit@1",
        queries=[items[1]],
        candidates=[{"text": "pos"}, {"text": "neg1"}, {"text": "neg2"}],
        query_candidates=[[0, 1, 2]],
        qrels=[{0: 1}],
    )
    row = {"rank": 3, "pos_score": 0.1, "top": [2, 1, 0], "top_scores": [0.9, 0.5, 0.1]}
    fig = viz.failure_gallery(task, row, 0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "query" and titles[1].startswith("target: rank 3")
    assert len(titles) == 4 and all("distractor" in t for t in titles[2:])
    # a hit: nothing ranks above the target
    fig = viz.failure_gallery(task, {"rank": 1, "pos_score": 0.9, "top": [0, 1], "top_scores": [0.9, 0.1]}, 0)
    assert len(fig.axes) == 2


def test_routing_heatmap_marks_the_chosen_experts_and_is_an_image():
    gates = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), -1)
    chosen = gates.topk(2, -1).indices
    ax = viz.plot_routing(gates, chosen=chosen, title="one query", vmax=1.0)
    stars = [t.get_text() for t in ax.texts if "★" in t.get_text()]
    assert len(stars) == 12 and len(ax.patches) == 12  # two picks per step, outlined
    img = viz.routing_image(gates, chosen, title="trace")
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.width > 300
    assert viz.routing_image(gates).size == img.size  # without picks: the same layout


def test_routing_image_is_safe_from_several_threads():
    # the demo draws one heatmap per request, in worker threads: no pyplot state shared
    from concurrent.futures import ThreadPoolExecutor

    gates = [torch.softmax(torch.randn(k, 4), -1) for k in (2, 4, 6, 8) * 3]
    with ThreadPoolExecutor(6) as pool:
        images = list(pool.map(lambda g: viz.routing_image(g, g.topk(2, -1).indices), gates))
    assert [im.height for im in images[:4]] == sorted(im.height for im in images[:4])
    assert len({im.size for im in images}) == 4
    assert not plt.get_fignums()  # no pyplot figure was made


def test_item_picture_middle_frame_and_contact_sheet(media_files):
    frame = viz.item_picture({"video": media_files["video"]}, frames=1)
    assert frame.size == (64, 64)
    frames = [Image.new("RGB", (10, 8), (i * 30, 0, 0)) for i in range(6)]
    sheet = viz.contact_sheet(frames, columns=4, gap=2)
    assert sheet.size == (4 * 10 + 3 * 2, 2 * 8 + 2)
    assert sheet.getpixel((12 + 1, 1)) == (30, 0, 0)  # frame 1: second column, first row
    assert viz.contact_sheet(frames[:3]).size == (3 * 10 + 2 * 2, 8)
