"""`suite bench`: throughput, peak memory and achieved GFLOP/s of the backbone, beside a peer.

Each measured configuration (implementation x mode) runs in a fresh subprocess (`worker`), so
that peak memory is that configuration's own and no allocator or compile cache carries over. The
parent measures this machine's matmul rate and the model's FLOPs once and prints the ratios.
"""

from suite.bench.spec import AMP_MODES, IMPLEMENTATIONS, MODES, BenchSpec

__all__ = ["AMP_MODES", "IMPLEMENTATIONS", "MODES", "BenchSpec"]
