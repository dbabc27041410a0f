"""What every SynthMMEB task builder shares: a per-task seeded RNG, the split rules, numbered
media files, and the two common task shapes (a labelled question answered from a local
candidate list, and hard negatives borrowed from other training pairs).

Splits: a quarter of every task's attribute combinations is held out (`Builder.held_out`).
`train` and `test` draw from the other three quarters; `test` is i.i.d. (fresh scenes, none
pixel-identical to a training scene: `Builder.draw` and `Builder.fresh` compare content
fingerprints) and is the main score. `compositional` draws its queries from the held-out
combinations only, which training never contains."""

from __future__ import annotations

import hashlib
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
    build: Callable  # build(builder) fills builder.train_rows and, per eval split, eval_rows / beir
    holdout: str  # which attribute combination the compositional split holds out
    description: str


def sentences(*parts: str) -> str:
    """Join rationale sentences; each ends in '.', so the curriculum can split on '. '."""
    out = []
    for p in parts:
        p = p.strip()
        if p:
            out.append(p if p.endswith(".") else p + ".")
    return " ".join(out)


TRAIN, TEST, COMPOSITIONAL = "train", "test", "compositional"
EVAL_SPLITS = (TEST, COMPOSITIONAL)  # test: i.i.d. (main score); compositional: held-out combinations


def fingerprint(media) -> str:
    """Content hash of one media file's pixels: an image, or a clip (a list of frames)."""
    h = hashlib.sha256()
    for im in media if isinstance(media, list) else [media]:
        h.update(f"{im.mode}{im.size};".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def _data(s: dict) -> list:
    return [s["data"]]


class Builder:
    """Collects one task's rows and writes its media under media/<task>/<split>/."""

    def __init__(
        self,
        root: Path,
        spec: TaskSpec,
        seed: int,
        n_train: int,
        n_test: int,
        n_cands: int,
        n_compositional: int | None = None,
    ):
        self.root, self.spec, self.seed = Path(root), spec, seed
        self.n_train, self.n_cands = n_train, n_cands
        # queries per evaluation split (global tasks may have fewer combinations to offer)
        self.n_eval = {TEST: n_test, COMPOSITIONAL: n_test if n_compositional is None else n_compositional}
        # str seeds are hashed with sha512 by `random`: stable across runs and machines
        self.rng = random.Random(f"synthmmeb:{seed}:{spec.name}")
        self.train_rows: list[dict] = []
        self.eval_rows: dict[str, list[dict]] = {s: [] for s in EVAL_SPLITS}
        # BEIR tasks, per split: {"queries": [...], "corpus": [...], "qrels": [...]}
        self.beir: dict[str, dict] = {}
        self._count: Counter = Counter()
        self._train_media: set[str] = set()  # fingerprints of every training media file

    # -- splits: a quarter of the attribute combinations, balanced along every axis, is held out
    def held_out(self, key: tuple) -> bool:
        return (sum(key) + self.seed) % 4 == 0

    def in_split(self, key: tuple, split: str) -> bool:
        """train and test use the same combinations; compositional only the held-out ones."""
        return self.held_out(key) == (split == COMPOSITIONAL)

    def _admit(self, media: list, split: str) -> bool:
        """Training media are recorded; an evaluation scene is refused if any of its media
        files is pixel-identical to a training one."""
        prints = [fingerprint(m) for m in media]
        if split == TRAIN:
            self._train_media.update(prints)
            return True
        return not self._train_media.intersection(prints)

    def draw(self, sample: Callable, split: str, media: Callable = _data) -> dict:
        """Rejection-sample a scene whose key belongs to `split`; evaluation scenes never
        repeat a training scene.

        media(scene) -> the images / clips it will be written as (default: [scene["data"]])."""
        for _ in range(10_000):
            s = sample(self.rng)
            if self.in_split(s["key"], split) and self._admit(media(s), split):
                return s
        raise RuntimeError(f"{self.spec.name}: cannot sample a {split} scene")

    def fresh(self, render: Callable, split: str, media: Callable = lambda x: [x]):
        """render(rng) drawn again until it repeats no training media file (evaluation splits)."""
        for _ in range(1_000):
            out = render(self.rng)
            if self._admit(media(out), split):
                return out
        raise RuntimeError(f"{self.spec.name}: cannot render a {split} scene unlike the training ones")

    def combos(self, combos: list, key: Callable, split: str) -> list:
        """The combinations of `split` (train and test share theirs)."""
        return [c for c in combos if self.in_split(key(c), split)]

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
    pos_rationale?}. Evaluation rows (per split) list the positive first, then other
    labels (local)."""
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
    for split in EVAL_SPLITS:
        for _ in range(b.n_eval[split]):
            s = b.draw(sample, split)
            m = b.media(s["kind"], s["data"], split)
            others = b.rng.sample([lab for lab in labels if lab != s["answer"]], k - 1)
            b.eval_rows[split].append(
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
