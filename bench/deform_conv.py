"""The ``deformable`` encoder's two kernels, measured in the same run: torchvision's ``deform_conv2d`` vs the
``grid_sample`` + matmul form (``backend=gather``), forward + backward at batch 32, plus the plain ``nature``
encoder as the floor. Prints a Markdown table and the speed-up of ``gather`` over ``torchvision``.

    python bench/deform_conv.py                       # 4x84x84 and 4x10x10, CPU, 1 thread
    python bench/deform_conv.py --device cuda --threads 0
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import platform
import time

import torch

from rlmorning.agents.nets.encoders import make_encoder


def fwd_bwd_ms(encoder: torch.nn.Module, obs: torch.Tensor, repeats: int) -> float:
    """Median milliseconds of one forward + backward pass."""
    times = []
    for i in range(repeats + 2):
        if obs.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        encoder(obs).sum().backward()
        if obs.is_cuda:
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up passes
            times.append(time.perf_counter() - start)
    times.sort()
    return 1000.0 * times[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["4x84x84", "4x10x10"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{datetime.date.today()} {platform.machine()} {platform.processor() or ''} device={device} "
          f"torch threads={torch.get_num_threads()} batch={args.batch}, fwd+bwd median of {args.repeats}\n")
    print("| obs | deformable (torchvision) ms | deformable (gather) ms | nature ms | gather speed-up |")
    print("|---|---:|---:|---:|---:|")
    for shape_text in args.shapes:
        shape = tuple(int(s) for s in shape_text.split("x"))
        obs = torch.randint(0, 256, (args.batch, *shape), dtype=torch.uint8, device=device)
        torch.manual_seed(0)
        ms = {}
        for backend in ("torchvision", "gather"):
            enc = make_encoder("deformable", shape, input_scale=1 / 255, backend=backend).to(device)
            for layer in enc.convs:  # non-zero offsets, as after training
                if hasattr(layer, "offset"):
                    torch.nn.init.normal_(layer.offset.weight, std=0.01)
            ms[backend] = fwd_bwd_ms(enc, obs, args.repeats)
        nature = "-"
        if min(shape[1:]) >= 36:
            plain = make_encoder("nature", shape, input_scale=1 / 255).to(device)
            nature = f"{fwd_bwd_ms(plain, obs, args.repeats):.1f}"
        print(f"| {shape_text} | {ms['torchvision']:.1f} | {ms['gather']:.1f} | {nature} | "
              f"{ms['torchvision'] / ms['gather']:.1f}x |")


if __name__ == "__main__":
    main()
