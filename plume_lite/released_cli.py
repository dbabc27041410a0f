"""`plume-lite convert SRC DST`: the parser, torch-free (so `plume-lite --help` stays fast),
and its handler, which imports plume_lite.released only when it runs."""

from __future__ import annotations

from plume_lite.arguments import int_at_least

DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert the authors' released PLUME checkpoint to this package's layout",
        description=(
            "Read a checkpoint in the authors' layout (a folder or a hub id such as "
            "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B), check every adapter tensor, and write a "
            "plume_lite folder (plume_config.json with the authors' evaluation settings, "
            "adapter.safetensors, backbone/)."
        ),
    )
    p.add_argument("src", help="released checkpoint: a folder or a hub id")
    p.add_argument("dst", help="folder to write (replaced atomically if it exists)")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="backbone dtype written (auto: as stored)")
    p.add_argument(
        "--steps",
        type=int_at_least(0),
        default=None,
        help="K to record (default: trainer_state.json, else 8)",
    )
    p.set_defaults(func=_convert)


def _convert(args) -> int:
    from plume_lite.released import convert_authors_checkpoint, describe

    dtype = args.dtype
    if dtype != "auto":
        import torch

        dtype = getattr(torch, dtype)
    settings = {} if args.steps is None else {"latent_steps": args.steps}
    out = convert_authors_checkpoint(args.src, args.dst, dtype=dtype, **settings)
    print(describe(out))
    return 0
