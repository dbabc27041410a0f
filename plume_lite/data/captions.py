"""The pre-training corpus of the tiny backbone: dense captions and text lookups.

A stand-in for a VLM's pre-training (the paper's chain starts from a model that can
already perceive and verbalise). Captions state exactly the facts SynthMMEB's rationales
need, in the rationales' own sentence style:

    single   one object            "The image shows a single object. It is a red circle."
    row      2-4 shapes in a row   "... From left to right they are a red circle, a blue
                                   square and a cyan diamond. The circle is the first shape
                                   from the left. ..."   (ordinals: PRETRAIN_PROBE.md §5)
    scatter  counts per colour     "The image shows seven shapes. There are two red shapes. ..."
    bars     the chart layout      "The chart shows seven green bars and a dashed line. Bars
                                   2, 5 and 6 rise above the line. That makes three bars
                                   above the line."
    lookup   text only             "Links: red to cyan. blue to pink. Ask: blue to?" -> "pink."

Scenes come from their own seeded RNG stream ("pretrain:SEED"), never SynthMMEB's
("synthmmeb:SEED:TASK"), and are drawn fresh for every sequence, so the corpus shares no
scene with any SynthMMEB split. The lookups grow from 2 facts to 8 over training, with one
question per sequence (no elimination shortcut: PRETRAIN_PROBE.md §2).

`ordinals`: the order of a row caption's ordinal clauses. "left_to_right" (the shipped
backbone's) states them in position order, so the i-th clause's ordinal is the i-th
word whatever the shape; "by_shape" states them in the fixed order of SHAPES, so each
ordinal has to be bound to its shape, which left-of's rationale needs ("The diamond is
the fourth shape from the left"). `neighbours`: also state, for every shape but the
leftmost, the shape just left of it ("The shape just left of the diamond is the orange
square"), in the same order: left-of's last step as a fact of the scene."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from plume_lite.data import scenes
from plume_lite.data.scenes import COLOR_NAMES, NUMBERS, ORDINALS, SHAPES, article, listing

CAPTION_KINDS = ("single", "row", "scatter", "bars")
ORDINAL_ORDERS = ("left_to_right", "by_shape")
KINDS = CAPTION_KINDS + ("lookup",)
# share of each kind in a batch: mostly images, a quarter text lookups (the probe's mix)
MIX = {"single": 0.15, "row": 0.25, "scatter": 0.2, "bars": 0.15, "lookup": 0.25}
DESCRIBE = "Describe the image."
FOLLOW = "Follow the link."
# Words the pre-trained backbone's tokenizer learns merges for, beside the tiny default's
# (plume_lite/backbone.py): those of the captions and of SynthMMEB's rationales and
# instructions, so a caption costs ~30 % fewer tokens than byte-by-byte.
VOCAB = """
The This It Its There That So No From In Bar Bars Find Given Select Which What Where How Are Ask
Describe Follow Links Represent Understand Recognize Compare Count Answer Name Pick Exactly One Three
shows single object objects shape shapes row they from left right first second third fourth fifth sixth
seventh there is are a an the and of to in on at it its that makes bar bars chart dashed line rise
rises stays stay below above image video clip clips frame frames page pages document title header block
blocks caption crop cropped picture part parts moment moving moved moves growing shrinking blinking
standing still near top bottom middle small large count counts colour colours coloured shape outline
round made four equal sides three corners square turned on its tip candidate names number motion
answer question query given following described matches matching description retrieval classification
link links follow asked happens last mover more most than do not matter here sits under just so
red green blue yellow purple orange cyan pink circle square triangle diamond
zero one two three four five six seven eight nine ten eleven twelve thirteen
"""


@dataclass(frozen=True)
class Sample:
    kind: str
    prompt: str  # the user turn's text
    target: str  # what the assistant writes (the loss is on this)
    image: Image.Image | None = None


def _sentences(*parts: str) -> str:
    return " ".join(p if p.endswith((".", "?")) else p + "." for p in parts if p)


def _a(color: str, shape: str) -> str:
    return f"{article(color)} {color} {shape}"


def single(rng: random.Random) -> Sample:
    c, s = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
    obj = (s, c, rng.randint(22, 42), rng.randint(22, 42), rng.randint(10, 18))
    caption = _sentences("The image shows a single object", f"It is {_a(c, s)}")
    return Sample("single", DESCRIBE, caption, scenes.scene(rng, [obj]))


def row(rng: random.Random, ordinals: str = "left_to_right", neighbours: bool = False) -> Sample:
    k = rng.choice([2, 3, 4])
    slots = sorted(rng.sample(range(4), k))
    shp, col = rng.sample(SHAPES, k), rng.sample(COLOR_NAMES, k)
    r = rng.randint(5, 7)
    if ordinals not in ORDINAL_ORDERS:
        raise ValueError(f"unknown ordinals order {ordinals!r}; choose one of {', '.join(ORDINAL_ORDERS)}")
    objs = [(shp[i], col[i], 8 + 16 * slots[i], rng.randint(18, 46), r) for i in range(k)]
    order = sorted(range(k), key=lambda i: SHAPES.index(shp[i])) if ordinals == "by_shape" else range(k)
    caption = _sentences(
        f"The image shows {NUMBERS[k]} shapes in a row",
        f"From left to right they are {listing([_a(col[i], shp[i]) for i in range(k)])}",
        *(f"The {shp[i]} is the {ORDINALS[i]} shape from the left" for i in order),
        *(
            f"The shape just left of the {shp[i]} is the {col[i - 1]} {shp[i - 1]}"
            for i in (order if neighbours else ())
            if i > 0
        ),
    )
    return Sample("row", DESCRIBE, caption, scenes.scene(rng, objs))


def scatter(rng: random.Random) -> Sample:
    colors = rng.sample(range(8), rng.randint(2, 4))
    counts = [rng.randint(1, 5) for _ in colors]
    while sum(counts) > 12:  # the number words stop at thirteen; the 4x4 grid has 16 cells
        counts[counts.index(max(counts))] -= 1
    cells = rng.sample(range(16), sum(counts))
    objs, at = [], 0
    for col, n in zip(colors, counts):
        for cell in cells[at : at + n]:
            gx, gy = cell % 4, cell // 4
            x, y = 8 + 16 * gx + rng.randint(-2, 2), 8 + 16 * gy + rng.randint(-2, 2)
            objs.append((rng.choice(SHAPES), COLOR_NAMES[col], x, y, 5))
        at += n
    per_color = [
        f"There {'is' if n == 1 else 'are'} {NUMBERS[n]} {COLOR_NAMES[c]} shape{'s' if n != 1 else ''}"
        for c, n in sorted(zip(colors, counts))
    ]
    caption = _sentences(f"The image shows {NUMBERS[sum(counts)]} shapes", *per_color)
    return Sample("scatter", DESCRIBE, caption, scenes.scene(rng, objs))


def bars(rng: random.Random) -> Sample:
    c, k = rng.choice(COLOR_NAMES), rng.randint(0, 7)
    line = rng.randint(18, 36)
    above = set(rng.sample(range(7), k))
    heights = [rng.randint(line + 5, 50) if i in above else rng.randint(4, line - 5) for i in range(7)]
    img = scenes.background(rng)
    scenes.draw_bars(ImageDraw.Draw(img), heights, line, c, (4, 6, 60, 58))
    up = [str(i + 1) for i in sorted(above)]
    rise = (
        "No bar rises above the line"
        if not up
        else f"Bar {up[0]} rises above the line"
        if len(up) == 1
        else f"Bars {listing(up)} rise above the line"
    )
    caption = _sentences(
        f"The chart shows seven {c} bars and a dashed line",
        rise,
        f"That makes {NUMBERS[k]} bar{'s' if k != 1 else ''} above the line",
    )
    return Sample("bars", DESCRIBE, caption, img)


def lookup(rng: random.Random, n_facts: int = 8) -> Sample:
    """`n_facts` links of a random permutation of the colours, then one question."""
    n_facts = max(2, min(int(n_facts), len(COLOR_NAMES)))
    src = rng.sample(COLOR_NAMES, n_facts)
    dst = rng.sample(COLOR_NAMES, n_facts)
    facts = " ".join(f"{a} to {b}." for a, b in zip(src, dst))
    q = rng.randrange(n_facts)
    return Sample("lookup", f"{FOLLOW} Links: {facts} Ask: {src[q]} to?", f"{dst[q]}.")


BUILDERS = {"single": single, "row": row, "scatter": scatter, "bars": bars}


def draw(
    rng: random.Random,
    kind: str,
    progress: float = 1.0,
    ordinals: str = "left_to_right",
    neighbours: bool = False,
) -> Sample:
    """One sample of `kind`; lookups have 2 facts at progress 0 and 8 from progress 0.5."""
    if kind == "lookup":
        return lookup(rng, 2 + round(6 * min(1.0, 2 * max(0.0, progress))))
    if kind == "row":
        return row(rng, ordinals, neighbours)
    if kind not in BUILDERS:
        raise ValueError(f"unknown caption kind {kind!r}; choose one of {', '.join(KINDS)}")
    return BUILDERS[kind](rng)


class CaptionStream:
    """The training stream: batch after batch of fresh samples, deterministic per seed."""

    def __init__(
        self,
        seed: int = 0,
        mix: dict | None = None,
        ordinals: str = "left_to_right",
        neighbours: bool = False,
    ):
        self.rng = random.Random(f"pretrain:{seed}")
        self.ordinals, self.neighbours = ordinals, neighbours
        self.mix = dict(mix or MIX)
        self.kinds, self.weights = list(self.mix), list(self.mix.values())

    def batch(self, size: int, progress: float = 1.0, mixed: bool = True) -> list[Sample]:
        """`size` samples drawn by MIX. mixed=False: all of one kind (drawn by MIX), which
        pads far less (a row caption is 3x a lookup answer) and halves a step's CPU cost,
        but learnt the row shapes much more slowly (README §Pre-trained tiny backbone)."""
        if mixed:
            kinds = self.rng.choices(self.kinds, self.weights, k=size)
            return [draw(self.rng, k, progress, self.ordinals, self.neighbours) for k in kinds]
        kind = self.rng.choices(self.kinds, self.weights)[0]
        return [draw(self.rng, kind, progress, self.ordinals, self.neighbours) for _ in range(size)]


def held_out(
    kind: str, n: int, seed: int = 0, ordinals: str = "left_to_right", neighbours: bool = False
) -> list[Sample]:
    """`n` evaluation samples of `kind` from a stream of their own (not the training one)."""
    rng = random.Random(f"pretrain-eval:{seed}:{kind}")
    return [draw(rng, kind, ordinals=ordinals, neighbours=neighbours) for _ in range(n)]
