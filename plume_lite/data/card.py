"""SynthMMEB as a Hugging Face dataset: the configs (one per task, BEIR corpus and qrels as
configs of their own), the chance level and the text-only floor of every task, and the
dataset card (README.md, whose YAML front matter is what `datasets.load_dataset` and the Hub
read)."""

from __future__ import annotations

import math
import re

LICENSE = "apache-2.0"
PART = "00000-of-00001.parquet"  # one shard per split, named as push_to_hub names them
HEADER = (
    "| config | modality | meta task | protocol | metric | reasoning | train | test | compositional "
    "| candidates | chance | text floor | description |\n"
    "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


def data_files(entry: dict) -> dict[str, dict[str, str]]:
    """config name -> {split: file relative to the data folder} for one manifest entry
    (its evaluation splits are the keys of entry["splits"]; "test" alone without them)."""
    name, train, test = entry["name"], entry["train"], entry["eval"]
    splits = list(entry.get("splits") or ["test"])
    if entry.get("format") == "beir":
        return {
            name: {"train": f"{train}/train-{PART}", **{s: f"{test}/queries/{s}-{PART}" for s in splits}},
            f"{name}-corpus": {s: f"{test}/corpus/{s}-{PART}" for s in splits},
            f"{name}-qrels": {s: f"{test}/qrels/{s}-{PART}" for s in splits},
        }
    return {name: {"train": f"{train}/train-{PART}", **{s: f"{test}/{s}-{PART}" for s in splits}}}


def _expected(metric: str, blocks: list[tuple[int, list[float]]]) -> float:
    """Expected metric of a ranking made of blocks, each shuffled uniformly at random and
    placed one after the other: blocks = [(candidates in the block, relevance grades > 0 of
    its relevant ones)]. One block is a uniformly random ranking. hit@k: a relevant one in the
    top k; ndcg@k: linear gain and log2 discount, as plume_lite.evaluation.metrics."""
    name, _, k = metric.lower().partition("@")
    n = sum(size for size, _ in blocks)
    k = min(int(k), n)
    grades = [g for _, gs in blocks for g in gs]
    if not grades or n <= 0:
        return 0.0
    if name == "hit":
        miss, left = 1.0, k  # P(no relevant one among the top k)
        for size, gs in blocks:
            take = min(size, left)
            miss *= math.comb(size - len(gs), take) / math.comb(size, take)
            left -= take
        return 1.0 - miss
    discount = [1.0 / math.log2(i + 2) for i in range(k)]
    ideal = sum(g * d for g, d in zip(sorted(grades, reverse=True), discount))
    # each position of a block holds every candidate of the block with the same probability
    gain, start = 0.0, 0
    for size, gs in blocks:
        gain += (sum(gs) / size) * sum(discount[start : start + size]) if size else 0.0
        start += size
    return gain / ideal


def _ranked_pools(task):
    """Per query: (its relevance grades by candidate, the candidates it ranks)."""
    for i, rel in enumerate(task.qrels):
        if task.protocol == "local":
            yield rel, list(dict.fromkeys(task.query_candidates[i]))
        else:
            yield rel, list(range(len(task.candidates)))


def _grades(rel: dict, cands: list) -> list[float]:
    return [float(rel[j]) for j in cands if float(rel.get(j, 0)) > 0]


def chance_level(task) -> float:
    """Expected score (percent, as the evaluator reports) of a random ranking of an
    EvalTask: local tasks rank each query's own candidates, global ones the whole pool."""
    scores = [_expected(task.metric, [(len(c), _grades(rel, c))]) for rel, c in _ranked_pools(task)]
    return round(100.0 * sum(scores) / max(len(scores), 1), 2)


def _words(text: str) -> str:
    """Lower-case words between spaces, so ' red ' matches whole words only."""
    return " " + " ".join(re.findall(r"\w+", (text or "").lower())) + " "


def text_floor(task) -> float:
    """Expected score (percent) of a ranker that reads only the query's text (instruction and
    text): it ranks first, in random order, the candidates whose text occurs in it (as whole
    words, any case), then the others in random order; with none, a random ranking. Equal to
    the chance level unless the query text names candidates: a text-only shortcut."""
    scores = []
    for q, (rel, cands) in zip(task.queries, _ranked_pools(task)):
        said = _words(f"{q.get('instruction', '')} {q.get('text', '')}")
        texts = {j: _words(task.candidates[j].get("text", "")) for j in cands}
        named = [j for j in cands if texts[j].strip() and texts[j] in said]
        rest = [j for j in cands if j not in named]
        blocks = [(len(named), _grades(rel, named)), (len(rest), _grades(rel, rest))]
        scores.append(_expected(task.metric, blocks))
    return round(100.0 * sum(scores) / max(len(scores), 1), 2)


def _yaml_front_matter(manifest: dict) -> str:
    import yaml

    configs = []
    for entry in manifest["tasks"]:
        for name, splits in data_files(entry).items():
            cfg = {
                "config_name": name,
                "data_files": [{"split": s, "path": p} for s, p in splits.items()],
            }
            if not configs:
                cfg["default"] = True
            configs.append(cfg)
    n = sum(e["n_train"] + _n_eval(e) for e in manifest["tasks"])
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"
    meta = {
        "license": LICENSE,
        "pretty_name": "SynthMMEB",
        "language": ["en"],
        "size_categories": [size],
        "task_categories": ["feature-extraction", "visual-question-answering", "image-classification"],
        "tags": ["synthetic", "multimodal", "embedding", "retrieval", "mmeb", "rationale"],
        "configs": configs,
    }
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)


def _n_eval(entry: dict) -> int:
    """Evaluation queries of a task, all splits."""
    return entry.get("n_test_queries", 0) + entry.get("n_compositional_queries", 0)


def generator_command(manifest: dict, all_names: list[str]) -> str:
    cmd = f"plume-lite synth --out SynthMMEB --size {manifest['size']} --seed {manifest['seed']}"
    names = [e["name"] for e in manifest["tasks"]]
    if names != all_names:
        cmd += f" --tasks {','.join(names)}"
    if manifest.get("train_pairs") is not None:
        cmd += f" --train-pairs {manifest['train_pairs']}"
    return cmd


def dataset_card(manifest: dict, command: str) -> str:
    """README.md of a SynthMMEB folder: front matter (license, configs) and the card."""
    first = manifest["tasks"][0]["name"] if manifest["tasks"] else "TASK"
    rows = []
    for e in manifest["tasks"]:
        extra = f" (+ `{e['name']}-corpus`, `{e['name']}-qrels`)" if e.get("format") == "beir" else ""
        rows.append(
            f"| `{e['name']}`{extra} | {e['modality']} | {e['meta_task']} | {e['protocol']} | "
            f"{e['metric']} | {'yes' if e['reasoning'] else '-'} | {e['n_train']} | "
            f"{e['n_test_queries']} | {e['n_compositional_queries']} | {e['candidates_per_query']} | "
            f"{e['chance']:.2f} | {e['text_floor']:.2f} | {e['description']} |"
        )
    n_train = sum(e["n_train"] for e in manifest["tasks"])
    n_test = sum(e["n_test_queries"] for e in manifest["tasks"])
    n_comp = sum(e["n_compositional_queries"] for e in manifest["tasks"])
    table = "\n".join(rows)
    return f"""---
{_yaml_front_matter(manifest)}---

# SynthMMEB ({manifest["size"]}, seed {manifest["seed"]})

An offline benchmark shaped like MMEB-v2: image, video and visual-document tasks with local
and global candidate protocols, Hit@1 and graded NDCG@5, and a multi-sentence rationale plus a
short answer (UME-sft style) for the query and the positive of every training pair. Every scene
is drawn from sampled attributes, so rationales and answers are correct by construction.

Two evaluation splits:

- `test`, the main score: {manifest["splits"]["test"]}.
- `compositional`, a separate column (generalisation to unseen combinations of attributes):
  {manifest["splits"]["compositional"]}.

{len(manifest["tasks"])} tasks, {n_train} training pairs, {n_test} test and {n_comp} compositional queries,
generated by code (the `plume_lite` package) deterministically: the same seed gives byte-identical
files.

    {command}

or `plume_lite.data.synth.make_synth(out, size="{manifest["size"]}", seed={manifest["seed"]})`.

## Loading

```python
from datasets import load_dataset

ds = load_dataset("path/to/SynthMMEB", "{first}")  # splits: train, test, compositional
test = load_dataset("path/to/SynthMMEB", "{first}", split="test")
held_out = load_dataset("path/to/SynthMMEB", "{first}", split="compositional")
```

Each task is a config with a `train` split (training pairs) and the `test` and `compositional`
splits (queries); a visual-document task's corpus and graded qrels are the configs
`<task>-corpus` and `<task>-qrels` (splits `test` and `compositional`, each with its own pages),
as BEIR / ViDoRe sets are laid out. The files are parquet:

    README.md                         this card; its front matter maps configs to files
    tasks.json                        manifest: per task modality, meta_task, protocol, metric,
                                      reasoning flag, sizes, chance level and text floor
                                      per split
    train/<task>/train-*.parquet      training pairs
    eval/<task>/<split>-*.parquet     test / compositional rows (image and video tasks)
    eval/<task>/queries/<split>-*.parquet, corpus/..., qrels/...   visual-document tasks
    media/<task>/<split>/             PNG images, mp4 clips, PDF documents

The columns keep the names of the real sources: training rows fill the MMEB-train columns
(`qry`, `qry_image_path`, `pos_text`, `pos_image_path`, `neg_*`, extended with instructions,
video and PDF paths and `qry_rationale`/`qry_answer`/`pos_rationale`/`pos_answer`); test rows
fill the MMEB_Test_Instruct columns (`qry_text`, `qry_img_path`, `tgt_text`, `tgt_img_path`,
`tgt_video_path`; the first candidate is the positive) or, for documents, BEIR `query-id`/
`query`. A split's columns of the other table are null. Images are also embedded as
`datasets.Image` columns (`qry_image`, `pos_image`, `neg_image`, `tgt_image`), which decode to
PIL images. Videos (`*_video_path`, mp4) and PDFs (`*_pdf_path` with a 0-based `*_page`) are
files referenced by paths relative to the dataset folder: download the whole repository
(`huggingface_hub.snapshot_download(repo_id, repo_type="dataset")`) and join them to its folder.
`plume_lite.data.load_train_pairs(folder)` and `load_eval_tasks(folder, split="test")` (or
`split="compositional"`) read it all.

## Tasks

Chance: the expected score (percent) of a random ranking: 1/candidates for local Hit@1 tasks,
relevant/pool for global Hit@1 tasks, and the expected NDCG@5 of a random ranking of the pool
for the document tasks. Text floor: the expected score of a ranker that reads only the query's
text and ranks first, at random, the candidates whose text occurs in it (a random ranking when
none does). A floor above chance is a text-only shortcut. Both columns are for the `test`
split; `tasks.json` has both for each split.

{HEADER}
{table}

Local tasks rank each query's own candidate list; global tasks rank the de-duplicated pool of
every candidate of the task. Images are {manifest["image_size"][0]}x{manifest["image_size"][1]}, \
document pages {manifest["page_size"][0]}x{manifest["page_size"][1]}, clips {manifest["video_frames"]} \
frames at {manifest["fps"]} fps.

## License

Apache-2.0 (`{LICENSE}`): the data is generated by code and holds no third-party content.
"""
