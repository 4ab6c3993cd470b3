"""Spikformer Suite: one shared Spikformer backbone, many neuromorphic and static benchmarks."""

__version__ = "0.1.0"
