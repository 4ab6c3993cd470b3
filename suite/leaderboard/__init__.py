"""Leaderboards built from the finished `suite run` runs in MLflow (see leaderboards/README.md)."""

from suite.leaderboard.generate import GeneratedBoards, generate_leaderboards

__all__ = ["GeneratedBoards", "generate_leaderboards"]
