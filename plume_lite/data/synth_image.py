"""SynthMMEB image tasks: classification, three reasoning QA tasks, text-to-image retrieval
(global) and grounding. Every scene is drawn from sampled attributes, so rationales and
answers are correct by construction."""

from __future__ import annotations

from PIL import Image, ImageDraw

from plume_lite.data import scenes
from plume_lite.data.scenes import COLOR_NAMES, NUMBERS, ORDINALS, OUTLINE, SHAPES, article, listing
from plume_lite.data.synth_base import (
    EVAL_SPLITS,
    TEST,
    Builder,
    TaskSpec,
    add_negatives,
    label_task,
    sentences,
)

QA_INST = "Represent the given image with the following question:"


def _obj(c: int, s: int) -> str:
    return f"{COLOR_NAMES[c]} {SHAPES[s]}"


def _a(c: int, s: int) -> str:
    return f"{article(COLOR_NAMES[c])} {_obj(c, s)}"


# ----------------------------------------------------------------------------- classification


def _cls_sample(rng):
    c, s = rng.randrange(8), rng.randrange(4)
    img = scenes.scene(
        rng, [(SHAPES[s], COLOR_NAMES[c], rng.randint(22, 42), rng.randint(22, 42), rng.randint(12, 18))]
    )
    return dict(
        key=(c, s),
        kind="image",
        data=img,
        text="",
        answer=_obj(c, s),
        rationale=sentences(
            "The image shows a single object on a plain dark background",
            f"Its colour is {COLOR_NAMES[c]}",
            f"Its outline is {OUTLINE[SHAPES[s]]}, so it is a {SHAPES[s]}",
            f"The object is {_a(c, s)}",
        ),
    )


def build_cls(b: Builder):
    labels = [_obj(c, s) for c in range(8) for s in range(4)]
    label_task(b, _cls_sample, "Represent the given image for classification.", labels)


# ----------------------------------------------------------------------------- majority (reasoning)


def _majority_sample(rng):
    # 2-3 colours, all counts different: one winner and one runner-up. The question names no
    # colour, so the text alone gives nothing (the old "more A or B?" gave 50 %).
    cols = rng.sample(range(8), rng.choice([2, 3]))
    counts = rng.sample(range(1, 6), len(cols))
    objs = []
    colour_of = [c for c, n in zip(cols, counts) for _ in range(n)]
    for cell, col in zip(rng.sample(range(16), len(colour_of)), colour_of):
        gx, gy = cell % 4, cell // 4
        objs.append(
            (
                rng.choice(SHAPES),
                COLOR_NAMES[col],
                8 + 16 * gx + rng.randint(-2, 2),
                8 + 16 * gy + rng.randint(-2, 2),
                5,
            )
        )
    ranked = sorted(zip(counts, cols), reverse=True)
    (n_win, win), (_, second) = ranked[0], ranked[1]
    W = COLOR_NAMES[win]
    return dict(
        key=(min(win, second), max(win, second)),
        kind="image",
        data=scenes.scene(rng, objs),
        text="Which colour has the most shapes?",
        answer=W,
        rationale=sentences(
            f"The image shows {NUMBERS[sum(counts)]} shapes in {NUMBERS[len(cols)]} colours",
            *(f"I count the {COLOR_NAMES[c]} shapes and find {NUMBERS[n]}" for c, n in zip(cols, counts)),
            f"{NUMBERS[n_win].capitalize()} is the largest count",
            f"So the {W} shapes are the most",
        ),
    )


def build_majority(b: Builder):
    label_task(b, _majority_sample, QA_INST, COLOR_NAMES)


# ----------------------------------------------------------------------------- left-of (reasoning)


def _leftof_sample(rng):
    k = rng.choice([3, 4])
    slots = sorted(rng.sample(range(4), k))
    shp, col = rng.sample(range(4), k), rng.sample(range(8), k)
    objs = [
        (SHAPES[shp[i]], COLOR_NAMES[col[i]], 8 + 16 * slots[i], rng.randint(18, 46), 6) for i in range(k)
    ]
    j = rng.randrange(1, k)  # the anchor is never the leftmost shape
    anchor, ans = SHAPES[shp[j]], COLOR_NAMES[col[j - 1]]
    return dict(
        key=(shp[j], col[j - 1]),
        kind="image",
        data=scenes.scene(rng, objs),
        text=f"What colour is the shape just left of the {anchor}?",
        answer=ans,
        rationale=sentences(
            f"The image shows {NUMBERS[k]} shapes in a row",
            f"From left to right they are {listing([_a(col[i], shp[i]) for i in range(k)])}",
            f"The {anchor} is the {ORDINALS[j]} shape from the left",
            # the anchor named, not "it": the row captions state this step in these words
            f"The shape just left of the {anchor} is the {_obj(col[j - 1], shp[j - 1])}",
            f"So the answer is {ans}",
        ),
    )


def build_leftof(b: Builder):
    label_task(b, _leftof_sample, QA_INST, COLOR_NAMES)


# ----------------------------------------------------------------------------- chart (reasoning)


def _bars(idx: list[int], verb_one: str, verb_many: str) -> str:
    names = [str(i + 1) for i in idx]
    return f"Bar {names[0]} {verb_one}" if len(names) == 1 else f"Bars {listing(names)} {verb_many}"


def _chart_sample(rng):
    c, k = rng.randrange(8), rng.randint(0, 7)
    line = rng.randint(18, 36)
    above = set(rng.sample(range(7), k))
    heights = [rng.randint(line + 5, 50) if i in above else rng.randint(4, line - 5) for i in range(7)]
    img = scenes.background(rng)
    scenes.draw_bars(ImageDraw.Draw(img), heights, line, COLOR_NAMES[c], (4, 6, 60, 58))
    up, down = sorted(above), sorted(set(range(7)) - above)
    return dict(
        key=(c, k),
        kind="image",
        data=img,
        text="How many bars rise above the dashed line?",
        answer=NUMBERS[k],
        rationale=sentences(
            f"The chart shows seven {COLOR_NAMES[c]} bars and a dashed line",
            _bars(up, "rises above the line", "rise above the line") if up else "No bar rises above the line",
            _bars(down, "stays below it", "stay below it") if down else "No bar stays below it",
            f"That makes {NUMBERS[k]} bar{'s' if k != 1 else ''} above the line",
        ),
    )


def build_chart(b: Builder):
    label_task(b, _chart_sample, QA_INST, NUMBERS[:8])


# ----------------------------------------------------------------------------- text-to-image (global)


def _stack_image(rng, combo):
    c1, s1, c2, s2 = combo
    return scenes.scene(
        rng,
        [
            (SHAPES[s1], COLOR_NAMES[c1], rng.randint(20, 44), 17 + rng.randint(-2, 2), 11),
            (SHAPES[s2], COLOR_NAMES[c2], rng.randint(20, 44), 47 + rng.randint(-2, 2), 11),
        ],
    )


def _caption(combo) -> str:
    c1, s1, c2, s2 = combo
    return f"{_a(c1, s1)} above {_a(c2, s2)}"


def build_t2i(b: Builder):
    qi, ti = "Find an image that matches the given caption.", "Represent the given image."
    combos = [
        (c1, s1, c2, s2)
        for c1 in range(8)
        for s1 in range(4)
        for c2 in range(8)
        for s2 in range(4)
        if (c1, s1) != (c2, s2)
    ]
    key = lambda t: (t[0], t[2])  # noqa: E731 - hold out pairs of (top, bottom) colours
    train = b.combos(combos, key, "train")
    for _ in range(b.n_train):
        t = b.rng.choice(train)
        c1, s1, c2, s2 = t
        b.train_rows.append(
            {
                "qry_inst": qi,
                "qry": _caption(t),
                "pos_inst": ti,
                "pos_image_path": b.image(b.fresh(lambda r, t=t: _stack_image(r, t), "train"), "train"),
                "qry_rationale": sentences(
                    "The caption describes two objects",
                    f"The upper object is {_a(c1, s1)}",
                    f"The lower object is {_a(c2, s2)}",
                ),
                "qry_answer": f"{_obj(c1, s1)} over {_obj(c2, s2)}",
                "pos_rationale": sentences(
                    "The image shows two objects, one above the other",
                    f"The top object is {_a(c1, s1)}",
                    f"The bottom object is {_a(c2, s2)}",
                ),
                "pos_answer": _caption(t),
            }
        )
    add_negatives(b)
    for split in EVAL_SPLITS:
        # i.i.d. test: every scene of a training combination; compositional: held-out queries
        pool = train if split == TEST else combos
        mine = b.combos(combos, key, split)
        queries = b.rng.sample(mine, min(b.n_eval[split], len(mine)))
        qset = set(queries)
        for t in queries:
            swapped = (t[2], t[3], t[0], t[1])  # hard negative: same objects, order flipped
            extra = [swapped] if swapped not in qset else []
            extra.append(b.rng.choice([u for u in pool if u not in qset]))
            tgts = [b.image(b.fresh(lambda r, u=u: _stack_image(r, u), split), split) for u in [t] + extra]
            b.eval_rows[split].append(
                {
                    "qry_inst": qi,
                    "qry_text": _caption(t),
                    "tgt_inst": ti,
                    "tgt_text": [""] * len(tgts),
                    "tgt_img_path": tgts,
                    "tgt_video_path": [""] * len(tgts),
                }
            )


# ----------------------------------------------------------------------------- grounding

CORNERS = [((0, 0), "top left"), ((32, 0), "top right"), ((0, 32), "bottom left"), ((32, 32), "bottom right")]


def _ground_sample(rng):
    objs = rng.sample([(c, s) for c in range(8) for s in range(4)], 4)
    t = rng.randrange(4)
    img = scenes.scene(
        rng,
        [
            (
                SHAPES[s],
                COLOR_NAMES[c],
                x + 16 + rng.randint(-3, 3),
                y + 16 + rng.randint(-3, 3),
                rng.randint(8, 11),
            )
            for (c, s), ((x, y), _) in zip(objs, CORNERS)
        ],
    )
    crops = [img.crop((x, y, x + 32, y + 32)).resize((64, 64), Image.NEAREST) for (x, y), _ in CORNERS]
    return dict(key=objs[t], objs=objs, t=t, img=img, crops=crops)


def _ground_media(s) -> list:
    return [s["img"], *s["crops"]]  # each crop is a file of its own


def _ground_text(s):
    c, sh = s["key"]
    corner = CORNERS[s["t"]][1]
    others = [_a(*o) for i, o in enumerate(s["objs"]) if i != s["t"]]
    return dict(
        rationale=sentences(
            "The image holds four objects, one in each corner",
            f"The {_obj(c, sh)} sits in the {corner} corner",
            f"The other corners hold {listing(others)}",
            f"So the crop to pick is the {corner} corner",
        ),
        answer=f"the {_obj(c, sh)} in the {corner} corner",
        pos_rationale=sentences("The crop shows one object", f"It is {_a(c, sh)}"),
    )


def build_grounding(b: Builder):
    qi = "Select the portion of the image that isolates the object labeled as:"
    ti = "Represent the given cropped image of the object."
    for _ in range(b.n_train):
        s = b.draw(_ground_sample, "train", _ground_media)
        other = b.rng.choice([i for i in range(4) if i != s["t"]])
        txt = _ground_text(s)
        b.train_rows.append(
            {
                "qry_inst": qi,
                "qry": _obj(*s["key"]),
                "qry_image_path": b.image(s["img"], "train"),
                "pos_inst": ti,
                "pos_image_path": b.image(s["crops"][s["t"]], "train"),
                "neg_image_path": b.image(s["crops"][other], "train"),
                "qry_rationale": txt["rationale"],
                "qry_answer": txt["answer"],
                "pos_rationale": txt["pos_rationale"],
                "pos_answer": _obj(*s["key"]),
            }
        )
    for split in EVAL_SPLITS:
        scenes_ = [b.draw(_ground_sample, split, _ground_media) for _ in range(b.n_eval[split])]
        saved = [(b.image(s["img"], split), [b.image(c, split) for c in s["crops"]]) for s in scenes_]
        for i, s in enumerate(scenes_):
            own = [saved[i][1][s["t"]]] + [p for j, p in enumerate(saved[i][1]) if j != s["t"]]
            pool = [
                saved[k][1][j]
                for k, o in enumerate(scenes_)
                if k != i
                for j in range(4)
                if o["objs"][j] != s["key"]
            ]
            tgts = own + b.rng.sample(pool, max(0, min(len(pool), b.n_cands - 4)))
            b.eval_rows[split].append(
                {
                    "qry_inst": qi,
                    "qry_text": _obj(*s["key"]),
                    "qry_img_path": saved[i][0],
                    "tgt_inst": ti,
                    "tgt_text": [""] * len(tgts),
                    "tgt_img_path": tgts,
                    "tgt_video_path": [""] * len(tgts),
                }
            )


TASKS = [
    TaskSpec(
        "img_cls_colorshape",
        "image",
        "classification",
        "local",
        "hit@1",
        False,
        build_cls,
        "(colour, shape) label pairs",
        "Name the colour and shape of the single object.",
    ),
    TaskSpec(
        "img_qa_majority",
        "image",
        "qa",
        "local",
        "hit@1",
        True,
        build_majority,
        "the two most numerous colours",
        "Which of 2-3 colours among scattered shapes has the most.",
    ),
    TaskSpec(
        "img_qa_leftof",
        "image",
        "qa",
        "local",
        "hit@1",
        True,
        build_leftof,
        "(anchor shape, answer colour)",
        "Colour of the shape just left of a named shape.",
    ),
    TaskSpec(
        "img_qa_chart",
        "image",
        "qa",
        "local",
        "hit@1",
        True,
        build_chart,
        "(bar colour, count)",
        "Count the bars of a chart that rise above a dashed line.",
    ),
    TaskSpec(
        "img_ret_t2i",
        "image",
        "retrieval",
        "global",
        "hit@1",
        False,
        build_t2i,
        "(top colour, bottom colour)",
        "Caption to image: two stacked shapes.",
    ),
    TaskSpec(
        "img_ground_ref",
        "image",
        "grounding",
        "local",
        "hit@1",
        False,
        build_grounding,
        "(target colour, target shape)",
        "Pick the crop that isolates the named object.",
    ),
]
