"""Published Atari 100k per-game scores of DrQ(eps), SPR and DER, with the Random and Human references.

Atari 100k (Kaiser et al., "Model-Based Reinforcement Learning for Atari", arXiv:1903.00374, ICLR 2020):
26 games, 100k agent steps (400k frames at frame skip 4) of interaction per run, scored by the
undiscounted, unclipped game score of the final agent. Each value below is a per-game mean over
runs (and, within a run, over evaluation episodes) as published; keys are ale-py ROM ids
(``ale_py.roms.get_all_rom_ids()``). All five tables cover all 26 games; no value is missing.

Sources, one per entry of ``PUBLISHED_ATARI100K``:

``"DrQ(eps)"``: DrQ with standard epsilon-greedy parameters (training epsilon decayed to 0.01,
evaluation epsilon 0.001), introduced in Agarwal, Schwarzer, Castro, Courville & Bellemare,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021 (arXiv:2108.13264),
100 runs per game, code in Dopamine ``labs/atari_100k`` (``DrQ_eps.gin``). That paper prints no per-game
table: it gives aggregates and figures, and releases the final score of each of its 100 runs per game
(gs://rl-benchmark-data/atari_100k, Appendix A.1). The values here are the means of those 100 run
scores, rounded to one decimal, computed from the copy of that release in the IRIS repository
(eloialonso/iris, ``results/data/DrQ(eps).json``, commit 75e5ab57). Check: over the 26 games the unrounded
means give a human-normalised mean of 0.465 and median of 0.313 (0.312 from the rounded values here), the
DrQ(eps) aggregates printed in Micheli et al., "Transformers are Sample-Efficient World Models", ICLR 2023
(arXiv:2209.00588), Table 1 (where the column is headed "DrQ"), and in Schwarzer et al., "Bigger, Better,
Faster: Human-level Atari with Human-level Efficiency", ICML 2023 (arXiv:2305.19452), Table A.1.

``"SPR"``: Schwarzer, Anand, Goel, Hjelm, Courville & Bachman, "Data-Efficient Reinforcement Learning
with Self-Predictive Representations", ICLR 2021 (arXiv:2007.05929), per-game results table of the
full SPR agent (with augmentation), 10 runs per game. Read from two reproductions of that table that
agree on all 26 values: Ye et al., "Mastering Atari Games with Limited Data" (EfficientZero), NeurIPS 2021
(arXiv:2111.00210), Table 1, SPR column; and Cetin, Ball, Roberts & Celiktutan, "Stabilizing Off-Policy Deep
Reinforcement Learning from Pixels" (A-LIX), ICML 2022 (PMLR 162), Table 5, SPR column. Check: they give a
human-normalised mean of 0.703 (0.704 printed in A-LIX Table 5, presumably from unrounded scores), median
0.415 and 7 games above human; the SPR abstract states the median 0.415 and 7 of 26 games above human.

``"DER"``: Data-Efficient Rainbow, van Hasselt, Hessel & Aslanides, "When to use parametric models in
reinforcement learning?", NeurIPS 2019 (arXiv:1906.05243), as reported in the SPR paper's per-game table.
Read from Cetin et al. 2022 (A-LIX), Table 5, DER column, which agrees on all 26 values with the
``der_scores`` of the SPR authors' notebook (mila-iqia/spr, ``100k_comparison.ipynb``). Check:
human-normalised mean 0.285, median 0.161, as printed in that table. These are the original DER numbers;
the 100-run DER re-implementation of Agarwal et al. 2021 scores differently (mean 0.350).

``"Random"`` and ``"Human"``: the reference scores used by all the papers above (uniformly random
actions; human professional game tester), the same numbers in the Random/Human columns of
EfficientZero Table 1, A-LIX Table 5 (a reproduction of the SPR table) and Alonso et al., "Diffusion for
World Modeling: Visual Details Matter in Atari" (DIAMOND), NeurIPS 2024 (arXiv:2405.12399), Table 1. They
equal the 26 corresponding entries of ``rlmorning.reference_scores.ATARI57``.

Human-normalised score: (score - Random) / (Human - Random).
"""

from __future__ import annotations

ATARI100K_GAMES: tuple[str, ...] = (
    "alien",
    "amidar",
    "assault",
    "asterix",
    "bank_heist",
    "battle_zone",
    "boxing",
    "breakout",
    "chopper_command",
    "crazy_climber",
    "demon_attack",
    "freeway",
    "frostbite",
    "gopher",
    "hero",
    "jamesbond",
    "kangaroo",
    "krull",
    "kung_fu_master",
    "ms_pacman",
    "pong",
    "private_eye",
    "qbert",
    "road_runner",
    "seaquest",
    "up_n_down",
)

PUBLISHED_ATARI100K: dict[str, dict[str, float]] = {
    "DrQ(eps)": {
        "alien": 865.2,
        "amidar": 137.8,
        "assault": 579.6,
        "asterix": 763.6,
        "bank_heist": 232.9,
        "battle_zone": 10165.3,
        "boxing": 9.0,
        "breakout": 19.8,
        "chopper_command": 844.6,
        "crazy_climber": 21539.0,
        "demon_attack": 1321.6,
        "freeway": 20.3,
        "frostbite": 1014.2,
        "gopher": 621.6,
        "hero": 4167.9,
        "jamesbond": 349.1,
        "kangaroo": 1088.4,
        "krull": 4402.1,
        "kung_fu_master": 11467.4,
        "ms_pacman": 1218.1,
        "pong": -9.1,
        "private_eye": 3.5,
        "qbert": 1810.7,
        "road_runner": 11211.4,
        "seaquest": 352.3,
        "up_n_down": 4324.5,
    },
    "SPR": {
        "alien": 801.5,
        "amidar": 176.3,
        "assault": 571.0,
        "asterix": 977.8,
        "bank_heist": 380.9,
        "battle_zone": 16651.0,
        "boxing": 35.8,
        "breakout": 17.1,
        "chopper_command": 974.8,
        "crazy_climber": 42923.6,
        "demon_attack": 545.2,
        "freeway": 24.4,
        "frostbite": 1821.5,
        "gopher": 715.2,
        "hero": 7019.2,
        "jamesbond": 365.4,
        "kangaroo": 3276.4,
        "krull": 3688.9,
        "kung_fu_master": 13192.7,
        "ms_pacman": 1313.2,
        "pong": -5.9,
        "private_eye": 124.0,
        "qbert": 669.1,
        "road_runner": 14220.5,
        "seaquest": 583.1,
        "up_n_down": 28138.5,
    },
    "DER": {
        "alien": 739.9,
        "amidar": 188.6,
        "assault": 431.2,
        "asterix": 470.8,
        "bank_heist": 51.0,
        "battle_zone": 10124.6,
        "boxing": 0.2,
        "breakout": 1.9,
        "chopper_command": 861.8,
        "crazy_climber": 16185.3,
        "demon_attack": 508.0,
        "freeway": 27.9,
        "frostbite": 866.8,
        "gopher": 349.5,
        "hero": 6857.0,
        "jamesbond": 301.6,
        "kangaroo": 779.3,
        "krull": 2851.5,
        "kung_fu_master": 14346.1,
        "ms_pacman": 1204.1,
        "pong": -19.3,
        "private_eye": 97.8,
        "qbert": 1152.9,
        "road_runner": 9600.0,
        "seaquest": 354.1,
        "up_n_down": 2877.4,
    },
    "Random": {
        "alien": 227.8,
        "amidar": 5.8,
        "assault": 222.4,
        "asterix": 210.0,
        "bank_heist": 14.2,
        "battle_zone": 2360.0,
        "boxing": 0.1,
        "breakout": 1.7,
        "chopper_command": 811.0,
        "crazy_climber": 10780.5,
        "demon_attack": 152.1,
        "freeway": 0.0,
        "frostbite": 65.2,
        "gopher": 257.6,
        "hero": 1027.0,
        "jamesbond": 29.0,
        "kangaroo": 52.0,
        "krull": 1598.0,
        "kung_fu_master": 258.5,
        "ms_pacman": 307.3,
        "pong": -20.7,
        "private_eye": 24.9,
        "qbert": 163.9,
        "road_runner": 11.5,
        "seaquest": 68.4,
        "up_n_down": 533.4,
    },
    "Human": {
        "alien": 7127.7,
        "amidar": 1719.5,
        "assault": 742.0,
        "asterix": 8503.3,
        "bank_heist": 753.1,
        "battle_zone": 37187.5,
        "boxing": 12.1,
        "breakout": 30.5,
        "chopper_command": 7387.8,
        "crazy_climber": 35829.4,
        "demon_attack": 1971.0,
        "freeway": 29.6,
        "frostbite": 4334.7,
        "gopher": 2412.5,
        "hero": 30826.4,
        "jamesbond": 302.8,
        "kangaroo": 3035.0,
        "krull": 2665.5,
        "kung_fu_master": 22736.3,
        "ms_pacman": 6951.6,
        "pong": 14.6,
        "private_eye": 69571.3,
        "qbert": 13455.0,
        "road_runner": 7845.0,
        "seaquest": 42054.7,
        "up_n_down": 11693.2,
    },
}

PUBLISHED_SOURCES: dict[str, str] = {
    "DrQ(eps)": (
        "Agarwal et al. 2021, Deep Reinforcement Learning at the Edge of the Statistical Precipice, NeurIPS 2021 "
        "(arXiv:2108.13264): mean of the 100 released run scores per game (gs://rl-benchmark-data/atari_100k; "
        "copy in eloialonso/iris results/data/DrQ(eps).json), rounded to 0.1; the paper prints no per-game "
        "table. 26-game HNS mean 0.465 / median 0.313 as printed in IRIS (ICLR 2023) Table 1 and BBF (ICML 2023) "
        "Table A.1"
    ),
    "SPR": (
        "Schwarzer et al. 2021, Data-Efficient Reinforcement Learning with Self-Predictive Representations, "
        "ICLR 2021 (arXiv:2007.05929), per-game results table, SPR with augmentation, 10 runs; as reproduced "
        "in EfficientZero (Ye et al., NeurIPS 2021) Table 1 and A-LIX (Cetin et al., ICML 2022) Table 5"
    ),
    "DER": (
        "van Hasselt, Hessel & Aslanides 2019, When to use parametric models in reinforcement learning?, "
        "NeurIPS 2019 (arXiv:1906.05243), Data-Efficient Rainbow, as reported in the SPR paper's per-game "
        "table; read from A-LIX (Cetin et al., ICML 2022) Table 5"
    ),
    "Random": (
        "Uniformly random policy: the Random column of the Atari 100k tables of EfficientZero (Ye et al., "
        "NeurIPS 2021) Table 1, A-LIX (Cetin et al., ICML 2022) Table 5 and DIAMOND (Alonso et al., NeurIPS 2024) "
        "Table 1"
    ),
    "Human": (
        "Human professional game tester: the Human column of the Atari 100k tables of EfficientZero (Ye et al., "
        "NeurIPS 2021) Table 1, A-LIX (Cetin et al., ICML 2022) Table 5 and DIAMOND (Alonso et al., NeurIPS 2024) "
        "Table 1"
    ),
}
