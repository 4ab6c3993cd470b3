"""Which source of the Triton LIF kernels passed their interpreter tests: 'auto' picks those
kernels on CUDA only while suite/models/lif_triton.py is exactly that source.

tests/test_triton_interpreter.py runs every kernel on CPU under TRITON_INTERPRET=1 against the
reference LIF and then checks that VERIFIED_SOURCE_SHA256 is the hash of the file it just ran;
changing the kernels therefore fails CI until the interpreter tests pass on the new source and
its hash is recorded here. A checkout whose kernels differ from the recorded source (edited by
hand, a half-applied patch) still offers them by name, "fused_cuda", but 'auto' uses the
torch.compile'd "fused" kernels on CUDA instead (lif_triton.register).
"""

from __future__ import annotations

import hashlib
from importlib import resources

KERNEL_SOURCE = resources.files("suite.models") / "lif_triton.py"
VERIFIED_SOURCE_SHA256 = "2040b986169be754ddbe6cef0f80d6c569c4532a330988faddf4c879de67cf3b"


def source_sha256() -> str:
    return hashlib.sha256(KERNEL_SOURCE.read_bytes()).hexdigest()


def verified() -> bool:
    return source_sha256() == VERIFIED_SOURCE_SHA256
