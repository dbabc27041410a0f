"""plume_lite.files: the kind of a file and of an item, and files or folders as items
(each checked by decoding it, a bad one failing in one line)."""

import shutil

import pytest

from plume_lite.files import (
    MAX_TEXT_CHARS,
    extensions,
    item_kind,
    items_from_path,
    media_kind,
    require_kind,
    text_items,
)
from plume_lite.items import load_visual
from plume_lite.media import MediaError
from plume_lite.tokens import VISION_PLACEHOLDER, user_prompt


@pytest.mark.parametrize(
    "name, kind",
    [
        ("a.png", "image"),
        ("B.JPEG", "image"),
        ("c.mp4", "video"),
        ("d.WebM", "video"),
        ("e.pdf", "pdf"),
        ("f.txt", "text"),
        ("g.csv", None),
        ("noext", None),
    ],
)
def test_media_kind_by_extension(name, kind):
    assert media_kind(name) == kind


def test_item_kind_and_what_the_model_sees(media_files):
    items = {
        "image": {"image": media_files["image"]},
        "video": {"video": media_files["video"]},
        "pdf": {"pdf": media_files["pdf"], "page": 1},
        "text": {"text": "a red circle"},
    }
    assert {kind: item_kind(item) for kind, item in items.items()} == {k: k for k in items}
    assert item_kind({"image": None, "text": "t"}) == "text"  # an empty slot is no input
    # the prompt's placeholder and the decoded input agree: a PDF page is an image
    assert [load_visual(item)[0] for item in items.values()] == ["image", "video", "image", None]
    prompts = {kind: user_prompt(item, "p") for kind, item in items.items()}
    assert VISION_PLACEHOLDER["image"] in prompts["image"] and VISION_PLACEHOLDER["image"] in prompts["pdf"]
    assert VISION_PLACEHOLDER["video"] in prompts["video"] and "<|vision_start|>" not in prompts["text"]


def test_require_kind_names_the_file_in_one_line():
    assert require_kind("x.pdf", ("image", "pdf")) == "pdf"
    with pytest.raises(MediaError) as err:
        require_kind("/tmp/folder/table.csv", ("image", "video", "pdf"))
    message = str(err.value)
    assert message.startswith("table.csv: unsupported file type '.csv'") and "\n" not in message
    assert ".mp4" in message and ".png" in message
    assert extensions(("pdf", "text")) == [".pdf", ".txt"]


def test_text_items_fold_space_drop_blanks_and_cut():
    items = text_items(["  a   red\tcircle ", "", "   ", "x" * (MAX_TEXT_CHARS + 5)])
    assert items[0] == {"text": "a red circle"} and len(items) == 2
    assert len(items[1]["text"]) == MAX_TEXT_CHARS


def test_single_files_become_items(media_files, tmp_path):
    image = items_from_path(media_files["image"])
    assert image == [{"image": media_files["image"]}]
    assert items_from_path(media_files["video"]) == [{"video": media_files["video"]}]
    pages = items_from_path(media_files["pdf"])
    assert pages == [{"pdf": media_files["pdf"], "page": 0}, {"pdf": media_files["pdf"], "page": 1}]
    assert items_from_path(media_files["pdf"], max_pages=1) == pages[:1]
    with pytest.raises(MediaError, match="no such file or folder"):
        items_from_path(tmp_path / "missing.png")


def test_a_folder_becomes_items_in_path_order(media_files, tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    shutil.copy(media_files["image"], root / "b.png")
    shutil.copy(media_files["video"], root / "sub" / "clip.mp4")
    shutil.copy(media_files["pdf"], root / "a.pdf")
    (root / "captions.txt").write_text("a red circle\n\na blue square\n")
    (root / "notes.csv").write_text("ignored,1\n")
    items = items_from_path(root)
    assert [item_kind(i) for i in items] == ["pdf", "pdf", "image", "text", "text", "video"]
    assert items[2] == {"image": str((root / "b.png").resolve())}
    assert items[3:5] == [{"text": "a red circle"}, {"text": "a blue square"}]


def test_a_corrupt_file_gives_a_one_line_media_error(media_files, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(media_files["image"], root / "good.png")
    (root / "broken.png").write_bytes(b"not a png")
    clip = root / "cut.mp4"
    data = open(media_files["video"], "rb").read()
    clip.write_bytes(data[: len(data) // 2])
    for bad in ("broken.png", "cut.mp4"):
        with pytest.raises(MediaError) as err:
            items_from_path(root / bad)
        assert bad in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MediaError, match="broken.png"):  # a folder without `skipped` fails
        items_from_path(root)
    skipped = []
    assert items_from_path(root, skipped=skipped) == [{"image": str((root / "good.png").resolve())}]
    assert len(skipped) == 2 and all("\n" not in line for line in skipped)
    assert "broken.png" in skipped[0] and "cut.mp4" in skipped[1]
