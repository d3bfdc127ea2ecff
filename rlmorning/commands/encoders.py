"""Encoder commands: ``encoders`` (size/cost table) and ``plot-offsets`` (deformable sampling locations)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rlmorning.errors import RlmError

Handler = Callable[[argparse.Namespace], int]

EPILOG_ENCODERS = """examples:
  rlmorning encoders                       # Atari frames, 4x84x84
  rlmorning encoders --obs 4x10x10 -v      # MinAtar Breakout, per-layer breakdown

multiply-adds are per observation (batch 1), counted on Conv2d, Linear and deformable convs:
conv = C_out*H_out*W_out*C_in*kh*kw, linear = in*out, deformable = conv + 4 per bilinear sample
(+1 with modulation); biases, norms, activations, pooling and additions are not counted.
time = mean CPU forward+backward of a random uint8 batch after one warm-up pass.
"""

EPILOG_OFFSETS = """examples:
  rlmorning plot-offsets runs/Breakout-dqn-0-20261123-101500
  rlmorning plot-offsets runs/<run> --checkpoint latest --units 4 --out offsets.png

The run must have been trained with --set encoder=deformable. Red points: where the chosen unit of
the last deformable layer samples the frame, through every deformable layer (as in Dai et al. 2017);
yellow: its own k x k samples; blue x: the regular grid a plain conv would use; green: the unit.
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``encoders`` and ``plot-offsets`` to ``sub``; returns name -> handler."""
    en = sub.add_parser("encoders", help="list encoders with parameters, multiply-adds and CPU time",
                        epilog=EPILOG_ENCODERS, formatter_class=argparse.RawDescriptionHelpFormatter)
    en.add_argument("--obs", default="4x84x84", help="observation shape CxHxW (default 4x84x84; MinAtar: 4x10x10)")
    en.add_argument("-v", "--verbose", action="store_true", help="also list parameters and multiply-adds per layer")
    en.add_argument("--batch", type=int, default=32, help="batch size of the timing (default 32)")
    en.add_argument("--iters", type=int, default=3, help="timed forward+backward passes per encoder (default 3)")
    en.add_argument("--encoder", action="append", metavar="NAME", help="only this encoder (repeatable)")
    en.add_argument("--threads", type=int, help="torch CPU threads for the timing (default: torch's)")

    po = sub.add_parser("plot-offsets", help="draw a deformable run's learned sampling locations on frames",
                        epilog=EPILOG_OFFSETS, formatter_class=argparse.RawDescriptionHelpFormatter)
    po.add_argument("run", help="run directory of a run trained with --set encoder=deformable")
    po.add_argument("--checkpoint", default="best", help="best | latest | PATH (default best, else latest)")
    po.add_argument("--out", help="PNG file to write (default RUN/plots/offsets-<checkpoint>.png)")
    po.add_argument("--units", type=int, default=3, help="units per frame, the most active ones (default 3)")
    po.add_argument("--frames", type=int, default=3, help="held-out frames to draw on (default 3)")
    return {"encoders": _cmd_encoders, "plot-offsets": _cmd_plot_offsets}


def parse_obs(text: str) -> tuple[int, ...]:
    """``4x84x84`` -> ``(4, 84, 84)``; anything else is a one-line RlmError."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) not in (1, 3) or min(shape, default=0) < 1:
        raise RlmError(f"--obs expects CxHxW with positive integers (e.g. 4x84x84, or 4x10x10 for MinAtar), "
                       f"got '{text}'")
    return shape


def _fmt_int(n: int) -> str:
    if n >= 10**9:
        return f"{n / 1e9:.2f}G"
    if n >= 10**6:
        return f"{n / 1e6:.2f}M"
    if n >= 10**4:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _cmd_encoders(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from rlmorning.agents.nets.encoders import ENCODERS, make_encoder
    from rlmorning.agents.nets.profiling import count_params, layer_costs, time_forward_backward

    shape = parse_obs(args.obs)
    if args.batch < 1 or args.iters < 1:
        raise RlmError("--batch and --iters must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise RlmError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    names = ENCODERS.names()
    if args.encoder:
        for n in args.encoder:
            ENCODERS.get(n)  # unknown name -> RlmError listing the valid ones
        names = [n for n in names if n in args.encoder]
    out = Console()
    err = Console(stderr=True)
    table = Table(title=f"encoders for uint8 observations {'x'.join(map(str, shape))} "
                        f"(CPU, {torch.get_num_threads()} threads)")
    for col, justify in (("name", "left"), ("out", "right"), ("parameters", "right"),
                         ("multiply-adds", "right"), (f"fwd+bwd ms (batch {args.batch})", "right"),
                         ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    details = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("measuring", total=len(names))
        for name in names:
            progress.update(task, description=f"measuring {name}")
            torch.manual_seed(0)
            try:
                enc = make_encoder(name, shape, input_scale=1 / 255)
            except RlmError as exc:
                table.add_row(name, "-", "-", "-", "-", f"[dim]n/a for this shape: {exc}[/dim]")
                progress.advance(task)
                continue
            costs = layer_costs(enc, shape)
            ms = time_forward_backward(enc, shape, batch=args.batch, iters=args.iters)
            table.add_row(name, str(enc.out_dim), f"{count_params(enc):,}", _fmt_int(sum(c.macs for c in costs)),
                          f"{ms:.1f}", ENCODERS.describe(name))
            details.append((name, costs))
            progress.advance(task)
    out.print(table)
    if args.verbose:
        for name, costs in details:
            t = Table(title=f"{name}: layers with parameters or multiply-adds", title_justify="left")
            for col in ("layer", "type", "output", "parameters", "multiply-adds"):
                t.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
            for c in costs:
                t.add_row(c.name, c.kind, "x".join(map(str, c.out_shape)), f"{c.params:,}", f"{c.macs:,}")
            t.add_row("[b]total[/b]", "", "", f"[b]{sum(c.params for c in costs):,}[/b]",
                      f"[b]{sum(c.macs for c in costs):,}[/b]")
            out.print(t)
    return 0


def _cmd_plot_offsets(args: argparse.Namespace) -> int:
    from rlmorning.viz.offsets import plot_offsets

    if args.units < 1 or args.frames < 1:
        raise RlmError("--units and --frames must be >= 1")
    path = plot_offsets(args.run, checkpoint=args.checkpoint, out=args.out, units=args.units, frames=args.frames)
    print(path)
    return 0
