"""Native CPU kernels: the fused LIF and BatchNorm + LIF (csrc/lif_cpu.cpp) and the spike max-pool
(csrc/maxpool_cpu.cpp, used by suite.models.spike_pool), built into one library.

The C++ files ship inside the package (read through importlib.resources, so an installed wheel
builds exactly what a checkout does) and are compiled on first use with the system C++ compiler
(about a second) into a per-machine cache and called through ctypes on the tensors' memory: no torch
headers, no Python extension build. Each `native_*` LIF function here takes and returns what its torch twin in
fused_lif.py / fused_bn_lif.py does (same name without `native_`; the pairs are declared there as
`Kernel`s), so `KERNELS.run` can swap one for the other. float32 and bfloat16 tensors are handled natively; anything else, or a machine
without a compiler, uses the reference-shaped torch code (compiled by inductor where it pays).

Environment: SUITE_NATIVE_KERNELS=0 turns the native kernels off; SUITE_KERNEL_CACHE sets the
cache folder (default ~/.cache/spikformer-suite/kernels); CXX names the compiler (default g++).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from importlib import resources
from pathlib import Path

import torch

from suite.models import spike_storage

log = logging.getLogger(__name__)

CSRC = resources.files("suite.models.kernels") / "csrc"
SOURCES = [CSRC / "lif_cpu.cpp", CSRC / "maxpool_cpu.cpp"]
HEADERS = [CSRC / "storage.h"]  # included by the sources: part of the build key and of the build folder
ABI_VERSION = 4
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
# -ffp-contract=off: no fused multiply-adds, so every rounding matches the reference's separate ops.
FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-std=c++17", "-fPIC", "-shared"]
if platform.machine() in ("x86_64", "AMD64"):
    FLAGS.append("-mprefer-vector-width=512")  # use all of AVX-512 where the CPU has it

_c_ptr = ctypes.c_void_p
_i64, _f32, _int = ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "suite_lif_abi_version": ([], _int),
    "suite_lif_forward": ([_int, _c_ptr, _c_ptr, _c_ptr, _c_ptr, _c_ptr, _i64, _i64, _i64, _f32, _f32, _int], None),
    "suite_column_moments": ([_int, _c_ptr, _c_ptr, _c_ptr, _c_ptr, _i64, _i64, _int], None),
    "suite_lif_backward": ([_int, _int] + [_c_ptr] * 9 + [_i64, _i64, _i64, _f32, _f32, _f32, _int], None),
    "suite_batchnorm_input_grad": ([_int] + [_c_ptr] * 8 + [_i64, _i64, _int], None),
    "suite_maxpool_forward": ([_int, _c_ptr, _c_ptr, _c_ptr] + [_i64] * 9 + [_int], None),
    "suite_maxpool_backward": ([_int, _c_ptr, _int, _c_ptr, _c_ptr] + [_i64] * 9 + [_int], None),
}


class NativeKernelError(RuntimeError):
    """The native kernels could not be built or loaded (the caller falls back to torch code)."""


def enabled() -> bool:
    return os.environ.get("SUITE_NATIVE_KERNELS", "1").lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    if os.environ.get("SUITE_KERNEL_CACHE"):
        return Path(os.environ["SUITE_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "spikformer-suite" / "kernels"


def _cpu_signature() -> str:
    """What -march=native depends on: a library built for one CPU may not run on another (a cache
    shared over NFS between different nodes must not hand out the wrong build)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise NativeKernelError(f"no C++ compiler {cxx!r} on PATH (install g++ or set CXX)")
    return cxx


def source_texts() -> dict[str, str]:
    """File name -> text of every source and header, as installed."""
    texts = {}
    for source in (*SOURCES, *HEADERS):
        try:
            texts[source.name] = source.read_text()
        except OSError as err:
            raise NativeKernelError(
                f"kernel file {source.name} is missing from the installed suite ({err}); "
                "reinstall spikformer-suite (its package data lacks suite/models/kernels/csrc files)"
            ) from err
    return texts


def library_path(texts: dict[str, str] | None = None) -> Path:
    """Where the build for this source, compiler, flags and CPU lives (built if missing)."""
    cxx = _compiler()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    texts = source_texts() if texts is None else texts
    key = hashlib.sha256("\n".join([*texts.values(), cxx, version, " ".join(FLAGS), _cpu_signature()]).encode()).hexdigest()[:16]
    return cache_dir() / f"native_cpu-{key}.so"


def build(target: Path, texts: dict[str, str] | None = None) -> None:
    """Compile SOURCES into `target`, atomically: concurrent processes (Ray workers) may race.

    The texts are written into a private folder first, so the compiler sees exactly what the build
    key was computed from, whether the package is a checkout, an installed wheel or a zip."""
    texts = source_texts() if texts is None else texts
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    with tempfile.TemporaryDirectory(prefix="native_cpu-src-") as folder:
        for name, text in texts.items():
            Path(folder, name).write_text(text)
        cmd = [_compiler(), *FLAGS, *(str(Path(folder, s.name)) for s in SOURCES), "-o", tmp]
        log.info("compiling the native CPU kernels: %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        os.unlink(tmp)
        raise NativeKernelError(f"compiling {', '.join(s.name for s in SOURCES)} failed ({' '.join(cmd)}):\n{done.stderr.strip()[-2000:]}")
    os.replace(tmp, target)


def _load() -> tuple[ctypes.CDLL, Path]:
    texts = source_texts()
    path = library_path(texts)
    if not path.exists():
        build(path, texts)
    lib = ctypes.CDLL(str(path))  # torch is imported: its libgomp serves the library's OpenMP
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    if lib.suite_lif_abi_version() != ABI_VERSION:
        raise NativeKernelError(f"{path} has ABI {lib.suite_lif_abi_version()}, expected {ABI_VERSION}; delete it")
    return lib, path


class _Library:
    """The compiled library, loaded once per process on first use; None after a failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._failed = False
        self.path: Path | None = None  # the loaded build
        self.error: str | None = None  # why it could not be built or loaded

    def get(self) -> ctypes.CDLL | None:
        if self._lib is not None or self._failed or not enabled():
            return self._lib
        with self._lock:
            if self._lib is None and not self._failed:
                try:
                    self._lib, self.path = _load()
                except (NativeKernelError, OSError) as err:
                    self._failed = True
                    self.error = str(err).splitlines()[0]
                    log.warning("native CPU kernels unavailable (%s); using torch kernels instead", err)
        return self._lib


LIBRARY = _Library()


def available() -> bool:
    return LIBRARY.get() is not None


def status() -> str:
    """Whether the native kernels run in this process: the loaded build, or why not."""
    if not enabled():
        return "native kernels off (SUITE_NATIVE_KERNELS)"
    if LIBRARY.get() is None:
        return f"native kernels unavailable: {LIBRARY.error}"
    return f"native C++ kernels {LIBRARY.path}"


def supports(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in DTYPES and available()


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _threads() -> int:
    return torch.get_num_threads()


def _forward(z: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None, R: int, J: int,
             tau: float, v_threshold: float) -> torch.Tensor:
    spikes = torch.empty_like(z)
    # under compact_saved_spikes the same pass writes the uint8 copy that backward will keep
    compact = torch.empty_like(z, dtype=torch.uint8) if spike_storage.wants_compact(z) else None
    LIBRARY.get().suite_lif_forward(
        DTYPES[z.dtype], _ptr(z), _ptr(spikes), _ptr(compact), _ptr(scale), _ptr(shift),
        z.shape[0], R, J, tau, v_threshold, _threads(),
    )
    return spike_storage.mark_spikes(spikes, compact) if compact is not None else spikes


def _backward(pass_: int, grad: torch.Tensor, z: torch.Tensor, grad_z: torch.Tensor, R: int, J: int, tau: float,
              v_threshold: float, alpha: float, sums=(None, None), affine=(None, None), stats=(None, None)) -> None:
    LIBRARY.get().suite_lif_backward(
        DTYPES[z.dtype], pass_, _ptr(grad), _ptr(z), _ptr(grad_z), *map(_ptr, sums), *map(_ptr, affine),
        *map(_ptr, stats), z.shape[0], R, J, tau, v_threshold, alpha, _threads(),
    )


def native_lif_forward_steps(x: torch.Tensor, tau: float, v_threshold: float) -> torch.Tensor:
    """x [T, N] -> spikes [T, N] in x's dtype."""
    x = x.contiguous()
    return _forward(x, None, None, 1, x[0].numel(), tau, v_threshold)


def native_lif_backward_steps(grad_spikes, x, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    """dL/dx [T, N] from dL/ds [T, N] and the input x [T, N]."""
    x = x.contiguous()
    grad = grad_spikes.to(x.dtype).contiguous()
    grad_x = torch.empty_like(x)
    _backward(0, grad, x, grad_x, 1, x[0].numel(), tau, v_threshold, alpha)
    return grad_x


def native_affine_lif_forward(z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, tau: float,
                              v_threshold: float) -> torch.Tensor:
    """Spikes of the LIF on z * scale + shift (per last-dim feature, float32 arithmetic), in
    one pass: inference's Linear bias and eval-mode BatchNorm without a pass of their own."""
    z = z.contiguous()
    D = z.shape[-1]
    spikes = _forward(z, _f32(scale), _f32(shift), z[0].numel() // D, D, tau, v_threshold)
    return spikes


def _per_column(per_channel: torch.Tensor, K: int) -> torch.Tensor:
    """A [C] vector repeated for the K columns of each channel in a [C, K] row."""
    return per_channel.contiguous() if K == 1 else per_channel.repeat_interleave(K)


def _affine(weight, bias, mean, invstd):
    scale = invstd * weight
    return scale, bias - mean * scale  # the reference's fp32 arithmetic (fused_bn_lif._affine)


def native_bn_lif_forward_steps(z, weight, bias, eps: float, tau: float, v_threshold: float):
    """z [T, P, C, K] -> (spikes in z's dtype, batch mean, biased batch var), statistics in fp32."""
    T, P, C, K = z.shape
    z = z.contiguous()
    J = C * K
    pivot = z[0, 0, :, 0].float()  # one value per channel
    column_pivot = _per_column(pivot, K)
    sums = torch.empty(2, J, dtype=torch.float64)
    LIBRARY.get().suite_column_moments(
        DTYPES[z.dtype], _ptr(z), _ptr(column_pivot), _ptr(sums[0]), _ptr(sums[1]), T * P, J, _threads()
    )
    n = T * P * K
    d1, d2 = (sums.view(2, C, K).sum(2) / n).unbind(0)
    mean = (pivot.double() + d1).float()
    var = (d2 - d1 * d1).clamp_min(0).float()
    scale, shift = _affine(_f32(weight), _f32(bias), mean, torch.rsqrt(var + eps))
    spikes = _forward(z, _per_column(scale, K), _per_column(shift, K), P, J, tau, v_threshold)
    return spikes, mean, var


def native_bn_lif_backward_steps(grad_spikes, z, mean, invstd, weight, bias, tau: float, v_threshold: float,
                                 alpha: float, channel_sums: bool = False):
    """(dL/dz, dL/dgamma, dL/dbeta, channel sums of dL/dz or None) from dL/ds, z [T, P, C, K] and
    the forward's statistics."""
    T, P, C, K = z.shape
    z = z.contiguous()
    grad = grad_spikes.to(z.dtype).contiguous()
    J = C * K
    weight, mean, invstd = _f32(weight), _f32(mean), _f32(invstd)
    scale, shift = _affine(weight, _f32(bias), mean, invstd)
    affine = (_per_column(scale, K), _per_column(shift, K))
    stats = (_per_column(mean, K), _per_column(invstd, K))
    sums = torch.empty(2, J, dtype=torch.float64)
    grad_z = torch.empty_like(z)  # first dL/dy, then, in place, dL/dz
    _backward(1, grad, z, grad_z, P, J, tau, v_threshold, alpha, sums=(sums[0], sums[1]), affine=affine, stats=stats)
    grad_bias, grad_weight = sums.view(2, C, K).sum(2).float().unbind(0)
    n = T * P * K
    coefficients = [_per_column(c, K) for c in (grad_bias / n, grad_weight / n, scale)]
    column_sums = torch.empty(J, dtype=torch.float64) if channel_sums else None
    LIBRARY.get().suite_batchnorm_input_grad(
        DTYPES[z.dtype], _ptr(grad_z), _ptr(z), *map(_ptr, stats), *map(_ptr, coefficients), _ptr(column_sums),
        T * P, J, _threads(),
    )
    sums = column_sums.view(C, K).sum(1).float() if channel_sums else None
    return grad_z, grad_weight, grad_bias, sums


_STORAGE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.uint8: 2}


def maxpool_forward(x: torch.Tensor, out: torch.Tensor, compact: torch.Tensor | None, geometry: tuple) -> None:
    """Writes the window maxima of channels-last x into out (and its uint8 copy `compact`, if any);
    geometry = (N, H, W, C, Ho, Wo, kernel, stride, padding)."""
    LIBRARY.get().suite_maxpool_forward(_STORAGE_CODES[x.dtype], _ptr(x), _ptr(out), _ptr(compact), *geometry, _threads())


def maxpool_backward(kept: torch.Tensor, grad_out: torch.Tensor, grad_in: torch.Tensor, geometry: tuple) -> None:
    """Routes each window's gradient to its first maximum in `kept` (the input, or its uint8 copy)."""
    LIBRARY.get().suite_maxpool_backward(
        _STORAGE_CODES[kept.dtype], _ptr(kept), _STORAGE_CODES[grad_out.dtype], _ptr(grad_out), _ptr(grad_in),
        *geometry, _threads(),
    )
