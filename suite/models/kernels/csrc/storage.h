// Shared by the native CPU kernels: float32 / bfloat16 (uint16_t) / uint8 storage, read and
// written as float, and the static split of work among OpenMP threads.
#pragma once

#include <cstdint>
#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

inline float load(const uint8_t* p, int64_t i) { return static_cast<float>(p[i]); }
inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) {
  return __builtin_bit_cast(float, static_cast<uint32_t>(p[i]) << 16);
}

// f rounded to the nearest bfloat16 (ties to even), still as a float.
inline float round_to_bf16(float f) {
  uint32_t bits = __builtin_bit_cast(uint32_t, f);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  return f != f ? f : __builtin_bit_cast(float, rounded);
}

// The plain LIF in bfloat16 rounds after every operation, as torch's bfloat16 tensor ops (and so
// the reference backend and spikingjelly under autocast) do, so that its spikes are identical.
// BatchNorm + LIF works in float32 throughout, like its torch twin in fused_bn_lif.py.
template <bool kRound>
inline float rounded(float f) {
  if constexpr (kRound) return round_to_bf16(f);
  return f;
}

inline void store(float* p, int64_t i, float f) { p[i] = f; }
inline void store(uint16_t* p, int64_t i, float f) {  // round to nearest even, as torch does
  uint32_t bits = __builtin_bit_cast(uint32_t, f);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  p[i] = static_cast<uint16_t>(f != f ? 0x7FC0u : rounded);
}


// A fresh output buffer of many MB is page-faulted 4 KiB at a time on its first write, which took
// longer than the write itself (13.7 ms vs 2.9 ms for 50 MB here). Transparent huge pages, where
// the system offers them on request (THP "madvise" mode), make that 512 times fewer faults.
// Advisory only: memory already in use is left as it is.
inline void advise_huge_pages(const void* p, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  if (bytes < static_cast<int64_t>(4 * kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Static split of R items among the threads of the enclosing parallel region.
inline void my_share(int64_t R, int64_t* r0, int64_t* r1) {
  const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
  *r0 = R * tid / nt;
  *r1 = R * (tid + 1) / nt;
}


// Per-thread partial sums, laid out `stride` apart: out[j] = sum over threads of partials[t * stride + j].
inline void add_thread_partials(const double* partials, int threads, int64_t stride, int64_t width, double* out) {
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0;
  for (int t = 0; t < threads; ++t)
    for (int64_t j = 0; j < width; ++j) out[j] += partials[t * stride + j];
}

}  // namespace
