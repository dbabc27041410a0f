"""InfoNCE and the per-mode totals. This file is also the worker script of the
2-process `accelerate launch` test (run as __main__), which compares the gathered
loss and gradients against a single process on the same global batch."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from plume_lite.train.losses import LOGIT_SCALE, info_nce, item_ids, plume_loss

GLOBAL_B, DIM, SEED = 8, 16, 0


def reference_info_nce(q, c, scale=LOGIT_SCALE):
    """Loop-by-loop definition, written independently of the vectorised one."""
    q = [v / v.norm() for v in q.double()]
    c = [v / v.norm() for v in c.double()]
    total = 0.0
    for a, b in ((q, c), (c, q)):
        for i in range(len(a)):
            logits = [scale * float(a[i] @ b[j]) for j in range(len(b))]
            top = max(logits)
            lse = top + math.log(sum(math.exp(x - top) for x in logits))
            total += (lse - logits[i]) / len(a)
    return total / 2


def global_batch():
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(GLOBAL_B, DIM, generator=g), torch.randn(GLOBAL_B, DIM, generator=g)


def test_matches_loop_reference_and_ignores_norm():
    q, c = global_batch()
    ref = reference_info_nce(q, c)
    assert info_nce(q, c).item() == pytest.approx(ref, rel=1e-5)
    assert info_nce(3 * q, 0.1 * c).item() == pytest.approx(ref, rel=1e-5)


def test_aligned_pairs_give_low_loss_and_unrelated_about_log_b():
    q, c = global_batch()
    assert info_nce(q, q).item() < 1e-3
    torch.manual_seed(1)
    losses = [info_nce(torch.randn(16, 256), torch.randn(16, 256), scale=1.0).item() for _ in range(20)]
    assert sum(losses) / 20 == pytest.approx(math.log(16), rel=0.05)


def test_duplicate_contents_are_not_negatives():
    q, c = global_batch()
    c[3] = c[1]  # two queries share one positive (a class label)
    ids = torch.arange(GLOBAL_B)
    ids[3] = ids[1]
    masked = info_nce(q, c, q_ids=torch.arange(GLOBAL_B), c_ids=ids)
    keep = [j for j in range(GLOBAL_B)]
    # by hand: row 1 must not see column 3 (and row 3 not column 1), in both directions:
    # query 3 is also a correct match for candidate 1, which is candidate 3's content
    qn, cn = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    logits = LOGIT_SCALE * qn @ cn.t()
    logits[1, 3] = logits[3, 1] = float("-inf")
    q2c = F.cross_entropy(logits, torch.tensor(keep))
    back = LOGIT_SCALE * cn @ qn.t()
    back[1, 3] = back[3, 1] = float("-inf")
    c2q = F.cross_entropy(back, torch.tensor(keep))
    assert masked.item() == pytest.approx(0.5 * (q2c + c2q).item(), rel=1e-5)
    assert masked.item() < info_nce(q, c).item()


def test_three_queries_sharing_a_label_have_no_false_negative_in_either_direction():
    torch.manual_seed(3)
    q, c = torch.randn(6, 32), torch.randn(6, 32)
    c_ids = torch.tensor([7, 7, 7, 1, 2, 3])  # pairs 0-2: three queries, one class label
    q_ids = torch.arange(6) + 100
    same = torch.zeros(6, 6, dtype=torch.bool)
    same[:3, :3] = True
    same.fill_diagonal_(False)
    qn, cn = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    by_hand = [
        F.cross_entropy((LOGIT_SCALE * lg).masked_fill(same, float("-inf")), torch.arange(6))
        for lg in (qn @ cn.t(), cn @ qn.t())
    ]
    loss = info_nce(q, c, q_ids=q_ids, c_ids=c_ids)
    assert loss.item() == pytest.approx(0.5 * (by_hand[0] + by_hand[1]).item(), rel=1e-5)
    # the candidate->query direction is masked too: unmasking it changes the loss
    unmasked_back = F.cross_entropy(LOGIT_SCALE * cn @ qn.t(), torch.arange(6))
    assert abs(unmasked_back.item() - by_hand[1].item()) > 1e-3


def test_item_ids_are_content_based_and_stable():
    a = item_ids([{"text": "red", "image": "/x.png"}, {"image": "/x.png", "text": "red"}, {"text": "blue"}])
    assert a[0] == a[1] != a[2] and (a >= 0).all()


def outputs(b=4, d=8, ce=1.0, bal=0.5, grad=True):
    t = lambda: torch.randn(b, d, requires_grad=grad)
    return SimpleNamespace(
        gen_emb=t(), disc_emb=t(), ce_loss=torch.tensor(ce), balance_loss=torch.tensor(bal)
    )


def test_plume_loss_composition_per_mode():
    torch.manual_seed(0)
    oq, oc = outputs(ce=1.0, bal=0.5), outputs(ce=2.0, bal=0.25)
    gen, disc = info_nce(oq.gen_emb, oc.gen_emb), info_nce(oq.disc_emb, oc.disc_emb)
    total, parts = plume_loss("latent", oq, oc)
    assert total.item() == pytest.approx((3.0 + gen + disc + 0.1 * 0.75).item(), rel=1e-6)
    assert set(parts) == {"ce_q", "ce_c", "nce_gen", "nce_disc", "balance", "total"}
    total, parts = plume_loss("explicit", oq, oc)
    assert total.item() == pytest.approx((3.0 + gen + disc).item(), rel=1e-6) and "balance" not in parts
    oq.gen_emb = oc.gen_emb = oq.ce_loss = oc.ce_loss = None  # direct returns no gen/CE
    total, parts = plume_loss("direct", oq, oc)
    assert total.item() == pytest.approx(disc.item(), rel=1e-6) and set(parts) == {"nce_disc", "total"}
    total.backward()
    assert oq.disc_emb.grad is not None and oq.disc_emb.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        plume_loss("latnet", oq, oc)


def test_contrastive_weight_scales_only_the_infonce_terms():
    torch.manual_seed(0)
    oq, oc = outputs(ce=1.0, bal=0.5), outputs(ce=2.0, bal=0.25)
    gen, disc = info_nce(oq.gen_emb, oc.gen_emb), info_nce(oq.disc_emb, oc.disc_emb)
    total, parts = plume_loss("latent", oq, oc, contrastive_weight=0.25)
    assert total.item() == pytest.approx((3.0 + 0.25 * (gen + disc) + 0.1 * 0.75).item(), rel=1e-6)
    assert parts["nce_gen"].item() == pytest.approx(gen.item())  # parts are logged unweighted
    total, _ = plume_loss("explicit", oq, oc, contrastive_weight=0.0)
    assert total.item() == pytest.approx(3.0)  # the language-model loss alone
    total.backward()
    assert oq.gen_emb.grad is None or oq.gen_emb.grad.abs().sum() == 0


def test_contrastive_weight_is_checked():
    from plume_lite.errors import ConfigError
    from plume_lite.train.config import TrainConfig

    assert TrainConfig(mode="explicit", contrastive_weight=0.0).contrastive_weight == 0.0
    with pytest.raises(ConfigError, match="contrastive_weight must be >= 0"):
        TrainConfig(mode="explicit", contrastive_weight=-1.0)
    with pytest.raises(ConfigError, match="direct mode"):
        TrainConfig(mode="direct", contrastive_weight=0.0)


@pytest.mark.slow
def test_two_process_gather_equals_single_process(tmp_path):
    """`accelerate launch` two CPU processes (gloo) running this file as a worker."""
    exe = Path(sys.executable).with_name("accelerate")
    launcher = [str(exe)] if exe.exists() else [shutil.which("accelerate") or "accelerate"]
    # --multi_gpu selects the torchrun launcher (accelerate's --cpu launcher needs
    # mpirun); the worker's Accelerator(cpu=True) then joins a gloo process group
    cmd = launcher + [
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        __file__,
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for rank in range(2):
        assert (tmp_path / f"ok_{rank}").read_text() == "ok"


def _worker(out_dir: str):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    assert world == 2 and torch.distributed.get_backend() == "gloo"
    q, c = global_batch()
    ids = torch.arange(GLOBAL_B)
    ids[5] = ids[0]  # a duplicate across the two ranks
    c[5] = c[0]
    # single process on the global batch
    qg, cg = q.clone().requires_grad_(), c.clone().requires_grad_()
    single = info_nce(qg, cg, c_ids=ids, q_ids=torch.arange(GLOBAL_B), gather=False)
    single.backward()
    # this rank's slice, gathered
    b = GLOBAL_B // world
    sl = slice(rank * b, (rank + 1) * b)
    ql, cl = q[sl].clone().requires_grad_(), c[sl].clone().requires_grad_()
    local = info_nce(ql, cl, c_ids=ids[sl], q_ids=torch.arange(GLOBAL_B)[sl])
    local.backward()
    mean_loss = acc.reduce(local.detach(), reduction="mean")
    torch.testing.assert_close(mean_loss, single.detach(), rtol=1e-5, atol=1e-6)
    # the gather's backward sums over ranks; DDP's averaging divides by world size
    torch.testing.assert_close(ql.grad / world, qg.grad[sl], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(cl.grad / world, cg.grad[sl], rtol=1e-5, atol=1e-7)
    Path(out_dir, f"ok_{rank}").write_text("ok")
    acc.end_training()


if __name__ == "__main__":
    _worker(sys.argv[1])
