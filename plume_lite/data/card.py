"""SynthMMEB as a Hugging Face dataset: the configs (one per task, BEIR corpus and qrels as
configs of their own), the chance level of every task, and the dataset card (README.md,
whose YAML front matter is what `datasets.load_dataset` and the Hub read)."""

from __future__ import annotations

import math

LICENSE = "apache-2.0"
PART = "00000-of-00001.parquet"  # one shard per split, named as push_to_hub names them
HEADER = (
    "| config | modality | meta task | protocol | metric | reasoning | train | test | candidates "
    "| chance | description |\n| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"
)


def data_files(entry: dict) -> dict[str, dict[str, str]]:
    """config name -> {split: file relative to the data folder} for one manifest entry."""
    name, train, test = entry["name"], entry["train"], entry["eval"]
    if entry.get("format") == "beir":
        return {
            name: {"train": f"{train}/train-{PART}", "test": f"{test}/queries/test-{PART}"},
            f"{name}-corpus": {"test": f"{test}/corpus/test-{PART}"},
            f"{name}-qrels": {"test": f"{test}/qrels/test-{PART}"},
        }
    return {name: {"train": f"{train}/train-{PART}", "test": f"{test}/test-{PART}"}}


def _expected(metric: str, grades: list[float], n: int) -> float:
    """Expected metric of a uniformly random ranking of `n` candidates, `grades` being the
    relevance grades (> 0) of the relevant ones (hit@k: a relevant one in the top k;
    ndcg@k: linear gain and log2 discount, as plume_lite.evaluation.metrics)."""
    name, _, k = metric.lower().partition("@")
    k = min(int(k), n)
    if not grades or n <= 0:
        return 0.0
    if name == "hit":
        r = min(len(grades), n)
        return 1.0 - math.comb(n - r, k) / math.comb(n, k)
    discount = [1.0 / math.log2(i + 2) for i in range(k)]
    ideal = sum(g * d for g, d in zip(sorted(grades, reverse=True), discount))
    # each of the top k positions holds every candidate with probability 1/n
    return (sum(grades) / n) * sum(discount) / ideal


def chance_level(task) -> float:
    """Expected score (percent, as the evaluator reports) of a random ranking of an
    EvalTask: local tasks rank each query's own candidates, global ones the whole pool."""
    scores = []
    for i, rel in enumerate(task.qrels):
        grades = [float(v) for v in rel.values() if float(v) > 0]
        if task.protocol == "local":
            cands = list(dict.fromkeys(task.query_candidates[i]))
            grades = [float(rel[j]) for j in cands if float(rel.get(j, 0)) > 0]
            n = len(cands)
        else:
            n = len(task.candidates)
        scores.append(_expected(task.metric, grades, n))
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
    n = sum(e["n_train"] for e in manifest["tasks"]) + sum(e["n_test_queries"] for e in manifest["tasks"])
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


def generator_command(manifest: dict, all_names: list[str]) -> str:
    cmd = f"plume-lite synth --out SynthMMEB --size {manifest['size']} --seed {manifest['seed']}"
    names = [e["name"] for e in manifest["tasks"]]
    if names != all_names:
        cmd += f" --tasks {','.join(names)}"
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
            f"{e['n_test_queries']} | {e['candidates_per_query']} | {e['chance']:.2f} | "
            f"{e['description']} |"
        )
    n_train = sum(e["n_train"] for e in manifest["tasks"])
    n_test = sum(e["n_test_queries"] for e in manifest["tasks"])
    table = "\n".join(rows)
    return f"""---
{_yaml_front_matter(manifest)}---

# SynthMMEB ({manifest["size"]}, seed {manifest["seed"]})

An offline benchmark shaped like MMEB-v2: image, video and visual-document tasks with local
and global candidate protocols, Hit@1 and graded NDCG@5, and a multi-sentence rationale plus a
short answer (UME-sft style) for the query and the positive of every training pair. Every scene
is drawn from sampled attributes, so rationales and answers are correct by construction. Hold-out
rule: {manifest["holdout_rule"]}.

{len(manifest["tasks"])} tasks, {n_train} training pairs, {n_test} test queries, generated by code (the
`plume_lite` package) deterministically: the same seed gives byte-identical files.

    {command}

or `plume_lite.data.synth.make_synth(out, size="{manifest["size"]}", seed={manifest["seed"]})`.

## Loading

```python
from datasets import load_dataset

ds = load_dataset("path/to/SynthMMEB", "{first}")           # splits: train, test
test = load_dataset("path/to/SynthMMEB", "{first}", split="test")
```

Each task is a config with a `train` split (training pairs) and a `test` split (test queries);
a visual-document task's corpus and graded qrels are the configs `<task>-corpus` and
`<task>-qrels` (split `test`), as BEIR / ViDoRe sets are laid out. The files are parquet:

    README.md                         this card; its front matter maps configs to files
    tasks.json                        manifest: per task modality, meta_task, protocol, metric,
                                      reasoning flag, sizes, chance level
    train/<task>/train-*.parquet      training pairs
    eval/<task>/test-*.parquet        test rows (image and video tasks)
    eval/<task>/queries/test-*.parquet, corpus/..., qrels/...   visual-document tasks
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
`plume_lite.data.load_train_pairs(folder)` and `load_eval_tasks(folder)` read it all.

## Tasks

Chance: the expected score (percent) of a random ranking: 1/candidates for local Hit@1 tasks,
relevant/pool for global Hit@1 tasks, and the expected NDCG@5 of a random ranking of the pool
for the document tasks.

{HEADER}
{table}

Local tasks rank each query's own candidate list; global tasks rank the de-duplicated pool of
every candidate of the task. Images are {manifest["image_size"][0]}x{manifest["image_size"][1]}, \
document pages {manifest["page_size"][0]}x{manifest["page_size"][1]}, clips {manifest["video_frames"]} \
frames at {manifest["fps"]} fps.

## License

Apache-2.0 (`{LICENSE}`): the data is generated by code and holds no third-party content.
"""
