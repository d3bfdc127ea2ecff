"""Visualization commands: record (videos with a Q panel, or text logs), plot-q (Q-value trace), plot (learning
curves)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

EPILOG_RECORD = """examples:
  rlmorning record runs/Breakout-dqn-0-20261123-101500 --episodes 3
  rlmorning record runs/<run> --checkpoint latest --max-steps 2000 --gif
  rlmorning record runs/<run> --episodes 1 --saliency
  rlmorning record runs/<Breakout run> --episodes 1 --objects       (objects from RAM; predicted with aux=objects)
  rlmorning record sb3:models/dqn_breakout.zip --env Breakout
  rlmorning record runs/<Copy-v0 a2c run> --episodes 2              (text log)
  rlmorning record runs/<Copy-v0 a2c run> --format mp4 --fps 2      (the text frames as a video)

output: <stem>.mp4 (H.264) and <stem>.json (per-step actions, rewards, Q-values, lives, score) per episode
(with --saliency also <stem>-off.mp4, the same episode without the heatmap),
in RUN/videos/ (SB3: videos/ beside the model) unless --out is given. Envs that only render text
(render_mode 'ansi': rlmorning/Copy-v0 and the other algorithmic envs, the NTM tasks) default to
--format text: <stem>-text.txt with, per step, the policy's outputs, the action, the reward and the env's
rendering (tapes, heads), and <stem>-text.json; --format mp4 draws those frames into a video.
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``record``, ``plot-q`` and ``plot`` to ``sub``; returns name -> handler."""
    rec = sub.add_parser("record", help="MP4 videos of evaluation episodes with a live Q-value panel (text "
                         "logs for text-rendering envs)",
                         epilog=EPILOG_RECORD, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("source", metavar="RUN", help="run directory, or sb3:path/to/model.zip (with --env)")
    rec.add_argument("--episodes", type=int, default=3, help="episodes to record (default 3)")
    _common(rec)
    rec.add_argument("--out", help="output folder (default RUN/videos/)")
    rec.add_argument("--format", dest="fmt", choices=("text", "mp4"), help="mp4 video (default) or text log "
                     "(default for envs that only render text, e.g. rlmorning/Copy-v0)")
    rec.add_argument("--fps", type=int, help="video frames per second; 1 frame = 1 agent step "
                     "(Atari: 4 emulator frames, so 30 fps is 2x real time; default 30, text envs: their "
                     "render_fps)")
    rec.add_argument("--max-steps", type=int, help="stop each episode after N agent steps")
    rec.add_argument("--no-overlay", action="store_true", help="plain game video, no panel")
    rec.add_argument("--gif", action="store_true", help="also write a GIF (half size, 15 fps; text frames: "
                     "full size)")
    rec.add_argument("--saliency", action="store_true", help="overlay perturbation saliency (Greydanus et al. "
                     "2018); ~300 batched forward passes per computed frame")
    rec.add_argument("--saliency-every", type=int, default=4, metavar="K",
                     help="compute saliency every K-th step, reuse it in between (default 4)")
    rec.add_argument("--epsilon", type=float, help="random-action probability (default: the run's eval_epsilon)")
    rec.add_argument("--scale", type=int, help="integer upscale of the screen (default: 3 for Atari)")
    rec.add_argument("--objects", action="store_true", help="Atari: draw the game's objects read from the console "
                     "RAM (green) and, for runs trained with aux=objects, the object head's predicted boxes "
                     "(magenta); Breakout, Pong, Boxing, MsPacman")
    rec.add_argument("--skill", type=int, help="skills runs: play skill K in every episode (videos in "
                     "RUN/videos/skill<K>/)")

    pq = sub.add_parser("plot-q", help="Q-value trace of one episode (DQN paper Fig. 3) and held-out Q over "
                        "training")
    pq.add_argument("source", metavar="RUN", help="run directory, or sb3:path/to/model.zip (with --env)")
    _common(pq)
    pq.add_argument("--episode-steps", type=int, help="plot only the first N steps of the episode")
    pq.add_argument("--out", help="PNG path (default RUN/plots/qtrace-<checkpoint>-seed<seed>.png); the "
                    "plotted data goes to the same path with .json")

    pl = sub.add_parser("plot", help="learning curves from metrics.csv; seeds of one config as mean ± std")
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    pl.add_argument("--metric", default="eval_return", help="eval_return (default), heldout_q, loss, sps, "
                    "train_return, epsilon, ... (any metrics.csv column); kstep_error: a world model's open-loop error "
                    "against the horizon k, beside copy-last-frame")
    pl.add_argument("--out", help="PNG path (default FIRST_RUN/plots/<metric>.png, <metric>-<N>-runs.png for N runs); "
                    "data in the same path with .json")
    return {"record": _cmd_record, "plot-q": _cmd_plot_q, "plot": _cmd_plot}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="best", help="best | latest | PATH (default best, else latest)")
    p.add_argument("--seed", type=int, default=12_345, help="seed of the (first) episode (default 12345)")
    p.add_argument("--env", help="env of an sb3: model, e.g. Breakout")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")


def _threads() -> None:
    import torch

    from rlmorning.threads import available_cores

    torch.set_num_threads(available_cores())


def _cmd_record(args: argparse.Namespace) -> int:
    from rlmorning.config import check_seed
    from rlmorning.viz.video import print_paths, record

    check_seed("--seed", args.seed)
    _threads()
    results = record(
        args.source, episodes=args.episodes, checkpoint=args.checkpoint, out=args.out, fps=args.fps,
        max_steps=args.max_steps, overlay=not args.no_overlay, gif=args.gif, saliency=args.saliency,
        saliency_every=args.saliency_every, seed=args.seed, env=args.env, epsilon=args.epsilon,
        device=args.device, scale=args.scale, fmt=args.fmt, skill=args.skill, objects=args.objects,
    )
    print_paths(results)
    return 0


def _cmd_plot_q(args: argparse.Namespace) -> int:
    from rlmorning.config import check_seed
    from rlmorning.viz.qtrace import plot_q

    check_seed("--seed", args.seed)
    _threads()
    paths = plot_q(args.source, checkpoint=args.checkpoint, episode_steps=args.episode_steps, out=args.out,
                   seed=args.seed, env=args.env, device=args.device)
    print(paths["png"])
    print(paths["json"])
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from rlmorning.viz.curves import plot_curves

    paths = plot_curves(args.runs, metric=args.metric, out=args.out)
    print(paths["png"])
    print(paths["json"])
    return 0
