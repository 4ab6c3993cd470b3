"""Run in a subprocess by test_triton_interpreter.py with TRITON_INTERPRET=1 in its environment
(set before triton is imported, which is why it is a separate process): every Triton kernel of
the suite on CPU tensors through Triton's interpreter. Prints one JSON object on stdout."""

from __future__ import annotations

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
assert "triton" not in sys.modules

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from suite.models.kernels import lif_triton  # noqa: E402
from suite.models.lif_equivalence import check_backend  # noqa: E402


@triton.jit
def _offsets_probe(out_ptr, pid, t, N, BLOCK: tl.constexpr):
    """Stores the offsets the LIF kernels would use for program `pid` at step t (no other memory)."""
    offs = lif_triton._step_offsets(t, N, lif_triton._lanes(pid, BLOCK))
    tl.store(out_ptr + tl.arange(0, BLOCK), offs)


def offsets(pid: int, t: int, n: int, block: int = 4) -> list[int]:
    out = torch.empty(block, dtype=torch.int64)
    _offsets_probe[(1,)](out, pid, t, n, BLOCK=block)
    return out.tolist()


def main() -> None:
    report = {"interpreted": type(lif_triton._lif_forward_kernel).__name__}
    # T*N > 2^31 with N < 2^31 (N itself is passed as int32): step 3 of a [4, 2^30] layer
    report["step_offsets"] = {"pid": 0, "t": 3, "N": 2**30, "got": offsets(0, 3, 2**30)}
    # a lane index past 2^31: program 2^21 + 5 of 1024-wide blocks on a 2^32-neuron layer, step 0
    report["lane_offsets"] = {"pid": 2**21 + 5, "t": 0, "N": 2**32, "block": 1024,
                              "got": offsets(2**21 + 5, 0, 2**32, block=1024)[:4]}
    report["cases"] = check_backend(lif_triton.lif_triton, "cpu")
    channels_last = torch.randn(4 * 2, 5, 3, 3).contiguous(memory_format=torch.channels_last).view(4, 2, 5, 3, 3)
    spikes = lif_triton.lif_triton(channels_last, 2.0, 1.0, 4.0)
    from suite.models.kernels.reference import lif_reference

    report["channels_last"] = {
        "stride_kept": spikes.stride() == channels_last.stride(),
        "equal": bool(torch.equal(spikes, lif_reference(channels_last, 2.0, 1.0, 4.0))),
    }
    saved = []
    x = torch.randn(4, 2100, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        lif_triton.lif_triton(x, 2.0, 1.0, 4.0)
    report["saved_bytes"] = {"input": x.numel() * x.element_size(), "saved": sum(saved)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
