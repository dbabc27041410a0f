"""The clickable examples of the first page, from the SynthMMEB tiny test split, the
data the default corpus comes from: three images (two with a question), a video and
three texts, queries whose answers are in that corpus, and a PDF page, one of the
corpus's own pages (SynthMMEB asks nothing with a page); each with the instruction its
task was trained with.

Their files are copied into the demo's cache folder (`examples/`) when the page is
built: nothing is committed, and gradio serves them from its own cache after that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from plume_lite.files import item_kind
from plume_lite.io import atomic_write_bytes

log = logging.getLogger(__name__)

# (task, "query" or "candidate", the label's head); the first item of that kind is used
CHOICES = [
    ("img_cls_colorshape", "query", "image: one shape"),
    ("img_qa_chart", "query", "image + question"),
    ("img_qa_leftof", "query", "image + question"),
    ("vid_cls_motion", "query", "video: a motion clip"),
    ("doc_ret_layout", "candidate", "PDF page: a page layout"),
    ("img_ret_t2i", "query", "text"),
    ("vid_ret_t2v", "query", "text"),
    ("doc_ret_layout", "query", "text"),
]
FILE_KINDS = ("image", "video", "pdf")


@dataclass
class Example:
    file: str | None  # an image, a video or a PDF (its first page is the query)
    text: str  # the typed query, or the question about the file
    instruction: str
    label: str  # what the page shows for it

    def row(self) -> list:
        """The values of the page's (file, text, instruction) inputs."""
        return [self.file, self.text, self.instruction]


def _pick(task, side: str) -> dict | None:
    items = task.queries if side == "query" else task.candidates
    wanted = "text" if side == "query" and task.name.split("_")[1] == "ret" else None
    for item in items:
        kind = item_kind(item)
        if (kind == wanted) if wanted else kind in FILE_KINDS:
            if kind != "pdf" or int(item.get("page", 0)) == 0:
                return item
    return None


def _copy(source: Path, folder: Path, index: int) -> str:
    dest = folder / f"example-{index}{source.suffix.lower()}"
    data = source.read_bytes()
    if not dest.is_file() or dest.read_bytes() != data:
        atomic_write_bytes(dest, data)
    return str(dest)


def build_examples(folder, data_dir=None) -> list[Example]:
    """The examples, their files copied into `folder`; SynthMMEB tiny (generated on
    first use, as the default corpus) unless `data_dir` is given. A data folder that
    cannot be read gives no examples and a warning: the page works without them."""
    from plume_lite.data.mmeb import load_eval_tasks
    from plume_lite.data.synth import default_data
    from plume_lite.errors import PlumeError

    folder = Path(folder)
    try:
        tasks = load_eval_tasks(data_dir or default_data())
    except (PlumeError, OSError) as e:
        log.warning("no examples on the page: %s", e)
        return []
    tasks = {t.name: t for t in getattr(tasks, "tasks", tasks)}
    examples = []
    for task_name, side, head in CHOICES:
        task = tasks.get(task_name)
        item = _pick(task, side) if task else None
        if item is None:
            continue
        kind = item_kind(item)
        text = str(item.get("text", ""))
        file = _copy(Path(item[kind]), folder, len(examples) + 1) if kind in FILE_KINDS else None
        label = f"{head}: {text}" if text else head
        examples.append(Example(file, text, str(item.get("instruction", "")), label))
    return examples
