"""The MMEB text builders reproduce the authors' parser strings (RELEASED_CHECKPOINTS.md
§2.2, D14, D15; §7 item 10). Every expected string is written by hand from the spec's
table: `pit` = instruction [+ " " + text], "<|image_pad|> " in front for an image side."""

import pytest

from plume_lite.data import mmeb_text
from plume_lite.data.mmeb_text import mmeb_texts, wrap
from plume_lite.data.storage import DataError
from plume_lite.protocols import AUTHORS_INSTRUCTION, authors_prompt_text

CLS_ROW = {  # N24News-like: the caption follows the instruction; a " \n" inside the text
    "qry_inst": "<|image_1|>\nRepresent the given news image with the following caption "
    "for domain classification:",
    "qry_text": "Storm hits the coast \nat dawn",
    "qry_img_path": "N24News/test/1.jpg",
    "tgt_inst": "",
    "tgt_text": ["weather", "sports", "politics"],
    "tgt_img_path": ["", "", ""],
}
QA_ROW = {
    "qry_inst": "<|image_1|> Represent the given image with the following question: ",
    "qry_text": "What is the dog holding?",
    "qry_img_path": "OK-VQA/test/7.jpg",
    "tgt_inst": "",
    "tgt_text": ["frisbee", "ball"],
    "tgt_img_path": ["", ""],
}
T2I_ROW = {  # no captions: every candidate gets the target instruction alone
    "qry_inst": "Find me an everyday image that matches the given caption:",
    "qry_text": "A man riding a horse.",
    "qry_img_path": "",
    "tgt_inst": "<|image_1|>\nRepresent the given image.",
    "tgt_text": ["", ""],
    "tgt_img_path": ["MSCOCO_t2i/a.jpg", "MSCOCO_t2i/b.jpg"],
}
WEBQA_ROW = {  # captions: the instruction and each caption
    "qry_inst": "Find a Wikipedia image that answers this question:",
    "qry_text": "Where is the tower?",
    "qry_img_path": "",
    "tgt_inst": "<|image_1|>\nRepresent the given Wikipedia image with related text information:",
    "tgt_text": ["Eiffel Tower at night", "Big Ben"],
    "tgt_img_path": ["WebQA/e.jpg", "WebQA/b.jpg"],
}
CIRR_ROW = {
    "qry_inst": "<|image_1|>\nGiven an image, find a similar everyday image with the described changes:",
    "qry_text": "make it red",
    "qry_img_path": "CIRR/q.png",
    "tgt_inst": "<|image_1|>\nRepresent the given image.",
    "tgt_text": ["", ""],
    "tgt_img_path": ["CIRR/x.png", "CIRR/y.png"],
}
REFCOCO_ROW = {  # one image, two targets: only path:caption tells them apart
    "qry_inst": "<|image_1|>\nSelect the portion of the image that follows the language expressions.",
    "qry_text": "",
    "qry_img_path": "RefCOCO-Matching/q.jpg",
    "tgt_inst": "<|image_1|>\nSelect the portion of the image that follows the language expressions:",
    "tgt_text": ['"the left dog"', '"the cat"'],
    "tgt_img_path": ["RefCOCO-Matching/t.jpg", "RefCOCO-Matching/t.jpg"],
}
DOC_ROW = {"query-id": "q1", "query": "What was the revenue in 2020?"}


def test_image_cls_joins_the_text_and_turns_space_newline_into_newline():
    raw = mmeb_texts("image_cls", CLS_ROW, "vlm2vec")
    assert raw.query == (
        "<|image_pad|>\nRepresent the given news image with the following caption for domain "
        "classification: Storm hits the coast\nat dawn\n"
    )
    assert raw.query_image == "N24News/test/1.jpg"
    assert raw.candidates == ("weather", "sports", "politics")
    assert raw.candidate_images == (None, None, None)
    assert raw.names == ("weather", "sports", "politics") and raw.label == "weather"
    plume = mmeb_texts("image_cls", CLS_ROW, "plume")
    # the " \n" edit survives the strip: plume_lite's space join would keep "coast \nat"
    assert plume.query == (
        "Represent the given news image with the following caption for domain classification: "
        "Storm hits the coast\nat dawn"
    )
    assert plume.candidates == raw.candidates and plume.names == raw.names
    assert mmeb_texts("image_i2t", CLS_ROW, "ume") == plume  # same parser code, same wrapping


def test_image_qa_puts_the_stripped_instruction_on_its_own_line():
    raw = mmeb_texts("image_qa", QA_ROW, "vlm2vec")
    assert raw.query == (
        "<|image_pad|>\nRepresent the given image with the following question: What is the dog holding?\n"
    )
    plume = mmeb_texts("image_qa", QA_ROW, "plume")
    assert plume.query == "Represent the given image with the following question: What is the dog holding?"
    assert plume.candidates == ("frisbee", "ball") and plume.label == "frisbee"


def test_image_t2i_without_captions_names_candidates_by_path():
    raw = mmeb_texts("image_t2i", T2I_ROW, "vlm2vec", task="MSCOCO_t2i")
    assert raw.query == "Find me an everyday image that matches the given caption: A man riding a horse.\n"
    assert raw.query_image is None
    assert raw.candidates == ("<|image_pad|>\nRepresent the given image.\n",) * 2
    assert raw.candidate_images == raw.names == ("MSCOCO_t2i/a.jpg", "MSCOCO_t2i/b.jpg")
    plume = mmeb_texts("image_t2i", T2I_ROW, "plume", task="MSCOCO_t2i")
    assert plume.query == "Find me an everyday image that matches the given caption: A man riding a horse."
    assert plume.candidates == ("Represent the given image.",) * 2


def test_visdial_query_ends_in_two_newlines():
    raw = mmeb_texts("image_t2i", T2I_ROW, "vlm2vec", task="VisDial")
    assert raw.query == "Find me an everyday image that matches the given caption: A man riding a horse.\n\n"
    assert mmeb_texts("image_t2i", T2I_ROW, "plume", task="VisDial").query == (
        "Find me an everyday image that matches the given caption: A man riding a horse."
    )


def test_image_t2i_with_captions_adds_each_caption():
    raw = mmeb_texts("image_t2i", WEBQA_ROW, "vlm2vec", task="WebQA")
    head = "<|image_pad|>\nRepresent the given Wikipedia image with related text information: "
    assert raw.candidates == (head + "Eiffel Tower at night\n", head + "Big Ben\n")
    assert raw.names == ("WebQA/e.jpg", "WebQA/b.jpg")
    plume = mmeb_texts("image_t2i", WEBQA_ROW, "plume", task="WebQA")
    assert plume.candidates == (
        "Represent the given Wikipedia image with related text information: Eiffel Tower at night",
        "Represent the given Wikipedia image with related text information: Big Ben",
    )


def test_i2i_vg_without_captions_has_no_trailing_newline_and_names_path_colon():
    raw = mmeb_texts("image_i2i_vg", CIRR_ROW, "vlm2vec")
    assert raw.query == (
        "<|image_pad|>\nGiven an image, find a similar everyday image with the described changes: "
        "make it red\n"
    )
    assert raw.candidates == ("<|image_pad|>\nRepresent the given image.",) * 2  # no "\n" (t2i has one)
    assert raw.names == ("CIRR/x.png:", "CIRR/y.png:")
    assert raw.candidate_images == ("CIRR/x.png", "CIRR/y.png")
    plume = mmeb_texts("image_i2i_vg", CIRR_ROW, "plume")
    assert plume.candidates == ("Represent the given image.",) * 2


def test_i2i_vg_with_captions_keeps_the_quotes_in_the_text_but_not_in_the_name():
    raw = mmeb_texts("image_i2i_vg", REFCOCO_ROW, "vlm2vec")
    assert raw.query == (
        "<|image_pad|>\nSelect the portion of the image that follows the language expressions.\n"
    )
    head = "<|image_pad|>\nSelect the portion of the image that follows the language expressions: "
    assert raw.candidates == (head + '"the left dog"\n', head + '"the cat"\n')
    assert raw.names == ("RefCOCO-Matching/t.jpg:the left dog", "RefCOCO-Matching/t.jpg:the cat")


def test_vidore_instructions_are_empty_for_plume_and_ume_and_visrags_for_vlm2vec():
    bundle = mmeb_text.vidore(DOC_ROW, ["d3", "d7"], "plume")  # raw, before the wrapping
    assert bundle.query == " What was the revenue in 2020?"  # "" + " " + query
    assert bundle.candidates == ("<|image_pad|> ", "<|image_pad|> ")
    assert bundle.names == bundle.candidate_images == ("d3", "d7")
    for protocol in ("plume", "ume"):
        wrapped = mmeb_texts("vidore", DOC_ROW, protocol, doc_ids=["d3", "d7"])
        assert wrapped.query == "What was the revenue in 2020?"
        assert wrapped.candidates == ("", "")
    tiger = mmeb_texts("vidore", DOC_ROW, "vlm2vec", doc_ids=["d3"])
    assert tiger.query == "Find a document image that matches the given query: What was the revenue in 2020?"
    assert tiger.candidates == ("<|image_pad|> Understand the content of the provided document image.",)


def test_visrag_uses_its_instructions_under_every_protocol():
    raw = mmeb_texts("visrag", DOC_ROW, "vlm2vec", doc_ids=["page_12.png"])
    assert raw.query == "Find a document image that matches the given query: What was the revenue in 2020?"
    assert raw.candidates == ("<|image_pad|> Understand the content of the provided document image.",)
    assert raw.names == ("page_12.png",)
    plume = mmeb_texts("visrag", DOC_ROW, "plume", doc_ids=["page_12.png"])
    assert plume.query == raw.query
    assert plume.candidates == ("Understand the content of the provided document image.",)


def test_plume_wrapping_renders_into_the_authors_prompt():
    text = mmeb_texts("image_qa", QA_ROW, "plume").query
    prompt = authors_prompt_text({"text": text}, AUTHORS_INSTRUCTION, "latent", "image")
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>"
        "Represent the given image with the following question: What is the dog holding?"
        f"\n<disc_emb>\n{AUTHORS_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n<think><bot>"
    )


def test_bad_input_is_a_one_line_data_error():
    with pytest.raises(DataError, match="no text builder for MMEB parser 'msrvtt'"):
        mmeb_texts("msrvtt", {}, "plume")
    with pytest.raises(DataError, match="unknown text protocol 'plume_lite'"):
        mmeb_texts("image_cls", CLS_ROW, "plume_lite")
    with pytest.raises(DataError, match="no 'qry_inst'"):
        mmeb_texts("image_qa", {"qry_text": "x"}, "vlm2vec")
    with pytest.raises(DataError, match="2 tgt_img_path for 1 tgt_text"):
        mmeb_texts("image_i2i_vg", {**CIRR_ROW, "tgt_text": ["a"]}, "vlm2vec")
    with pytest.raises(DataError, match="unknown text protocol"):
        wrap(mmeb_text.visrag(DOC_ROW, ["p"]), "tiger")
