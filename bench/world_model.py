"""World-model quality on MinAtar: open-loop per-cell accuracy at k = 1..10 vs copy-last-frame, reward signs.

Trains ``worldmodel`` (uniformly random data) on each game with ``rlmorning.api.train``, then measures on
*held-out* random-policy windows (fresh env seed): the model observes the window's first ``context``
frames (config key, default 1), then predicts open loop with the real actions; per-cell accuracy of the
binarised prediction k steps after the last observed frame, the copy-last-frame baseline (that observed
frame as the guess), and the reward-sign accuracy over all predicted steps (plus over steps with a
non-zero real reward only). Prints a Markdown table.

    python bench/world_model.py --steps 20000 --games Breakout Freeway SpaceInvaders
    python bench/world_model.py --set codec=grid-ae --set dynamics=conv-gru --set context=4 --set seq_len=12
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rlmorning import api
from rlmorning import envs as envs_mod
from rlmorning.envs import real_next_obs
from rlmorning.replay import ReplayBuffer


def heldout_buffer(game: str, steps: int, seed: int) -> ReplayBuffer:
    info = envs_mod.resolve(f"MinAtar/{game}")
    env = envs_mod.make_vector(info, 4, seed)
    buf = ReplayBuffer(steps, 4, env.single_observation_space.shape, np.uint8, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps // 4):
        a = rng.integers(0, env.single_action_space.n, 4)
        nxt, r, te, tr, info_ = env.step(a)
        buf.add(obs, a, r, te, tr, real_next_obs(nxt, info_, te | tr))
        obs = nxt
    env.close()
    return buf


def bench_game(game: str, steps: int, seed: int, horizon: int, windows: int, device: str,
               overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        api.train("worldmodel", f"MinAtar/{game}", run_dir=Path(tmp) / "run", steps=steps, seed=seed, device=device,
                  progress=False, overrides=["eval_every=0", "checkpoint_every=0", "kstep_every=0", *overrides])
        train_s = time.perf_counter() - t0
        agent, _ = api.load_agent(Path(tmp) / "run", "latest", device)
    buf = heldout_buffer(game, max(4_000, windows * 4), seed + 777)
    accs, copies, valid, signs, nonzero, r_pred, r_real = [], [], [], [], [], [], []
    for _ in range(max(1, windows // 256)):
        res = agent.model.kstep_metrics(buf.sample_sequences(256, agent.model.window(horizon)))
        accs.append(res["acc"] * res["valid"])
        copies.append(res["copy_acc"] * res["valid"])
        valid.append(res["valid"])
        signs.append(res["reward_sign_acc"])
        r_pred.append(res["reward_pred_mean"])
        r_real.append(res["reward_real_mean"])
        if not np.isnan(res["reward_nonzero_acc"]):
            nonzero.append(res["reward_nonzero_acc"])
    v = np.sum(valid, axis=0)
    return {
        "game": game, "acc": np.sum(accs, axis=0) / np.maximum(v, 1), "copy": np.sum(copies, axis=0) / np.maximum(v, 1),
        "reward_sign": float(np.mean(signs)), "reward_nonzero": float(np.mean(nonzero)) if nonzero else float("nan"),
        "reward_pred": float(np.mean(r_pred)), "reward_real": float(np.mean(r_real)),
        "train_s": train_s, "updates": agent.updates, "context": agent.model.context,
        "parts": f"{agent.model.codec_name} + {agent.model.dynamics_name}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=["Breakout", "Freeway", "SpaceInvaders"])
    p.add_argument("--steps", type=int, default=20_000, help="real env steps per game (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--windows", type=int, default=1024, help="held-out windows scored per game")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="worldmodel config overrides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        args.set.append(f"torch_threads={args.threads}")
    rows = [bench_game(g, args.steps, args.seed, args.horizon, args.windows, args.device, args.set)
            for g in args.games]
    ks = range(1, args.horizon + 1)
    print(f"\nworld model {rows[0]['parts']}, context {rows[0]['context']} observed frame(s), {args.steps} "
          f"random-policy steps, seed {args.seed}, {datetime.date.today()}, overrides {args.set}; cell: model / "
          "copy-last-observed-frame per-cell accuracy k steps after the last observed frame, held-out windows\n")
    print("| game | updates | " + " | ".join(f"k={k}" for k in ks)
          + " | reward sign | reward sign (r≠0) | mean reward model / real | train s |")
    print("|---|---|" + "---|" * len(ks) + "---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r['acc'][k - 1]:.3f} / {r['copy'][k - 1]:.3f}" for k in ks)
        print(f"| {r['game']} | {r['updates']} | {cells} | {r['reward_sign']:.3f} | {r['reward_nonzero']:.3f} | "
              f"{r['reward_pred']:.4f} / {r['reward_real']:.4f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
