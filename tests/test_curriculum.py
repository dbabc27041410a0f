"""The curriculum is pure: segments, schedule and suffix texts are checked exactly."""

import pytest

from plume_lite.curriculum import (
    STAGE_RATIOS,
    THINK_END,
    Curriculum,
    build_suffix,
    explicit_suffix,
    round_half_up,
    split_segments,
)

RATIONALE = (
    "The image shows a red circle. It sits on a blue background! Is it large? "
    "Yes, it covers half the frame. The circle is bright. No other shapes appear. "
    "The colour is clearly red. So the answer is: red circle."
)


def test_sentences_become_exactly_m_segments_in_order():
    segs = split_segments(RATIONALE, 8)
    assert len(segs) == 8
    assert segs[0] == "The image shows a red circle."
    assert " ".join(segs) == RATIONALE


def test_more_sentences_than_m_are_merged_evenly():
    segs = split_segments(RATIONALE, 4)
    assert len(segs) == 4
    assert " ".join(segs) == RATIONALE
    assert all(s.count(".") + s.count("!") + s.count("?") == 2 for s in segs)


def test_fewer_sentences_fall_back_to_character_chunks_on_word_boundaries():
    text = "one long sentence without any full stop that goes on for a while and more"
    segs = split_segments(text, 4)
    assert len(segs) == 4 and all(segs)
    assert " ".join(segs) == text  # cut at spaces, words kept whole
    lengths = [len(s) for s in segs]
    assert max(lengths) - min(lengths) <= len(text) // 4


def test_degenerate_rationales():
    assert split_segments("", 3) == ["", "", ""]
    assert "".join(split_segments("abc", 8)) == "abc"
    assert split_segments("anything", 0) == []


def test_round_half_up_is_not_bankers_rounding():
    assert round_half_up(0.5) == 1 and round_half_up(2.5) == 3 and round_half_up(1.49) == 1


def test_schedule_final_half_all_latent_earlier_stages_share_first_half():
    cur = Curriculum(latent_steps=8)
    total = 800
    stages = [cur.stage_at(step / total) for step in range(total)]
    for i, ratio in enumerate(STAGE_RATIOS[:-1]):
        span = [s for s in stages if s.index == i]
        assert len(span) == 100 and span[0].ratio == ratio and span[0].n_latent == round(8 * ratio)
    final = [s for s in stages if s.index == 4]
    assert len(final) == 400 and all(s.n_latent == 8 for s in final)
    assert [s.drop_answer for s in final].index(True) == 200  # last half of final stage
    assert stages[:600] == sorted(stages[:600], key=lambda s: s.index)  # monotone
    assert not any(s.drop_answer for s in stages[:600]) and all(s.drop_answer for s in stages[600:])


def test_curriculum_off_is_all_latent_from_step_zero():
    cur = Curriculum(latent_steps=8, enabled=False)
    assert cur.stage_at(0.0).n_latent == 8 and cur.stage_at(0.0).index == 0
    assert not cur.stage_at(0.49).drop_answer and cur.stage_at(0.5).drop_answer
    assert {s.index for s in cur.stages} == {0}


@pytest.mark.parametrize("k, expected", [(8, [0, 2, 4, 6, 8]), (6, [0, 2, 3, 5, 6]), (4, [0, 1, 2, 3, 4])])
def test_latent_slots_per_stage(k, expected):
    cur = Curriculum(latent_steps=k)
    assert [cur.stage_at(p).n_latent for p in (0, 0.13, 0.26, 0.38, 0.6)] == expected


def test_suffixes_replace_a_growing_prefix_and_end_in_inference_format():
    cur = Curriculum(latent_steps=8)
    segs = split_segments(RATIONALE, 8)
    n0, s0 = build_suffix(RATIONALE, "red circle", cur.stage_at(0.0))
    assert n0 == 0 and s0 == RATIONALE + THINK_END + "red circle\n"
    n2, s2 = build_suffix(RATIONALE, "red circle", cur.stage_at(0.2))
    assert n2 == 2 and s2 == " ".join(segs[2:]) + "</think>red circle\n"
    assert build_suffix(RATIONALE, "red circle", cur.stage_at(0.6)) == (8, "</think>red circle\n")
    assert build_suffix(RATIONALE, "red circle", cur.stage_at(0.9)) == (8, "</think>\n")


def test_inference_suffix_matches_the_model_when_present():
    model = pytest.importorskip("plume_lite.model")
    stage = Curriculum(8).stage_at(1.0)
    assert build_suffix("any text. here.", "answer", stage)[1] == model.INFERENCE_SUFFIX


def test_k_zero_keeps_all_text_and_explicit_suffix_is_whole_rationale():
    stage = Curriculum(latent_steps=0).stage_at(0.6)
    assert build_suffix(RATIONALE, "a", stage) == (0, RATIONALE + "</think>a\n")
    assert explicit_suffix("  two   spaces. ", "ans ") == "two spaces.</think>ans\n"
