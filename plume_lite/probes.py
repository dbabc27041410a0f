"""Linear probes on the states of the latent rollout: what each step's state encodes.

A probe is a logistic regression trained on one state (the anchor, z_1 .. z_K or the
final embedding) of many queries to predict one label: the answer, or an intermediate
fact the training rationale states (a count, a colour, a position). It is scored on a
held-out part of the queries, next to the majority-class baseline of the same split.

    states = rollout_states(model, [p.query for p in pairs])     # {"anchor", "z1", ..., "embedding"}
    labels = {"answer": [p.query_answer for p in pairs]}
    rows = step_probe_table(states, labels)                      # one row per (label, state)
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from plume_lite.errors import InputError

# Facts the SynthMMEB rationales state on the way to the answer (plume_lite.data.synth_*):
# per task, a name and a pattern whose first group is the fact's value.
RATIONALE_FACTS = {
    "img_qa_majority": {
        "number of colours": r"shapes in (\w+) colours",
        "number of shapes": r"shows (\w+) shapes",
    },
    "img_qa_leftof": {
        "shapes in the row": r"shows (\w+) shapes in a row",
        "position of the named shape": r"is the (\w+) shape from the left",
    },
    "img_qa_chart": {"bar colour": r"shows \w+ (\w+) bars"},
    "vid_qa_lastmoved": {"colour that moved first": r"The (\w+) \w+ moves first"},
}


def rationale_fact(task: str, fact: str, rationale: str) -> str | None:
    """The value of `fact` stated in a training rationale of `task`, or None when the
    rationale does not state it.

    Example:
        >>> rationale_fact("img_qa_leftof", "shapes in the row", "The image shows four shapes in a row. ...")
        'four'
    """
    try:
        pattern = RATIONALE_FACTS[task][fact]
    except KeyError:
        raise InputError(
            f"no rationale fact {fact!r} for task {task!r} (see probes.RATIONALE_FACTS)"
        ) from None
    found = re.search(pattern, rationale or "")
    return found.group(1).lower() if found else None


def rollout_states(model, items: list, steps: int | None = None, batch_size: int = 16) -> dict:
    """Every state of each item's latent rollout, as feature matrices.

    Args:
        model: a PlumeModel.
        items: query items.
        steps: latent steps (None: the checkpoint's K).
        batch_size: items per forward pass.

    Returns:
        {"anchor": [N, D], "z1": [N, D], ..., "zK": [N, D], "embedding": [N, D]} float32
        numpy arrays: the `<disc_emb>` state, the K latent states, the final embedding.

    Example:
        >>> states = rollout_states(model, [p.query for p in pairs])
    """
    emb, traces = model.encode(items, mode="latent", steps=steps, return_trace=True, batch_size=batch_size)
    states = {"anchor": np.stack([t["anchor"].numpy() for t in traces])}
    for j in range(len(traces[0]["latents"])):
        states[f"z{j + 1}"] = np.stack([t["latents"][j].numpy() for t in traces])
    states["embedding"] = emb.float().cpu().numpy()
    return states


def held_out_split(n: int, test_fraction: float = 0.33, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random (train indices, test indices) split of n examples."""
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def probe_accuracy(features, labels, train_idx, test_idx, C: float = 1.0) -> dict:
    """Train a standardised logistic regression on `train_idx`, score it on `test_idx`.

    Returns:
        {"accuracy": held-out accuracy, "majority": accuracy of always predicting the
        training split's most frequent label, "n_train", "n_test", "classes"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x, y = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if len(x) != len(y):
        raise InputError(f"{len(x)} feature rows but {len(y)} labels")
    y_train, y_test = y[train_idx], y[test_idx]
    majority_label = Counter(y_train.tolist()).most_common(1)[0][0]
    majority = float(np.mean(y_test == majority_label))
    if len(set(y_train.tolist())) < 2:  # nothing to separate: the probe is the majority guess
        accuracy = majority
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        # one BLAS thread: these fits are tiny, and on a busy machine more threads made
        # them 6-10x slower (measured)
        with threadpool_limits(1):
            probe.fit(x[train_idx], y_train)
            accuracy = float(probe.score(x[test_idx], y_test))
    return {
        "accuracy": accuracy,
        "majority": majority,
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "classes": len(set(y.tolist())),
    }


def step_probe_table(
    states: dict, labels: dict, test_fraction: float = 0.33, seed: int = 0, C: float = 1.0
) -> list[dict]:
    """A probe per (label, state): held-out accuracy next to the majority baseline.

    Every state of one label uses the same split; examples whose label is None (the
    rationale did not state the fact) are left out of that label's probes.

    Args:
        states: {state name: [N, D] array}, e.g. from `rollout_states`.
        labels: {label name: N values (str/int or None)}.
        test_fraction: share of the examples held out.
        seed: seed of the split.
        C: inverse L2 strength of the logistic regression.

    Returns:
        Rows {"label", "state", "accuracy", "majority", "n_train", "n_test", "classes"},
        in the order of `labels`, then of `states`.

    Example:
        >>> pd.DataFrame(step_probe_table(states, {"answer": answers})).pivot(
        ...     index="state", columns="label", values="accuracy")
    """
    rows = []
    for label, values in labels.items():
        keep = np.array([v is not None for v in values])
        if keep.sum() < 4:
            raise InputError(f"label {label!r}: {int(keep.sum())} examples with a value, need at least 4")
        y = np.array([v for v in values if v is not None])
        train_idx, test_idx = held_out_split(len(y), test_fraction, seed)
        for state, x in states.items():
            if len(x) != len(values):
                raise InputError(f"state {state!r} has {len(x)} rows but label {label!r} has {len(values)}")
            result = probe_accuracy(np.asarray(x)[keep], y, train_idx, test_idx, C=C)
            rows.append({"label": label, "state": state, **result})
    return rows
