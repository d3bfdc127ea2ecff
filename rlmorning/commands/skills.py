"""Skills commands: plot-skills (state-space coverage of each skill of a skills run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

EPILOG = """examples:
  rlmorning plot-skills runs/MountainCar-v0-skills-0-20261123-101500 --out skills.png
  rlmorning plot-skills runs/<MinAtar skills run> --episodes 2 --max-steps 500
  rlmorning record runs/<skills run> --skill 3 --episodes 1      (videos of one skill)

output: the PNG (image observations: each skill's mean frame beside the scatter) and a JSON beside it (per
skill: returns, visited-state count, plotted points; the discriminator's accuracy on these states against
chance 1/K; coverage distinctness: the mean total variation distance between the skills' state-visitation
histograms, 0 = the same states, 1 = disjoint, beside its value with the skills shuffled, which is what
finite samples of one shared distribution score).
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``plot-skills`` to ``sub``; returns name -> handler."""
    ps = sub.add_parser("plot-skills", help="state-space coverage per skill of a skills run (scatter, PNG)",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ps.add_argument("run", metavar="RUN", help="run directory of `rlmorning train skills`")
    ps.add_argument("--out", help="PNG path (default RUN/plots/skills-<checkpoint>.png); data in the same path "
                    "with .json")
    ps.add_argument("--checkpoint", default="latest", help="latest | best | PATH (default latest)")
    ps.add_argument("--episodes", type=int, default=3, help="greedy episodes per skill (default 3)")
    ps.add_argument("--max-steps", type=int, default=1000, help="steps per episode at most (default 1000)")
    ps.add_argument("--projection", default="auto", help="auto (2-D observations as they are, else PCA) | dims "
                    "(first two observation entries) | pca; image observations: PCA of the discriminator's features")
    ps.add_argument("--epsilon", type=float, default=0.0, help="random-action probability (default 0)")
    ps.add_argument("--seed", type=int, default=12_345, help="seed of the first episode's env (default 12345)")
    ps.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    return {"plot-skills": _cmd_plot_skills}


def _cmd_plot_skills(args: argparse.Namespace) -> int:
    from rlmorning.viz.skills import plot_skills

    res = plot_skills(args.run, out=args.out, checkpoint=args.checkpoint, episodes=args.episodes, seed=args.seed,
                      projection=args.projection, epsilon=args.epsilon, max_steps=args.max_steps,
                      device=args.device)
    if res["accuracy"] is not None:
        k = len(res["returns"])
        print(f"discriminator accuracy on these states: {res['accuracy']:.3f} (chance {1 / k:.3f})")
    print(f"coverage distinctness (0: the same states, 1: disjoint): {res['distinctness']:.3f} "
          f"(skills shuffled: {res['distinctness_shuffled']:.3f})")
    print(res["png"])
    print(res["json"])
    return 0
