"""rlmorning: DQN on Atari and pluggable classic components around one Gymnasium training loop."""

from rlmorning.threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch is imported anywhere in rlmorning (see rlmorning.threads)

__version__ = "0.1.0"
