"""Theoretical energy in the convention of the Spikformer paper (Zhou et al., ICLR 2023, appendix).

    E = E_MAC * MACs(real-valued-input layers) + E_AC * SOPs(spike-input layers)

with the 45 nm figures of Horowitz (ISSCC 2014) for 32-bit floating point: a multiply-accumulate
costs 4.6 pJ, an accumulate 0.9 pJ. BatchNorm is folded into the preceding layer and costs nothing;
LIF updates, residual additions, pooling and the attention scale are not counted, as in the paper.
"""

from __future__ import annotations

E_MAC_PJ = 4.6  # pJ per 32-bit float multiply-accumulate (45 nm)
E_AC_PJ = 0.9  # pJ per 32-bit float accumulate (45 nm)
PJ_PER_MJ = 1e9  # 1 mJ = 1e9 pJ


def energy_mj(macs: float, sops: float) -> float:
    """Energy in millijoules of `macs` multiply-accumulates and `sops` synaptic (accumulate) ops."""
    if macs < 0 or sops < 0:
        raise ValueError(f"operation counts must be non-negative, got macs={macs}, sops={sops}")
    return (E_MAC_PJ * macs + E_AC_PJ * sops) / PJ_PER_MJ
