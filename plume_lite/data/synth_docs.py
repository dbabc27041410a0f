"""SynthMMEB visual-document tasks: text query -> page of a real PDF, BEIR layout, graded
relevance (2 exact, 1 partial) for NDCG@5. Pages are 64x80 with big coloured blocks."""

from __future__ import annotations

from PIL import Image, ImageDraw

from plume_lite.data import scenes
from plume_lite.data.scenes import COLOR_NAMES, NUMBERS, PAGE, listing
from plume_lite.data.storage import VISDOC_QRY_INST, VISDOC_TGT_INST
from plume_lite.data.synth_base import EVAL_SPLITS, TEST, Builder, TaskSpec, add_negatives, sentences

PAGES_PER_PDF = 4


def _paper(rng) -> Image.Image:
    g = rng.randint(232, 250)
    return Image.new("RGB", PAGE, (g, g, g))


def _text_lines(d, rng, x, y, n):
    for i in range(n):  # grey "text" strokes: layout noise the model must ignore
        d.line([x, y + 4 * i, x + rng.randint(20, 48), y + 4 * i], fill=(120, 120, 120))


# ----------------------------------------------------------------------------- layout pages


def _layout_page(rng, attrs):
    h, bc, n = attrs
    img = _paper(rng)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 63, 12], fill=scenes.COLORS[COLOR_NAMES[h]])
    slots = set(rng.sample(range(4), n))
    for k in range(4):
        y = 18 + 15 * k
        if k in slots:
            d.rectangle([8, y, 55, y + 10], fill=scenes.COLORS[COLOR_NAMES[bc]])
        else:
            _text_lines(d, rng, 8, y + 2, 3)
    return img


def _layout_text(attrs):
    h, bc, n = attrs
    H, B, N = COLOR_NAMES[h], COLOR_NAMES[bc], NUMBERS[n]
    blocks = f"{N} {B} block{'s' if n != 1 else ''}"
    return dict(
        query=f"a page with a {H} header and {blocks}",
        rationale=sentences(
            f"The query asks for a page with a {H} header",
            f"It asks for {N} block{'s' if n != 1 else ''}",
            f"The blocks should be {B}",
        ),
        answer=f"{H} header, {blocks}",
        pos_rationale=sentences(
            f"The page has a {H} header bar at the top",
            f"Below it there {'is' if n == 1 else 'are'} {blocks}",
            "The rest of the page holds grey text lines",
            f"So it is a page with a {H} header and {blocks}",
        ),
        pos_answer=f"{H} header, {blocks}",
    )


def _layout_rel(q, p) -> int:
    if q == p:
        return 2
    return 1 if q[:2] == p[:2] else 0  # same colours, different block count


# ----------------------------------------------------------------------------- chart pages


def _chart_page(rng, attrs):
    t, c, k = attrs
    img = _paper(rng)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 63, 10], fill=scenes.COLORS[COLOR_NAMES[t]])
    _text_lines(d, rng, 6, 15, 2)
    line = rng.randint(14, 28)
    above = set(rng.sample(range(5), k))
    heights = [rng.randint(line + 5, 44) if i in above else rng.randint(4, line - 5) for i in range(5)]
    scenes.draw_bars(d, heights, line, COLOR_NAMES[c], (6, 26, 58, 74), line_color=(20, 20, 20))
    return img, sorted(above)


def _chart_text(attrs, above=None):
    t, c, k = attrs
    T, C, K = COLOR_NAMES[t], COLOR_NAMES[c], NUMBERS[k]
    bars = f"{K} bar{'s' if k != 1 else ''} above the line"
    out = dict(
        query=f"the page with a {T} title whose {C} chart has {bars}",
        rationale=sentences(
            f"The query asks for a page with a {T} title",
            f"The page should hold a {C} bar chart",
            f"Exactly {K} of its bars should rise above the dashed line",
        ),
        answer=f"{T} title, {C} chart, {bars}",
        pos_answer=f"{T} title, {C} chart, {bars}",
    )
    if above is not None:
        names = [str(i + 1) for i in above]
        out["pos_rationale"] = sentences(
            f"The page has a {T} title bar",
            f"Its chart has five {C} bars and a dashed line",
            (f"Bar {names[0]} rises" if len(names) == 1 else f"Bars {listing(names)} rise")
            + " above the line"
            if names
            else "No bar rises above the line",
            f"So {K} bar{' is' if k == 1 else 's are'} above the line",
        )
    return out


def _chart_rel(q, p) -> int:
    if q == p:
        return 2
    return 1 if q[2] == p[2] and q[0] == p[0] else 0  # right count and title, other chart colour


# ----------------------------------------------------------------------------- BEIR assembly


def _pdfs(b: Builder, pages: list, split: str) -> list[tuple[str, int]]:
    """Pack pages PAGES_PER_PDF to a file; return (pdf path, page index) per page."""
    where = []
    for i in range(0, len(pages), PAGES_PER_PDF):
        rel = b.pdf(pages[i : i + PAGES_PER_PDF], split)
        where += [(rel, j) for j in range(len(pages[i : i + PAGES_PER_PDF]))]
    return where


def _page(out) -> list:
    return [out[0]]  # render() -> (page image, extra facts)


def beir_task(b: Builder, combos, key, render, describe, relevance, near_miss):
    """render(rng, attrs) -> (image, extra); describe(attrs, extra) -> texts;
    near_miss(rng, attrs) -> attrs of a partially relevant page (same key, same split)."""
    train = b.combos(combos, key, "train")
    drawn = [b.rng.choice(train) for _ in range(b.n_train)]
    rendered = [b.fresh(lambda r, a=a: render(r, a), "train", _page) for a in drawn]
    where = _pdfs(b, [img for img, _ in rendered], "train")
    for a, (_, extra), (pdf, page) in zip(drawn, rendered, where):
        t = describe(a, extra)
        b.train_rows.append(
            {
                "qry_inst": VISDOC_QRY_INST,
                "qry": t["query"],
                "pos_inst": VISDOC_TGT_INST,
                "pos_pdf_path": pdf,
                "pos_page": page,
                "qry_rationale": t["rationale"],
                "qry_answer": t["answer"],
                "pos_rationale": t["pos_rationale"],
                "pos_answer": t["pos_answer"],
            }
        )
    add_negatives(b)
    for split in EVAL_SPLITS:
        b.beir[split] = _beir_split(b, split, combos, train, key, render, describe, relevance, near_miss)


def _beir_split(b: Builder, split, combos, train, key, render, describe, relevance, near_miss) -> dict:
    """One evaluation split: queries of the split's combinations, and a corpus of their
    pages, near misses and random pages (i.i.d. test: of training combinations only)."""
    mine = b.combos(combos, key, split)
    queries = b.rng.sample(mine, min(b.n_eval[split], len(mine)))
    page_attrs = list(queries)
    page_attrs += [near_miss(b.rng, q) for q in queries if b.rng.random() < 0.5]
    pool = train if split == TEST else combos
    page_attrs += [b.rng.choice(pool) for _ in range(len(queries) // 2)]
    b.rng.shuffle(page_attrs)
    pages = [b.fresh(lambda r, a=a: render(r, a), split, _page)[0] for a in page_attrs]
    where = _pdfs(b, pages, split)
    # corpus ids are unique across splits, so a merged corpus stays unambiguous
    name = b.spec.name if split == TEST else f"{b.spec.name}-{split}"
    corpus = [
        {"corpus-id": f"{name}-p{i:04d}", "pdf_path": pdf, "page": page}
        for i, (pdf, page) in enumerate(where)
    ]
    qrows, qrels = [], []
    for qi, q in enumerate(queries):
        qid = f"{name}-q{qi:04d}"
        qrows.append({"query-id": qid, "query": describe(q, None)["query"]})
        for doc, a in zip(corpus, page_attrs):
            r = relevance(q, a)
            if r > 0:
                qrels.append({"query-id": qid, "corpus-id": doc["corpus-id"], "score": r})
    return {"queries": qrows, "corpus": corpus, "qrels": qrels}


def build_layout(b: Builder):
    combos = [(h, c, n) for h in range(8) for c in range(8) for n in range(1, 5)]

    def near(rng, a):
        return (a[0], a[1], rng.choice([n for n in range(1, 5) if n != a[2]]))

    beir_task(
        b,
        combos,
        lambda a: (a[0], a[1]),
        lambda rng, a: (_layout_page(rng, a), None),
        lambda a, _: _layout_text(a),
        _layout_rel,
        near,
    )


def build_chart(b: Builder):
    combos = [(t, c, k) for t in range(8) for c in range(8) for k in range(6)]

    def near(rng, a):
        return (a[0], rng.choice([c for c in range(8) if c != a[1]]), a[2])

    beir_task(b, combos, lambda a: (a[0], a[2]), _chart_page, _chart_text, _chart_rel, near)


TASKS = [
    TaskSpec(
        "doc_ret_layout",
        "visdoc",
        "vidore",
        "global",
        "ndcg@5",
        False,
        build_layout,
        "(header colour, block colour)",
        "Find the page by header colour and number/colour of blocks (2 exact, 1 wrong count).",
    ),
    TaskSpec(
        "doc_ret_chart",
        "visdoc",
        "vidore",
        "global",
        "ndcg@5",
        True,
        build_chart,
        "(title colour, bars above line)",
        "Find the page whose chart has N bars above its line (2 exact, 1 chart colour off).",
    ),
]
