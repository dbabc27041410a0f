"""The progressive explicit-to-latent curriculum (docs/method.md §Curriculum), as pure functions.

A rationale is cut into M = K segments. At stage ratio r the first round(M·r)
segments are replaced by that many latent slots and the rest stays as text the
model must predict after `<eot>`:

    suffix_text = "{remaining segments}</think>{answer}\\n"

Schedule (progress = optimizer step / total steps, in [0, 1]): the fully latent
stage takes the last half of training; the earlier stages split the first half
equally; in the last half of the final stage the answer is dropped, so training
ends in exactly the inference format `</think>\\n` (INFERENCE_SUFFIX of model.py).
With the curriculum off, the run is one all-latent stage from step 0 and the
answer is dropped in its last half (the final stage stretched over the whole run).

Where `<gen_emb>` is read during training (READ_POSITIONS, `place_gen_emb`):
"after_text" (the paper's layout) reads it after the suffix text; "after_latents"
reads it right after `</think>\n`, where inference reads it, and the suffix text is
predicted after it, so the embedding cannot copy the answer it has not yet seen.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from plume_lite.errors import InputError

STAGE_RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
THINK_END = "</think>"
READ_POSITIONS = ("after_text", "after_latents")
# after_latents, not the paper's after_text: measured from a trained U (README §Results,
# docs/method.md §Deviations); the one default the config, the step and the model share
DEFAULT_READ_POSITION = "after_latents"
# a sentence ends at . ! ? (optionally followed by a closing quote/bracket) + space
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


@dataclass(frozen=True)
class Stage:
    index: int  # position in the schedule's list of stages
    ratio: float  # share of the rationale replaced by latent steps
    n_latent: int  # latent slots used at this stage
    drop_answer: bool  # the answer text is no longer predicted (inference format)
    m: int = 0  # segments per rationale (= K), so a Stage alone builds suffixes


def round_half_up(x: float) -> int:
    # Python's round() is banker's rounding (round(0.5) == 0); the paper's round(M·r)
    # means the usual one, so 2 segments at r=0.25 give 1 latent slot, not 0.
    return int(math.floor(x + 0.5))


def split_segments(rationale: str, m: int) -> list[str]:
    """Cut `rationale` into exactly `m` segments, in order, covering all of it.

    Sentences when there are at least `m` of them (adjacent ones merged evenly when
    there are more); otherwise `m` near-equal character chunks, cut at a space when
    one is close, so a short rationale still gives every latent slot some text."""
    if m <= 0:
        return []
    text = " ".join(rationale.split())  # one space between words
    sentences = split_sentences(text)
    if len(sentences) >= m:
        # merge: segment i takes sentences [bounds[i], bounds[i+1])
        bounds = [round_half_up(i * len(sentences) / m) for i in range(m + 1)]
        return [" ".join(sentences[bounds[i] : bounds[i + 1]]) for i in range(m)]
    return _char_chunks(text, m)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order (a sentence ends in . ! or ? followed by a space)."""
    out, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        out.append(text[start:end].strip())
        start = end
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _char_chunks(text: str, m: int) -> list[str]:
    n = len(text)
    cuts = [0]
    for i in range(1, m):
        target = max(round_half_up(i * n / m), cuts[-1])
        # move the cut to the nearest space within a quarter chunk, so words stay whole
        window = max(1, n // (4 * m))
        spaces = [
            j for j in range(max(cuts[-1], target - window), min(n, target + window + 1)) if text[j] == " "
        ]
        cuts.append(min(spaces, key=lambda j: abs(j - target)) if spaces else target)
    cuts.append(n)
    return [text[cuts[i] : cuts[i + 1]].strip() for i in range(m)]


def join_segments(segments: list[str]) -> str:
    return " ".join(s for s in segments if s)


class Curriculum:
    """Maps training progress to a Stage and (rationale, answer) to suffix texts."""

    def __init__(self, latent_steps: int, enabled: bool = True, ratios=STAGE_RATIOS):
        self.m = int(latent_steps)
        self.enabled = enabled
        self.ratios = tuple(ratios) if enabled else (1.0,)
        if not self.ratios or self.ratios[-1] != 1.0:
            raise ValueError(f"the last stage ratio must be 1.0 (all latent), got {self.ratios}")

    @property
    def stages(self) -> list[Stage]:
        """Every (stage, answer kept) phase in order — for docs and progress bars."""
        return [
            self._stage(i, drop)
            for i in range(len(self.ratios))
            for drop in ((False, True) if i == len(self.ratios) - 1 else (False,))
        ]

    def _stage(self, index: int, drop_answer: bool) -> Stage:
        ratio = self.ratios[index]
        return Stage(index, ratio, round_half_up(self.m * ratio), drop_answer, self.m)

    def stage_at(self, progress: float) -> Stage:
        """The stage in force at `progress` = step / total_steps (clamped to [0, 1])."""
        p = min(max(float(progress), 0.0), 1.0)
        last = len(self.ratios) - 1
        final_start = 0.5 if last > 0 else 0.0
        eps = 1e-9  # so step/total landing exactly on a boundary is not lost to rounding
        if p + eps < final_start:
            index = min(int((p + eps) / (final_start / last)), last - 1)
            return self._stage(index, False)
        drop = p + eps >= final_start + (1.0 - final_start) / 2
        return self._stage(last, drop)


def build_suffix(rationale: str, answer: str, stage: Stage) -> tuple[int, str]:
    """(n_latent, suffix_text) for one item at `stage`."""
    if stage.m == 0:  # K = 0: nothing can become latent; all text stays
        kept = " ".join(rationale.split())
    else:
        kept = join_segments(split_segments(rationale, stage.m)[stage.n_latent :])
    shown_answer = "" if stage.drop_answer else " ".join(answer.split())
    return stage.n_latent, f"{kept}{THINK_END}{shown_answer}\n"


def explicit_suffix(rationale: str, answer: str) -> str:
    """The explicit (UME-R1-style) target: the whole rationale, `</think>`, the answer."""
    return f"{' '.join(rationale.split())}{THINK_END}{' '.join(answer.split())}\n"


def place_gen_emb(suffix_text: str, read_position: str, gen_token: str) -> str:
    """The latent training suffix (after `<eot>`) with the embedding token placed.

    "after_text": `{suffix_text}<gen_emb>`, the paper's layout. "after_latents":
    `</think>\n<gen_emb>{suffix_text}`: the inference suffix, then the text still to
    predict; a suffix that is only `</think>\n` (answer dropped, all latent) adds
    nothing, so that stage trains exactly the inference format."""
    if read_position == "after_text":
        return f"{suffix_text}{gen_token}"
    if read_position != "after_latents":
        raise InputError(f"read_position must be one of {', '.join(READ_POSITIONS)}, got {read_position!r}")
    closing = f"{THINK_END}\n"
    return f"{closing}{gen_token}{'' if suffix_text == closing else suffix_text}"
