"""Plots and videos of what an agent thinks."""
