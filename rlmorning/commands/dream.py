"""``rlmorning dream``: a world model's open-loop prediction beside the real frames, as an MP4."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

EPILOG = """examples:
  rlmorning train worldmodel --env MinAtar/Breakout --steps 50000
  rlmorning dream runs/<run> --horizon 50
  rlmorning dream runs/<run> --out dream.mp4 --seed 3
  rlmorning train worldmodel --env Pong --set env_kwargs="{frame_size: 64}" --steps 100000
  rlmorning dream runs/<pong-run> --upsample srcnn      # fit SRCNN on Pong screens, render at 256 px

rows: real frames, the model's open-loop prediction from the same start frame with the same random
actions, and their difference; a green border marks the observed start, orange the imagined steps.
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``dream`` to ``sub``."""
    p = sub.add_parser("dream", help="MP4 of a world model's open-loop dream beside the real frames",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN",
                   help="run directory of a worldmodel run or a Dyna-DQN run (dqn with a model: section)")
    p.add_argument("--horizon", type=int, default=50, help="imagined steps (default 50)")
    p.add_argument("--out", help="MP4 path (default RUN/videos/dream-<checkpoint>-seed<S>-h<H>.mp4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the real episode and its actions (default 0)")
    p.add_argument("--checkpoint", default="latest", help="latest | best | PATH (default latest)")
    p.add_argument("--fps", type=int, default=8, help="video frames per second (default 8)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--upsample", choices=("nearest", "bicubic", "srcnn"),
                   help="grey (ALE) frames: how to render at --display-size (default bicubic); srcnn fits a "
                   "3-layer SRCNN (Dong et al. 2014) on this game's real screens first and prints its PSNR")
    p.add_argument("--display-size", type=int, help="display pixels: grey (ALE) frames are upsampled to it "
                   "(default 256); MinAtar planes get cells of DISPLAY_SIZE // 10 pixels (default 16)")
    p.add_argument("--srcnn-steps", type=int, default=400, help="SRCNN training steps (default 400)")
    return {"dream": _cmd_dream}


def _cmd_dream(args: argparse.Namespace) -> int:
    from rlmorning.viz.dream import dream

    res = dream(args.run, horizon=args.horizon, out=args.out, seed=args.seed, checkpoint=args.checkpoint,
                fps=args.fps, device=args.device, upsample=args.upsample, display_size=args.display_size,
                srcnn_steps=args.srcnn_steps)
    print(f"{res['video']}  ({res['frames']} frames, {res['steps']} imagined steps)")
    if "psnr_srcnn" in res:
        print(f"SRCNN on held-out screens: PSNR {res['psnr_srcnn']:.2f} dB (bicubic {res['psnr_bicubic']:.2f} dB)")
    return 0
