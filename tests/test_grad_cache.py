"""GradCache (train/grad_cache.py): the chunked step gives the plain large-batch step's
loss and gradients; its RNG replay makes dropout draw the same masks twice."""

import pytest
import torch

from plume_lite.curriculum import Curriculum
from plume_lite.errors import ConfigError
from plume_lite.train.batches import Batch
from plume_lite.train.config import resolve_config
from plume_lite.train.grad_cache import grad_cache_step
from plume_lite.train.step import TrainStep

K = 2
TEXTS = ["a red circle", "two blue squares", "a green ring", "one yellow star", "a red star", "blue"]
ANSWERS = ["It is red.</think>red\n", "</think>\n", "Green, round.</think>ring\n"] * 2


@pytest.fixture(scope="module")
def model(tiny_model):
    # the session's tiny model (forward_train takes K as an argument), put back afterwards
    yield tiny_model
    tiny_model.zero_grad(set_to_none=True)
    tiny_model.eval()


def _batch(mode):
    queries = [{"text": t} for t in TEXTS]
    positives = [{"text": t.upper()} for t in TEXTS[:-1]] + [{"text": TEXTS[0].upper()}]  # a duplicate
    if mode == "direct":
        return Batch("t", queries, positives, None, None, 0)
    n_latent = Curriculum(K).stage_at(0.99).n_latent if mode == "latent" else 0
    return Batch("t", queries, positives, ANSWERS, ANSWERS[::-1], n_latent)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _plain(model, step, batch, seed):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    total, parts, _ = step(batch)
    total.backward()
    return total.detach(), parts, _grads(model)


def _cached(model, step, batch, seed, chunk):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    total, parts, _ = grad_cache_step(step, batch, chunk)
    return total, parts, _grads(model)


def _same(a, b):
    assert a[0].item() == pytest.approx(b[0].item(), rel=1e-5, abs=1e-6)
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert a[1][k].item() == pytest.approx(b[1][k].item(), rel=1e-5, abs=1e-6), k
    assert a[2].keys() == b[2].keys()
    for name, g in a[2].items():  # chunked sums round differently: relative to the tensor's scale
        err, scale = (b[2][name] - g).abs().max().item(), g.abs().max().item()
        assert err <= 1e-5 * scale + 1e-9, f"{name}: max abs difference {err:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("mode", ["latent", "explicit", "direct"])
def test_chunks_equal_the_plain_step_in_eval_mode(model, mode):
    model.eval()  # no dropout: the two forwards are the same function
    step, batch = TrainStep(model, mode), _batch(mode)
    plain = _plain(model, step, batch, 0)
    assert mode != "latent" or plain[2]["adapter.router.weight"].abs().sum() > 0
    _same(plain, _cached(model, step, batch, 0, chunk=4))  # chunks of 4 and 2 pairs
    _same(plain, _cached(model, step, batch, 0, chunk=1))


def test_rng_replay_draws_the_same_dropout_masks(model):
    model.train()  # expert dropout 0.1 on
    step, batch = TrainStep(model, "latent"), _batch("latent")
    plain = _plain(model, step, batch, 7)
    # one chunk: phase 1 draws the plain step's masks, phase 3 must replay them
    _same(plain, _cached(model, step, batch, 7, chunk=len(TEXTS)))
    other = _plain(model, step, batch, 8)  # a different seed: different masks, other grads
    assert not torch.allclose(other[2]["adapter.router.weight"], plain[2]["adapter.router.weight"])


def test_config_field():
    assert resolve_config("tiny").grad_cache_chunk is None
    assert resolve_config("tiny", overrides=["grad_cache_chunk=4"]).grad_cache_chunk == 4
    with pytest.raises(ConfigError, match="grad_cache_chunk"):
        resolve_config("tiny", overrides=["grad_cache_chunk=0"])
