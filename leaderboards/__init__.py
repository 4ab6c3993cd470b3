"""Data shipped with the suite: `references.csv`, the published results (see suite.leaderboard.references).

A package (rather than a plain folder) so that the file is installed with the wheel and found with
importlib.resources wherever the suite runs from.
"""
