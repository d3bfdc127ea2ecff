"""``rlmorning html``: a run report a person opens in a browser (episode player, curves, run cards)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
One self-contained HTML page about one or a few runs, to open in a browser (works offline, from file://):
  * an evaluation episode player: the video, a Q trace of every action below it (click it to seek the
    video), and a panel with the current step's Q per action, the action, the reward and the lives;
  * training curves from metrics.csv (eval return with its eval protocol, held-out Q, loss, sps, epsilon),
    runs that differ only in seed as mean ± std; hover shows the values;
  * a card per run: resolved config, versions, eval protocol, wall time, best and final eval scores; a
    world-model run's card adds a dream strip (as `rlmorning dream`), an NTM run's its memory plot (as
    `rlmorning plot-memory`);
  * with --saliency (or a --video recorded with `record --saliency`) a toggle in the player that switches
    the video between the episode with and without the saliency heatmap, at the same step.

Unlike `rlmorning report`, which aggregates final scores across many runs and envs into Markdown (IQM,
confidence intervals), `html` shows what happened inside a run: its episode, its curves and its settings.
"""

EPILOG = """examples:
  rlmorning html runs/Breakout-dqn-0-20261123-101500 --out breakout.html
  rlmorning html runs/Breakout-dqn-0-* runs/Breakout-dqn-1-* --out breakout-seeds.html --max-steps 2000
  rlmorning html runs/<run> --video runs/<run>/videos/<stem>.mp4 --out page.html   (an existing recording)
  rlmorning html runs/<run> --out page.html --video-file      (video in page_files/ beside the page)
  rlmorning html runs/<run> --out page.html --saliency --max-steps 500   (saliency toggle; slow to record)

The episode is recorded from the first RUN (as `rlmorning record RUN --episodes 1 --no-overlay`: the game
screen; the page draws the Q panel) unless --video is given. The page inlines plotly.js (about 4.8 MB) and,
by default, the video as base64: about 5 MB for a short run, 6.6 MB for a 14,363-step Breakout episode.
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``html`` to ``sub``; returns name -> handler."""
    p = sub.add_parser("html", help="one self-contained HTML page per run(s) for a browser: episode player linked "
                       "to its Q trace, training curves, run card (report aggregates scores into Markdown)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (the episode comes from the first)")
    p.add_argument("--out", required=True, metavar="OUT.html", help="the page to write (folders are created)")
    p.add_argument("--video", metavar="MP4", help="use this recording (from rlmorning record) instead of recording "
                   "one; its sidecar is the same path with .json")
    p.add_argument("--sidecar", metavar="JSON", help="sidecar of --video, if not beside it")
    p.add_argument("--no-video", action="store_true", help="no episode player (curves and run cards only)")
    p.add_argument("--video-file", action="store_true", help="write the video beside the page, in "
                   "<OUT stem>_files/, instead of inlining it as base64")
    p.add_argument("--checkpoint", default="best", help="best | latest | PATH of the recorded episode (default best, "
                   "else latest)")
    p.add_argument("--seed", type=int, default=12_345, help="seed of the recorded episode (default 12345)")
    p.add_argument("--max-steps", type=int, help="stop the recorded episode after N agent steps")
    p.add_argument("--video-panel", action="store_true", help="keep record's Q panel in the recorded video (the "
                   "page has its own panel; the default game-only video is about 4 times smaller)")
    p.add_argument("--saliency", action="store_true", help="record the episode with perturbation saliency too "
                   "(as record --saliency; ~300 forward passes every 4th step): the player gets a saliency toggle")
    p.add_argument("--device", default="cpu", help="cpu | cuda for the recording (default cpu)")
    return {"html": _cmd_html}


def _cmd_html(args: argparse.Namespace) -> int:
    from rlmorning.config import check_seed
    from rlmorning.viz.html_report import build_report

    check_seed("--seed", args.seed)
    if not args.no_video and args.video is None:
        import torch

        from rlmorning.threads import default_torch_threads

        torch.set_num_threads(default_torch_threads())
    paths = build_report(
        args.runs, args.out, video=args.video, sidecar=args.sidecar, checkpoint=args.checkpoint, seed=args.seed,
        max_steps=args.max_steps, episode=not args.no_video, embed_video=not args.video_file,
        saliency=args.saliency, video_panel=args.video_panel, device=args.device, progress=True,
    )
    html = paths["html"]
    print(f"{html}  ({html.stat().st_size / 1e6:.1f} MB)")
    for key in ("video", "saliency_video"):
        if key in paths:
            print(paths[key])
    return 0
