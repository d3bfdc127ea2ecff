"""Random-agent and human reference scores of Atari games, for normalised scores in ``rlmorning report``.

Keys are ALE ROM ids (``rlmorning.envs.atari.atari_games()``); values are ``(random, human)`` game
scores (undiscounted, unclipped episode returns). Two tables:

``atari57`` (default): the 57-game table of DeepMind's DQN Zoo (Quan & Ostrovski 2020,
``dqn_zoo/atari_data.py``), the reference scores of the Atari-57 human-normalised score used in
DeepMind's later work (e.g. Badia et al. 2020, Agent57). Random: uniformly random actions; human:
professional game tester; each episode starts with 1-30 no-ops, capped at 108,000 frames. For the 49
games of the Nature paper the random scores equal the Nature table's; several human scores differ from it.

``nature2015``: Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature
518, Extended Data Table 2 (49 games, random and professional human tester, no-op starts).

Only numbers from these sources are included. Normalisation (``normalise``):
human-normalised = (score - random) / (human - random), so 0 is random play and 1 is human play;
random-normalised = score - random, the points above random play (0 is random play).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rlmorning.errors import RlmError, unknown_name


@dataclass(frozen=True)
class ReferenceTable:
    """A table of ``ROM id -> (random score, human score)`` with where the numbers come from."""

    name: str
    source: str
    scores: Mapping[str, tuple[float, float]]


ATARI57 = ReferenceTable(
    name="atari57",
    source=("DeepMind DQN Zoo, dqn_zoo/atari_data.py (Quan & Ostrovski 2020): Atari-57 random and human "
            "scores, no-op starts, 108k-frame episode cap, as used for human-normalised scores in e.g. "
            "Badia et al. 2020 (Agent57)"),
    scores={
        "alien": (227.8, 7127.7),
        "amidar": (5.8, 1719.5),
        "assault": (222.4, 742.0),
        "asterix": (210.0, 8503.3),
        "asteroids": (719.1, 47388.7),
        "atlantis": (12850.0, 29028.1),
        "bank_heist": (14.2, 753.1),
        "battle_zone": (2360.0, 37187.5),
        "beam_rider": (363.9, 16926.5),
        "berzerk": (123.7, 2630.4),
        "bowling": (23.1, 160.7),
        "boxing": (0.1, 12.1),
        "breakout": (1.7, 30.5),
        "centipede": (2090.9, 12017.0),
        "chopper_command": (811.0, 7387.8),
        "crazy_climber": (10780.5, 35829.4),
        "defender": (2874.5, 18688.9),
        "demon_attack": (152.1, 1971.0),
        "double_dunk": (-18.6, -16.4),
        "enduro": (0.0, 860.5),
        "fishing_derby": (-91.7, -38.7),
        "freeway": (0.0, 29.6),
        "frostbite": (65.2, 4334.7),
        "gopher": (257.6, 2412.5),
        "gravitar": (173.0, 3351.4),
        "hero": (1027.0, 30826.4),
        "ice_hockey": (-11.2, 0.9),
        "jamesbond": (29.0, 302.8),
        "kangaroo": (52.0, 3035.0),
        "krull": (1598.0, 2665.5),
        "kung_fu_master": (258.5, 22736.3),
        "montezuma_revenge": (0.0, 4753.3),
        "ms_pacman": (307.3, 6951.6),
        "name_this_game": (2292.3, 8049.0),
        "phoenix": (761.4, 7242.6),
        "pitfall": (-229.4, 6463.7),
        "pong": (-20.7, 14.6),
        "private_eye": (24.9, 69571.3),
        "qbert": (163.9, 13455.0),
        "riverraid": (1338.5, 17118.0),
        "road_runner": (11.5, 7845.0),
        "robotank": (2.2, 11.9),
        "seaquest": (68.4, 42054.7),
        "skiing": (-17098.1, -4336.9),
        "solaris": (1236.3, 12326.7),
        "space_invaders": (148.0, 1668.7),
        "star_gunner": (664.0, 10250.0),
        "surround": (-10.0, 6.5),
        "tennis": (-23.8, -8.3),
        "time_pilot": (3568.0, 5229.2),
        "tutankham": (11.4, 167.6),
        "up_n_down": (533.4, 11693.2),
        "venture": (0.0, 1187.5),
        "video_pinball": (16256.9, 17667.9),  # random can beat this human score under other protocols
        "wizard_of_wor": (563.5, 4756.5),
        "yars_revenge": (3092.9, 54576.9),
        "zaxxon": (32.5, 9173.3),
    },
)

NATURE2015 = ReferenceTable(
    name="nature2015",
    source=("Mnih et al. 2015, Human-level control through deep reinforcement learning, Nature 518, "
            "Extended Data Table 2: random and professional human tester scores, 49 games"),
    scores={
        "alien": (227.8, 6875.4),
        "amidar": (5.8, 1675.8),
        "assault": (222.4, 1496.4),
        "asterix": (210.0, 8503.3),
        "asteroids": (719.1, 13156.7),
        "atlantis": (12850.0, 29028.1),
        "bank_heist": (14.2, 734.4),
        "battle_zone": (2360.0, 37800.0),
        "beam_rider": (363.9, 5774.7),
        "bowling": (23.1, 154.8),
        "boxing": (0.1, 4.3),
        "breakout": (1.7, 31.8),
        "centipede": (2090.9, 11963.2),
        "chopper_command": (811.0, 9881.8),
        "crazy_climber": (10780.5, 35410.5),
        "demon_attack": (152.1, 3401.3),
        "double_dunk": (-18.6, -15.5),
        "enduro": (0.0, 309.6),
        "fishing_derby": (-91.7, 5.5),
        "freeway": (0.0, 29.6),
        "frostbite": (65.2, 4334.7),
        "gopher": (257.6, 2321.0),
        "gravitar": (173.0, 2672.0),
        "hero": (1027.0, 25762.5),
        "ice_hockey": (-11.2, 0.9),
        "jamesbond": (29.0, 406.7),
        "kangaroo": (52.0, 3035.0),
        "krull": (1598.0, 2394.6),
        "kung_fu_master": (258.5, 22736.2),
        "montezuma_revenge": (0.0, 4366.7),
        "ms_pacman": (307.3, 15693.4),
        "name_this_game": (2292.3, 4076.2),
        "pong": (-20.7, 9.3),
        "private_eye": (24.9, 69571.3),
        "qbert": (163.9, 13455.0),
        "riverraid": (1338.5, 13513.3),
        "road_runner": (11.5, 7845.0),
        "robotank": (2.2, 11.9),
        "seaquest": (68.4, 20181.8),
        "space_invaders": (148.0, 1652.3),
        "star_gunner": (664.0, 10250.0),
        "tennis": (-23.8, -8.9),
        "time_pilot": (3568.0, 5925.0),
        "tutankham": (11.4, 167.6),
        "up_n_down": (533.4, 9082.0),
        "venture": (0.0, 1187.5),
        "video_pinball": (16256.9, 17297.6),
        "wizard_of_wor": (563.5, 4756.5),
        "zaxxon": (32.5, 9173.3),
    },
)

TABLES: dict[str, ReferenceTable] = {t.name: t for t in (ATARI57, NATURE2015)}
BASELINES = ("random", "human")


def get_table(name: str = "atari57") -> ReferenceTable:
    """A reference table by name (``atari57``, ``nature2015``)."""
    if name not in TABLES:
        raise unknown_name("reference table", name, TABLES)
    return TABLES[name]


def reference(rom: str, table: str = "atari57") -> tuple[float, float] | None:
    """``(random, human)`` scores of an ALE ROM id, or None if the table has no entry."""
    return get_table(table).scores.get(rom)


def normalise(score: float, rom: str, baseline: str, table: str = "atari57") -> float:
    """Human-normalised ``(score - random) / (human - random)`` or random-normalised ``score - random``."""
    if baseline not in BASELINES:
        raise unknown_name("baseline", baseline, BASELINES)
    ref = reference(rom, table)
    if ref is None:
        raise RlmError(f"reference table '{table}' has no scores for Atari game '{rom}'")
    random, human = ref
    if baseline == "random":
        return score - random
    if math.isclose(human, random):
        raise RlmError(f"reference table '{table}': human and random scores of '{rom}' are equal")
    return (score - random) / (human - random)
