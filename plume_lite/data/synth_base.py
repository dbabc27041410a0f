"""What every SynthMMEB task builder shares: a per-task seeded RNG, the train/test hold-out
rule, numbered media files, and the two common task shapes (a labelled question answered
from a local candidate list, and hard negatives borrowed from other training pairs)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from plume_lite.data import scenes


@dataclass(frozen=True)
class TaskSpec:
    name: str
    modality: str  # image | video | visdoc
    meta_task: str  # classification | qa | retrieval | grounding | moment_retrieval | vidore
    protocol: str  # local | global
    metric: str  # hit@1 | ndcg@5
    reasoning: bool  # needs several reasoning steps
    build: Callable  # build(builder) fills builder.train_rows and eval rows / beir
    holdout: str  # which attribute combination the test split holds out
    description: str


def sentences(*parts: str) -> str:
    """Join rationale sentences; each ends in '.', so the curriculum can split on '. '."""
    out = []
    for p in parts:
        p = p.strip()
        if p:
            out.append(p if p.endswith(".") else p + ".")
    return " ".join(out)


class Builder:
    """Collects one task's rows and writes its media under media/<task>/<split>/."""

    def __init__(self, root: Path, spec: TaskSpec, seed: int, n_train: int, n_test: int, n_cands: int):
        self.root, self.spec, self.seed = Path(root), spec, seed
        self.n_train, self.n_test, self.n_cands = n_train, n_test, n_cands
        # str seeds are hashed with sha512 by `random`: stable across runs and machines
        self.rng = random.Random(f"synthmmeb:{seed}:{spec.name}")
        self.train_rows: list[dict] = []
        self.eval_rows: list[dict] = []
        self.beir: dict | None = None  # {"queries": [...], "corpus": [...], "qrels": [...]}
        self._count: Counter = Counter()

    # -- hold-out: a quarter of the attribute combinations, balanced along every axis
    def held_out(self, key: tuple) -> bool:
        return (sum(key) + self.seed) % 4 == 0

    def in_split(self, key: tuple, split: str) -> bool:
        return self.held_out(key) == (split == "test")

    def draw(self, sample: Callable, split: str, avoid=()) -> dict:
        """Rejection-sample a scene whose key belongs to `split` (and whose `uid`, if any,
        is not in `avoid`)."""
        for _ in range(10_000):
            s = sample(self.rng)
            if self.in_split(s["key"], split) and s.get("uid", s["key"]) not in avoid:
                return s
        raise RuntimeError(f"{self.spec.name}: cannot sample a {split} scene")

    # -- media
    def _path(self, split: str, ext: str) -> tuple[Path, str]:
        k = self._count[split]
        self._count[split] += 1
        rel = f"media/{self.spec.name}/{split}/{k:05d}.{ext}"
        return self.root / rel, rel

    def image(self, img, split: str) -> str:
        path, rel = self._path(split, "png")
        scenes.save_png(img, path)
        return rel

    def video(self, frames, split: str) -> str:
        path, rel = self._path(split, "mp4")
        scenes.save_mp4(frames, path)
        return rel

    def pdf(self, pages, split: str) -> str:
        path, rel = self._path(split, "pdf")
        scenes.save_pdf(pages, path)
        return rel

    def media(self, kind: str, data, split: str) -> dict:
        """Save image/video data; return the path fields for a query ('qry_*')."""
        if kind == "image":
            return {"img": self.image(data, split)}
        return {"video": self.video(data, split)}


def add_negatives(b: Builder) -> None:
    """Hard-ish negative for each training pair: the positive of another pair with a
    different answer (no extra files)."""
    rows = b.train_rows
    for r in rows:
        for _ in range(50):
            o = rows[b.rng.randrange(len(rows))]
            if o["pos_answer"] != r["pos_answer"]:
                break
        for f in ("text", "image_path", "video_path", "pdf_path", "page"):
            r[f"neg_{f}"] = o.get(f"pos_{f}", "" if f != "page" else 0)


def label_task(b: Builder, sample: Callable, qry_inst: str, labels: list[str], tgt_inst: str = "") -> None:
    """Query = image/video (+ question) -> one short text label from `labels`.

    `sample(rng)` returns {key, kind: image|video, data, text, answer, rationale,
    pos_rationale?}. Test rows list the positive first, then other labels (local)."""
    for _ in range(b.n_train):
        s = b.draw(sample, "train")
        m = b.media(s["kind"], s["data"], "train")
        b.train_rows.append(
            {
                "qry_inst": qry_inst,
                "qry": s["text"],
                "qry_image_path": m.get("img", ""),
                "qry_video_path": m.get("video", ""),
                "pos_inst": tgt_inst,
                "pos_text": s["answer"],
                "qry_rationale": s["rationale"],
                "qry_answer": s["answer"],
                "pos_rationale": s.get("pos_rationale") or label_rationale(s["answer"]),
                "pos_answer": s["answer"],
            }
        )
    add_negatives(b)
    k = min(b.n_cands, len(labels))
    for _ in range(b.n_test):
        s = b.draw(sample, "test")
        m = b.media(s["kind"], s["data"], "test")
        others = b.rng.sample([lab for lab in labels if lab != s["answer"]], k - 1)
        b.eval_rows.append(
            {
                "qry_inst": qry_inst,
                "qry_text": s["text"],
                "qry_img_path": m.get("img", ""),
                "qry_video_path": m.get("video", ""),
                "tgt_inst": tgt_inst,
                "tgt_text": [s["answer"]] + others,
                "tgt_img_path": [""] * k,
                "tgt_video_path": [""] * k,
            }
        )


def label_rationale(answer: str) -> str:
    """What a short text label says, in the same sentence style as the query rationales."""
    words = answer.split()
    if answer in scenes.COLORS:
        return sentences("The candidate names a colour", f"The colour is {answer}")
    if answer in scenes.NUMBERS:
        return sentences("The candidate names a number", f"The number is {answer}")
    if answer in scenes.MOTIONS:
        return sentences("The candidate names a motion", f"The motion is {answer}")
    if len(words) == 2 and words[0] in scenes.COLORS and words[1] in scenes.SHAPES:
        return sentences(
            "The candidate names a colour and a shape",
            f"The colour is {words[0]}",
            f"The shape is a {words[1]}",
        )
    return sentences("The candidate is a short answer", f"It reads {answer}")
