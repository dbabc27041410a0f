"""`plume-lite train`: the parser, torch-free (so `plume-lite --help` stays fast), and
its handler, which imports the training loop only when it runs."""

from __future__ import annotations

from pathlib import Path

from plume_lite.config import MODES
from plume_lite.errors import ConfigError
from plume_lite.train.config import PROFILES, TrainConfig, parse_overrides, read_config_file, resolve_config


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train PLUME (latent) or a baseline (explicit, direct)",
        description="Train on a data folder; key=value overrides any TrainConfig field.",
    )
    p.add_argument("--data", required=True, help="training data folder (e.g. from `plume-lite synth`)")
    p.add_argument("--mode", choices=MODES, default=None, help="default: latent (or the resumed run's)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    p.add_argument("--out", required=True, help="run folder (config, log, checkpoints, model)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML/JSON config file")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    saved = Path(args.out) / "train_config.json"
    if args.resume and saved.exists():
        # continue the saved run; only what is given on this command line changes
        config = TrainConfig.load(saved)
        changes = {}
        for path in args.config:
            changes.update(read_config_file(path))
        changes.update(parse_overrides(args.overrides))
        config = config.replace(**changes)
    else:
        config = resolve_config(
            args.profile, mode=args.mode or "latent", files=args.config, overrides=args.overrides
        )
    if args.mode is not None and config.mode != args.mode:
        raise ConfigError(f"--mode {args.mode} but the run in {args.out} trains mode {config.mode}")
    from plume_lite.train.loop import train

    summary = train(config, args.data, args.out, resume=args.resume)
    if summary.get("finished"):
        print(
            f"trained {summary['mode']} for {summary['step']} steps in {summary['wall_s']} s "
            f"({summary['pairs_per_s']} pairs/s); model: {summary['model']}"
        )
    else:
        print(
            f"stopped at step {summary['step']} of {summary['max_steps']}; "
            f"continue with --resume (checkpoint {summary['checkpoint']})"
        )
    return 0
