"""What `plume-lite reproduce` trains and reads: the paper's chain and the controls that
decide it (LITE_DIAGNOSIS.md §7), as plain data.

Per seed, from the random-init tiny backbone ("base"; the shipped pre-trained one scored
lower as the chain's start, README §Pre-trained tiny backbone):

    U        explicit from base            CoT SFT + contrastive: the explicit system
    latent   latent from U                 the curriculum without its all-text stage 0
    direct   direct from base              step-matched: as many steps as U + latent
    U→direct direct from U                 as many steps as latent: what the latent stage
                                           adds beyond more contrastive training
    direct@cpu direct from base            as many steps as U + latent cost in CPU time

Each run is read once or more ("readouts"): the latent checkpoint with K = 8, with K = 0
(out of distribution: an upper bound on what the steps carry) and in one pass at
`<disc_emb>`; U in explicit mode (with its written-answer accuracy) and at `<disc_emb>`.
The compositional split is read for seed 0 only, and the component and K ablations
continue from U like the latent system, for seed 0: they are the secondary columns, and
the CPU time of `reproduce` goes to the three seeds of the main table.

Direct from the base backbone trains at DIRECT_LR, 3e-4: at 1e-3 it blew up after its
warm-up (grad norm 7520 at step ~100, then 300 steps at ln(batch), score 11.9; the
README's first chain run). The chain (reproduce.CHAIN_OVERRIDES) now trains at the same
lr; DIRECT_LR keeps direct's lr fixed whatever the chain's is."""

from __future__ import annotations

from dataclasses import dataclass, field

from plume_lite.errors import ConfigError


@dataclass(frozen=True)
class Readout:
    name: str  # unique within a run: the eval file is eval-<name>.json
    mode: str  # encode mode
    steps: int | None = None  # latent steps K (None: the model's own)
    compositional: bool = False  # also score the compositional (held-out combination) split


@dataclass(frozen=True)
class Run:
    name: str  # folder name, unique
    group: str  # main | control | components | steps
    label: str  # row label in the tables
    mode: str  # training mode
    seed: int
    steps: int  # optimizer steps (a CPU-matched run's are computed when it starts)
    init: str | None = None  # the run whose model this one starts from (None: the base backbone)
    overrides: tuple = ()
    readouts: tuple = ()
    cpu_matched_to: tuple = ()  # runs whose training CPU time this one matches (steps then computed)
    deps: tuple = field(default=())

    def requires(self) -> tuple:
        return tuple(dict.fromkeys(((self.init,) if self.init else ()) + self.cpu_matched_to + self.deps))


@dataclass(frozen=True)
class Budget:
    """Optimizer steps of each stage; CPU-matched steps are measured, not set."""

    # Per system: U 400, PLUME 400 + 200 (it continues from U), direct 600 step-matched.
    # Measured per step on one core (SynthMMEB lite, batch 16): explicit 0.58 s, latent
    # 0.71 s, direct 0.29 s; the 600 + 300 costs about 1.3x this in CPU time.
    explicit: int = 400
    latent: int = 200

    @property
    def step_matched(self) -> int:
        return self.explicit + self.latent


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(explicit=4, latent=4)
FROM_U = ("first_stage=1",)  # the paper skips the all-text stage when it starts from U
DIRECT_LR = ("lr=3e-4",)  # direct from the base backbone (see the module doc)


def plan_runs(seeds: int, budget: Budget = DEFAULT_BUDGET) -> list[Run]:
    runs: list[Run] = []
    for s in range(seeds):
        u, latent = f"explicit-s{s}", f"latent-s{s}"
        comp = s == 0  # the compositional column: seed 0
        runs += [
            Run(
                u, "main", "explicit CoT = U (UME-R1-style)", "explicit", s, budget.explicit,
                readouts=(Readout("explicit", "explicit"), Readout("disc", "direct")),
            ),
            Run(
                latent, "main", "PLUME latent (K=8), from U", "latent", s, budget.latent, init=u,
                overrides=FROM_U,
                readouts=(
                    Readout("k8", "latent", 8, compositional=comp),
                    Readout("k0", "latent", 0),
                    Readout("disc", "direct", compositional=comp),
                ),
            ),
            Run(
                f"direct-s{s}", "main", "direct (VLM2Vec-style), step-matched", "direct", s,
                budget.step_matched, overrides=DIRECT_LR,
                readouts=(Readout("direct", "direct", compositional=comp),),
            ),
            Run(
                f"direct-from-u-s{s}", "control", "direct from U, latent's steps", "direct", s,
                budget.latent, init=u, readouts=(Readout("direct", "direct"),),
            ),
            Run(
                f"direct-cpu-s{s}", "control", "direct, CPU-matched to U + latent", "direct", s, 0,
                cpu_matched_to=(u, latent), deps=(f"direct-s{s}",), overrides=DIRECT_LR,
                readouts=(Readout("direct", "direct", compositional=comp),),
            ),
        ]  # fmt: skip
    ablations = [
        ("latent-no-adapter-s0", "components", "no transition adapter", ("adapter=none",)),
        ("latent-mlp-s0", "components", "single MLP instead of MoE", ("adapter=mlp",)),
        ("latent-no-anchor-s0", "components", "no semantic anchor", ("adapter=moe_no_anchor",)),
        ("latent-no-curriculum-s0", "components", "no curriculum", ("curriculum=false",)),
        ("latent-k4-s0", "steps", "K = 4", ("latent_steps=4",)),
        ("latent-k6-s0", "steps", "K = 6", ("latent_steps=6",)),
    ]
    for name, group, label, overrides in ablations:
        runs.append(
            Run(
                name, group, label, "latent", 0, budget.latent, init="explicit-s0",
                overrides=FROM_U + overrides, readouts=(Readout("latent", "latent"),),
            )
        )  # fmt: skip
    return runs


def select_runs(runs: list[Run], names) -> list[Run]:
    """The runs named (the plan's order kept) and every run they start from or match;
    an unknown name is an error that lists the plan's names."""
    by_name = {r.name: r for r in runs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"--runs: no run {', '.join(unknown)} in the plan; its runs: {', '.join(by_name)}")
    keep, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += by_name[name].requires()
    return [r for r in runs if r.name in keep]


def cpu_matched_steps(train_seconds: list[float], direct_seconds: float, direct_steps: int) -> int:
    """Direct steps that cost the summed training time of the matched runs."""
    per_step = direct_seconds / max(1, direct_steps)
    return max(1, round(sum(train_seconds) / per_step)) if per_step > 0 else direct_steps
