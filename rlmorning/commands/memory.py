"""``rlmorning plot-memory``: an NTM run's inputs, outputs and read/write weightings over one episode."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

EPILOG = """examples:
  rlmorning plot-memory runs/NTMCopy-v0-ntm-0-20261123-101500
  rlmorning plot-memory runs/<run> --checkpoint best --length 50 --out copy50.png
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``plot-memory`` to ``sub``."""
    p = sub.add_parser("plot-memory", help="plot an NTM run's memory use over one episode (PNG)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory of an ntm run (or an a2c run with core=ntm)")
    p.add_argument("--checkpoint", default="latest", help="latest | best | PATH (default latest)")
    p.add_argument("--length", type=int, help="sequence length of the episode (NTM tasks; for the algorithmic "
                   "envs the curriculum level); default: drawn as in training")
    p.add_argument("--out", help="PNG path (default RUN/plots/memory-<checkpoint>[-L<length>]-s<seed>.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode (default 0)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    return {"plot-memory": _cmd_plot_memory}


def _cmd_plot_memory(args: argparse.Namespace) -> int:
    from rlmorning.viz.memory import plot_memory

    path = plot_memory(args.run, checkpoint=args.checkpoint, length=args.length, out=args.out, seed=args.seed,
                       device=args.device)
    print(path)
    return 0
