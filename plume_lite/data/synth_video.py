"""SynthMMEB video tasks (8-frame 64x64 mp4 clips): motion classification, "which shape
moved last" QA (reasoning), text-to-video retrieval (global) and moment retrieval."""

from __future__ import annotations

from PIL import Image, ImageDraw

from plume_lite.data import scenes
from plume_lite.data.scenes import COLOR_NAMES, MOTIONS, ORDINALS, SHAPES, article, listing
from plume_lite.data.synth_base import (
    EVAL_SPLITS,
    TEST,
    Builder,
    TaskSpec,
    add_negatives,
    label_task,
    sentences,
)

VIDEO_TGT = "Understand the content of the provided video."


def _a(c: int, s: int) -> str:
    return f"{article(COLOR_NAMES[c])} {COLOR_NAMES[c]} {SHAPES[s]}"


def _motion_story(c: int, s: int, m: int, subject: str = "video") -> list[str]:
    """Rationale sentences describing one object's motion over a clip."""
    motion, shape = MOTIONS[m], SHAPES[s]
    out = [f"The {subject} shows {_a(c, s)}"]
    if motion == "blinking":
        out.append("It is visible in some frames and gone in others")
    elif motion == "standing still":
        out.append("It stays in the same place and keeps its size in every frame")
    else:
        start, end = scenes.motion_place(motion)
        out += [f"In the first frame it is {start}", f"In the last frame it is {end}"]
    out.append(f"So the {shape} is {motion}")
    return out


# ----------------------------------------------------------------------------- classification


def _motion_sample(rng):
    c, s, m = rng.randrange(8), rng.randrange(4), rng.randrange(8)
    return dict(
        key=(c, m),
        kind="video",
        text="",
        answer=MOTIONS[m],
        data=scenes.motion_frames(rng, SHAPES[s], COLOR_NAMES[c], MOTIONS[m]),
        rationale=sentences(*_motion_story(c, s, m)),
    )


def build_motion(b: Builder):
    label_task(b, _motion_sample, "Recognize the motion in the video.", MOTIONS)


# ----------------------------------------------------------------------------- moved last (reasoning)


def _last_frames(rng, cols, shps, order, dirs):
    g = rng.randint(25, 60)
    frames = []
    for t in range(8):
        img = Image.new("RGB", (64, 64), (g, g, g))
        d = ImageDraw.Draw(img)
        for i, x in enumerate((12, 32, 52)):
            j = order.index(i)  # object i moves during frames 2j+1 and 2j+2
            dy = dirs[i] * 6 * min(max(t - 2 * j, 0), 2)
            scenes.draw_shape(d, SHAPES[shps[i]], x, 32 + dy, 7, COLOR_NAMES[cols[i]])
        frames.append(img)
    return frames


def _last_sample(rng):
    cols, shps = rng.sample(range(8), 3), rng.sample(range(4), 3)
    order = rng.sample(range(3), 3)
    dirs = [rng.choice((-1, 1)) for _ in range(3)]
    name = [_a(cols[i], shps[i]) for i in range(3)]
    the = [f"The {COLOR_NAMES[cols[i]]} {SHAPES[shps[i]]}" for i in order]
    last = order[2]
    ans = COLOR_NAMES[cols[last]]
    return dict(
        key=(cols[last], shps[last]),
        kind="video",
        data=_last_frames(rng, cols, shps, order, dirs),
        text="What colour is the shape that moved last?",
        answer=ans,
        rationale=sentences(
            f"The clip shows three shapes: {listing(name)}",
            f"{the[0]} moves first, at the start of the clip",
            f"{the[1]} moves next, in the middle of the clip",
            f"{the[2]} moves last, near the end of the clip",
            f"So the shape that moved last is {ans}",
        ),
    )


def build_last(b: Builder):
    label_task(b, _last_sample, "Given a video and a question, select the most suitable answer.", COLOR_NAMES)


# ----------------------------------------------------------------------------- text-to-video (global)


def _caption(t) -> str:
    c, s, m = t
    return f"{_a(c, s)} {MOTIONS[m]}"


def _clip(rng, t, bg=None):
    c, s, m = t
    return scenes.motion_frames(rng, SHAPES[s], COLOR_NAMES[c], MOTIONS[m], bg=bg)


def build_t2v(b: Builder):
    qi = "Find a video that contains the following visual content:"
    combos = [(c, s, m) for c in range(8) for s in range(4) for m in range(8)]
    key = lambda t: (t[1], t[2])  # noqa: E731 - hold out (shape, motion) pairs
    train = b.combos(combos, key, "train")
    for _ in range(b.n_train):
        t = b.rng.choice(train)
        b.train_rows.append(
            {
                "qry_inst": qi,
                "qry": _caption(t),
                "pos_inst": VIDEO_TGT,
                "pos_video_path": b.video(b.fresh(lambda r, t=t: _clip(r, t), "train"), "train"),
                "qry_rationale": sentences(
                    "The caption names one object and one motion",
                    f"The object is {_a(t[0], t[1])}",
                    f"The motion is {MOTIONS[t[2]]}",
                ),
                "qry_answer": _caption(t),
                "pos_rationale": sentences(*_motion_story(*t)),
                "pos_answer": _caption(t),
            }
        )
    add_negatives(b)
    for split in EVAL_SPLITS:
        # i.i.d. test: every clip of a training combination; compositional: held-out queries
        pool = train if split == TEST else combos
        mine = b.combos(combos, key, split)
        queries = b.rng.sample(mine, min(b.n_eval[split], len(mine)))
        qset = set(queries)
        for t in queries:
            same_obj = [u for u in pool if u[:2] == t[:2] and u not in qset]
            extra = b.rng.sample(same_obj, min(1, len(same_obj)))
            extra.append(b.rng.choice([u for u in pool if u not in qset]))
            tgts = [b.video(b.fresh(lambda r, u=u: _clip(r, u), split), split) for u in [t] + extra]
            b.eval_rows[split].append(
                {
                    "qry_inst": qi,
                    "qry_text": _caption(t),
                    "tgt_inst": VIDEO_TGT,
                    "tgt_text": [""] * len(tgts),
                    "tgt_img_path": [""] * len(tgts),
                    "tgt_video_path": tgts,
                }
            )


# ----------------------------------------------------------------------------- moment retrieval


def _moment_sample(rng):
    c, s = rng.randrange(8), rng.randrange(4)
    ms = rng.sample(range(8), 3)
    j = rng.randrange(3)
    g = rng.randint(25, 60)
    clips = [_clip(rng, (c, s, m), bg=g) for m in ms]
    return dict(key=(c, ms[j]), c=c, s=s, ms=ms, j=j, clips=clips)


def _moment_media(x) -> list:
    return x["clips"]  # each part is a clip file; the whole video is their concatenation


def _moment_text(x):
    c, s, ms, j = x["c"], x["s"], x["ms"], x["j"]
    obj = f"{COLOR_NAMES[c]} {SHAPES[s]}"
    return dict(
        text=f"Find the clip where the {obj} is {MOTIONS[ms[j]]}.",
        rationale=sentences(
            "The video has three parts",
            f"In the first part the {obj} is {MOTIONS[ms[0]]}",
            f"In the second part it is {MOTIONS[ms[1]]}",
            f"In the third part it is {MOTIONS[ms[2]]}",
            f"The asked motion, {MOTIONS[ms[j]]}, happens in the {ORDINALS[j]} part",
        ),
        answer=f"the {ORDINALS[j]} part, where the {obj} is {MOTIONS[ms[j]]}",
        pos_rationale=sentences(*_motion_story(c, s, ms[j], "clip")),
        pos_answer=_caption((c, s, ms[j])),
    )


def build_moment(b: Builder):
    qi = "Given a video and a description, find the matching clip."
    ti = "Understand the content of the provided video clip."
    for _ in range(b.n_train):
        x = b.draw(_moment_sample, "train", _moment_media)
        t = _moment_text(x)
        other = b.rng.choice([i for i in range(3) if i != x["j"]])
        b.train_rows.append(
            {
                "qry_inst": qi,
                "qry": t["text"],
                "qry_video_path": b.video(sum(x["clips"], []), "train"),
                "pos_inst": ti,
                "pos_video_path": b.video(x["clips"][x["j"]], "train"),
                "neg_video_path": b.video(x["clips"][other], "train"),
                "qry_rationale": t["rationale"],
                "qry_answer": t["answer"],
                "pos_rationale": t["pos_rationale"],
                "pos_answer": t["pos_answer"],
            }
        )
    for split in EVAL_SPLITS:
        xs = [b.draw(_moment_sample, split, _moment_media) for _ in range(b.n_eval[split])]
        saved = [(b.video(sum(x["clips"], []), split), [b.video(c, split) for c in x["clips"]]) for x in xs]
        for i, x in enumerate(xs):
            want = (x["c"], x["s"], x["ms"][x["j"]])
            own = [saved[i][1][x["j"]]] + [p for k, p in enumerate(saved[i][1]) if k != x["j"]]
            pool = [
                saved[k][1][n]
                for k, y in enumerate(xs)
                if k != i
                for n in range(3)
                if (y["c"], y["s"], y["ms"][n]) != want
            ]
            tgts = own + b.rng.sample(pool, max(0, min(len(pool), b.n_cands - 3)))
            b.eval_rows[split].append(
                {
                    "qry_inst": qi,
                    "qry_text": _moment_text(x)["text"],
                    "qry_video_path": saved[i][0],
                    "tgt_inst": ti,
                    "tgt_text": [""] * len(tgts),
                    "tgt_img_path": [""] * len(tgts),
                    "tgt_video_path": tgts,
                }
            )


TASKS = [
    TaskSpec(
        "vid_cls_motion",
        "video",
        "classification",
        "local",
        "hit@1",
        False,
        build_motion,
        "(colour, motion)",
        "Name the motion of a single shape.",
    ),
    TaskSpec(
        "vid_qa_lastmoved",
        "video",
        "qa",
        "local",
        "hit@1",
        True,
        build_last,
        "(colour, shape) of the last mover",
        "Three shapes move in turn; colour of the last.",
    ),
    TaskSpec(
        "vid_ret_t2v",
        "video",
        "retrieval",
        "global",
        "hit@1",
        False,
        build_t2v,
        "(shape, motion)",
        "Caption to video: a coloured shape and its motion.",
    ),
    TaskSpec(
        "vid_mr_motion",
        "video",
        "moment_retrieval",
        "local",
        "hit@1",
        False,
        build_moment,
        "(colour, asked motion)",
        "Find the clip of a 3-part video with the asked motion.",
    ),
]
