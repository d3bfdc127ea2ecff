"""rlmorning: DQN on Atari and pluggable classic components around one Gymnasium training loop."""

__version__ = "0.1.0"
