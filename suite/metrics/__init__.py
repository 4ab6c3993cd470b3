"""SNN metrics: per-layer firing rates, synaptic operations, MACs and theoretical energy."""

from suite.metrics.energy import E_AC_PJ, E_MAC_PJ, energy_mj
from suite.metrics.monitor import SNNMonitor

__all__ = ["E_AC_PJ", "E_MAC_PJ", "SNNMonitor", "energy_mj"]
