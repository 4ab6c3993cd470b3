"""The kernels behind the suite's LIF layers, and the one place that chooses among them.

- dispatch: the registry of LIF backends ('auto', 'reference', the fused kernels, 'spikingjelly')
  and what each stands for on a device;
- reference: the per-step autograd LIF, the ground truth;
- fused_lif, fused_bn_lif: one pass over T for the LIF and for training-mode BatchNorm + LIF
  (torch code, each paired with its native CPU twin as a `Kernel`);
- native_cpu (+ csrc/): the hand-written C++ kernels (LIF, BatchNorm + LIF, spike max-pool),
  compiled on first use;
- lif_triton (+ triton_verification): the Triton LIF kernels for CUDA;
- lif_spikingjelly: spikingjelly 2.0's own LIF kernels as a backend;
- layout: the [T, N] views all kernel families share.

Importing this package imports none of them; modules import what they use.
"""
