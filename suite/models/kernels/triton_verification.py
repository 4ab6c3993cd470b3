"""Which source of the Triton LIF kernels passed their interpreter tests: 'auto' picks those
kernels on CUDA only while suite/models/kernels/lif_triton.py is exactly that source.

tests/test_triton_interpreter.py runs every kernel on CPU under TRITON_INTERPRET=1 against the
reference LIF and then checks that VERIFIED_SOURCE_SHA256 is the hash of the file it just ran;
changing the kernels therefore fails CI until the interpreter tests pass on the new source and
its hash is recorded here. A checkout whose kernels differ from the recorded source (edited by
hand, a half-applied patch) still offers them by name, "fused_cuda", but 'auto' uses the
torch.compile'd "fused" kernels on CUDA instead (dispatch.register_triton).
"""

from __future__ import annotations

import hashlib
from importlib import resources

KERNEL_SOURCE = resources.files("suite.models.kernels") / "lif_triton.py"
VERIFIED_SOURCE_SHA256 = "27049d2bcdf71d39f2e9ba31610e71ee4ff91e6e4aad765fcd1237bf30e3b0b2"


def source_sha256() -> str:
    return hashlib.sha256(KERNEL_SOURCE.read_bytes()).hexdigest()


def verified() -> bool:
    return source_sha256() == VERIFIED_SOURCE_SHA256
