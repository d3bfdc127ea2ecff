"""rlmorning: DQN on Atari and pluggable classic components around one Gymnasium training loop."""

from rlmorning.threads import prefer_short_spin

prefer_short_spin()  # before torch is imported anywhere in rlmorning (see rlmorning.threads)

from rlmorning.gym_ids import register_gym_ids  # noqa: E402  (imports only gymnasium)

register_gym_ids()  # rlmorning/Copy-v0 ... work in gym.make after `import rlmorning`

__version__ = "0.1.0"
