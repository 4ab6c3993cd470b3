// Multi-step LIF kernels for CPU tensors: plain LIF and training-mode BatchNorm + LIF, forward
// and backward, for float32 and bfloat16 storage (arithmetic always in float32, sums in double).
//
// Why hand-written: these layers are memory-bound elementwise passes over T time steps, and
// torch.compile's code for them (a Welford reduction over a strided column, T unrolled with a
// dynamic width) ran at 3-6 GB/s on a machine that copies at 24 GB/s. Here every pass streams
// rows of a [T, R, J] array (time outermost, J contiguous columns) in column tiles that stay in
// L1, and the inner loops are plain `omp simd` loops that the compiler vectorises.
//
// The arithmetic is the reference's, operation by operation (compiled with -ffp-contract=off so
// no multiply-add is fused): y = z * scale + shift; h = v + (y - v) / tau; spike = h >= v_th;
// v = spike ? 0 : h. Backward (BPTT with detach_reset; see suite/models/kernels/fused_lif.py):
//   gh = g * (alpha * sg * (1 - sg)) + (spike ? 0 : gv);  dy = gh / tau;  gv = gh - dy
// with sg = sigmoid(alpha * (h - v_th)), evaluated with a polynomial exp (about 1 ulp).
//
// Threads come from the caller (torch.get_num_threads()); the library links libgomp, which
// resolves to the copy torch has already loaded, so both share one OpenMP runtime.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <omp.h>
#include <type_traits>
#include <vector>

#include "storage.h"

namespace {

constexpr int64_t kTile = 128;  // columns per tile: T * kTile floats of h stay in L1

// exp(x) by range reduction to [-ln2/2, ln2/2] and a degree-7 polynomial (Cephes' expf
// coefficients); branch-free so that simd loops vectorise it.
inline float exp_approx(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  // k = round(x / ln2) by the 1.5 * 2^23 trick: floorf would not vectorise without -ffast-math
  float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * __builtin_bit_cast(float, (static_cast<int32_t>(k) + 127) << 23);  // p * 2^k
}

inline float surrogate_grad(float h, float v_th, float alpha) {
  float sg = 1.0f / (1.0f + exp_approx(-(alpha * (h - v_th))));
  return alpha * sg * (1.0f - sg);
}

// x / tau. When tau is a power of two, 1/tau is exact and x * (1/tau) rounds to the same float as
// x / tau, at a fraction of a division's cost (divisions dominated the backward pass).
struct DivideByTau {
  float tau;
  float operator()(float x) const { return x / tau; }
};
struct MultiplyByExactInverse {
  float inverse;
  float operator()(float x) const { return x * inverse; }
};

inline bool has_exact_inverse(float tau) {
  int exponent;
  return tau > 0.0f && std::isfinite(tau) && std::frexp(tau, &exponent) == 0.5f;
}

// Calls body(div) with the cheapest exact form of x / tau.
template <class Body>
void with_divider(float tau, Body body) {
  if (has_exact_inverse(tau))
    body(MultiplyByExactInverse{1.0f / tau});
  else
    body(DivideByTau{tau});
}

struct Affine {  // per-column y = z * scale + shift; absent (nullptr) for the plain LIF
  const float* scale;
  const float* shift;
};

// Work items are (row, column tile) pairs, numbered row-major, so that one long row (R = 1)
// splits among threads as well as many short ones.
inline int64_t tiles_per_row(int64_t J) { return (J + kTile - 1) / kTile; }

// Spikes for work items [w0, w1) of a [T, R, J] input.
template <typename S, bool kAffine, bool kCompact, class Div>
void forward_items(const S* z, S* spikes, uint8_t* spikes_u8, Affine aff, int64_t T, int64_t R, int64_t J,
                   int64_t w0, int64_t w1, Div div_tau, float v_th) {
  constexpr bool kRound = !kAffine && std::is_same_v<S, uint16_t>;
  float v[kTile];
  const int64_t tiles = tiles_per_row(J);
  for (int64_t w = w0; w < w1; ++w) {
    {
      const int64_t r = w / tiles, j0 = (w % tiles) * kTile;
      const int64_t n = J - j0 < kTile ? J - j0 : kTile;
      for (int64_t j = 0; j < n; ++j) v[j] = 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t base = (t * R + r) * J + j0;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          float y = load(z, base + j);
          if constexpr (kAffine) y = y * aff.scale[j0 + j] + aff.shift[j0 + j];
          float h = rounded<kRound>(v[j] + rounded<kRound>(div_tau(rounded<kRound>(y - v[j]))));
          bool fired = h >= v_th;
          v[j] = fired ? 0.0f : h;
          store(spikes, base + j, fired ? 1.0f : 0.0f);
          if constexpr (kCompact) spikes_u8[base + j] = fired ? 1 : 0;
        }
      }
    }
  }
}

// kPlainGrad: the LIF's input gradient. kReduce: the gradient dy of BatchNorm's output, plus the
// per-column sums of dy and dy * x_hat that BatchNorm's input gradient needs. Both write their
// result into grad_z; batchnorm_input_grad then turns dy into dL/dz in place, a streaming pass,
// instead of recomputing the BPTT (the exp and divisions made that pass compute-bound).
enum class Pass { kPlainGrad, kReduce };

struct BackwardArgs {
  Affine aff;
  const float* mean;  // kReduce: per-column batch mean and 1/std
  const float* invstd;
  float tau, v_th, alpha;
};

// One backward pass over work items [w0, w1). h is recomputed from z, then BPTT runs from T-1 to 0.
template <typename S, Pass P, class Div>
void backward_items(const S* grad, const S* z, S* grad_z, double* sum_dy, double* sum_dy_xhat,
                    const BackwardArgs& a, Div div_tau, int64_t T, int64_t R, int64_t J, int64_t w0, int64_t w1,
                    float* hbuf) {
  // Locals, not a's members: stores through grad_z could alias a float member and would force
  // a reload per element, which stops vectorisation.
  constexpr bool kRound = P == Pass::kPlainGrad && std::is_same_v<S, uint16_t>;  // h as forward had it
  const float v_th = a.v_th, alpha = a.alpha;
  const float *scale = a.aff.scale, *shift = a.aff.shift, *mean = a.mean, *invstd = a.invstd;
  float v[kTile], gv[kTile], part_dy[kTile], part_dy_xhat[kTile];  // float sums over T, then into double
  const int64_t tiles = tiles_per_row(J);
  for (int64_t w = w0; w < w1; ++w) {
    {
      const int64_t r = w / tiles, j0 = (w % tiles) * kTile;
      const int64_t n = J - j0 < kTile ? J - j0 : kTile;
      for (int64_t j = 0; j < n; ++j) v[j] = gv[j] = part_dy[j] = part_dy_xhat[j] = 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t base = (t * R + r) * J + j0;
        float* h = hbuf + t * kTile;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          float y = load(z, base + j);
          if constexpr (P != Pass::kPlainGrad) y = y * scale[j0 + j] + shift[j0 + j];
          float ht = rounded<kRound>(v[j] + rounded<kRound>(div_tau(rounded<kRound>(y - v[j]))));
          h[j] = ht;
          v[j] = ht >= v_th ? 0.0f : ht;
        }
      }
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t base = (t * R + r) * J + j0;
        const float* h = hbuf + t * kTile;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const float hj = h[j], carried = gv[j];  // loaded unconditionally: selects vectorise, branches do not
          float gh = load(grad, base + j) * surrogate_grad(hj, v_th, alpha) + (hj >= v_th ? 0.0f : carried);
          float dy = div_tau(gh);
          gv[j] = gh - dy;
          store(grad_z, base + j, dy);  // bfloat16 storage rounds dy once more than the torch twin does
          if constexpr (P == Pass::kReduce) {  // sums of the unrounded dy: exact weight and bias gradients
            const int64_t c = j0 + j;
            float x_hat = (load(z, base + j) - mean[c]) * invstd[c];
            part_dy[j] += dy;
            part_dy_xhat[j] += dy * x_hat;
          }
        }
      }
      if constexpr (P == Pass::kReduce) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          sum_dy[j0 + j] += part_dy[j];
          sum_dy_xhat[j0 + j] += part_dy_xhat[j];
        }
      }
    }
  }
}


template <typename S>
void forward(const S* z, S* spikes, uint8_t* spikes_u8, const float* scale, const float* shift, int64_t T,
             int64_t R, int64_t J, float tau, float v_th, int threads) {
  advise_huge_pages(spikes, T * R * J * static_cast<int64_t>(sizeof(S)));
  if (spikes_u8) advise_huge_pages(spikes_u8, T * R * J);
  with_divider(tau, [&](auto div) {
#pragma omp parallel num_threads(threads)
    {
      int64_t w0, w1;
      my_share(R * tiles_per_row(J), &w0, &w1);
      const Affine aff{scale, shift};
      if (scale && spikes_u8)
        forward_items<S, true, true>(z, spikes, spikes_u8, aff, T, R, J, w0, w1, div, v_th);
      else if (scale)
        forward_items<S, true, false>(z, spikes, spikes_u8, aff, T, R, J, w0, w1, div, v_th);
      else if (spikes_u8)
        forward_items<S, false, true>(z, spikes, spikes_u8, aff, T, R, J, w0, w1, div, v_th);
      else
        forward_items<S, false, false>(z, spikes, spikes_u8, aff, T, R, J, w0, w1, div, v_th);
    }
  });
}

// Per-column sums of (z - pivot) and (z - pivot)^2 over all T*R rows, in double. The pivot (a
// value of the column) keeps the variance E[d^2] - E[d]^2 free of cancellation.
template <typename S>
void column_moments(const S* z, const float* pivot, double* sum, double* sum_sq, int64_t rows, int64_t J,
                    int threads) {
  std::vector<double> acc(static_cast<size_t>(threads) * 2 * J, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int64_t r0, r1;
    my_share(rows, &r0, &r1);
    double* s1 = acc.data() + static_cast<int64_t>(omp_get_thread_num()) * 2 * J;
    double* s2 = s1 + J;
    std::vector<float> p1(J), p2(J);  // float sums over a few rows, flushed into double
    constexpr int64_t kRowsPerFlush = 8;
    for (int64_t rb = r0; rb < r1; rb += kRowsPerFlush) {
      const int64_t re = rb + kRowsPerFlush < r1 ? rb + kRowsPerFlush : r1;
      float* q1 = p1.data();
      float* q2 = p2.data();
      for (int64_t j = 0; j < J; ++j) q1[j] = q2[j] = 0.0f;
      for (int64_t r = rb; r < re; ++r) {
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          float d = load(z, r * J + j) - pivot[j];
          q1[j] += d;
          q2[j] += d * d;
        }
      }
#pragma omp simd
      for (int64_t j = 0; j < J; ++j) {
        s1[j] += q1[j];
        s2[j] += q2[j];
      }
    }
  }
  add_thread_partials(acc.data(), threads, 2 * J, J, sum);
  add_thread_partials(acc.data() + J, threads, 2 * J, J, sum_sq);
}

template <typename S, Pass P>
void backward(const S* grad, const S* z, S* grad_z, double* sum_dy, double* sum_dy_xhat, const BackwardArgs& a,
              int64_t T, int64_t R, int64_t J, int threads) {
  const bool reduce = P == Pass::kReduce;
  advise_huge_pages(grad_z, T * R * J * static_cast<int64_t>(sizeof(S)));
  std::vector<double> acc(reduce ? static_cast<size_t>(threads) * 2 * J : 0, 0.0);
  with_divider(a.tau, [&](auto div) {
#pragma omp parallel num_threads(threads)
    {
      int64_t w0, w1;
      my_share(R * tiles_per_row(J), &w0, &w1);
      std::vector<float> hbuf(static_cast<size_t>(T) * kTile);
      double* s1 = reduce ? acc.data() + static_cast<int64_t>(omp_get_thread_num()) * 2 * J : nullptr;
      backward_items<S, P>(grad, z, grad_z, s1, reduce ? s1 + J : nullptr, a, div, T, R, J, w0, w1, hbuf.data());
    }
  });
  if (reduce) {
    add_thread_partials(acc.data(), threads, 2 * J, J, sum_dy);
    add_thread_partials(acc.data() + J, threads, 2 * J, J, sum_dy_xhat);
  }
}

// grad_z holds dy on entry and dL/dz on return: (dy - sum(dy)/n - x_hat * sum(dy x_hat)/n) * gamma/std.
// With column_sums, also the per-column sums of dL/dz (the gradient of a bias added before the BN).
template <typename S>
void batchnorm_input_grad(S* grad_z, const S* z, const float* mean, const float* invstd, const float* c_bias,
                          const float* c_weight, const float* c_scale, double* column_sums, int64_t rows, int64_t J,
                          int threads) {
  std::vector<double> acc(column_sums ? static_cast<size_t>(threads) * J : 0, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int64_t r0, r1;
    my_share(rows, &r0, &r1);
    double* sums = column_sums ? acc.data() + static_cast<int64_t>(omp_get_thread_num()) * J : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      if (sums) {
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          const float x_hat = (load(z, r * J + j) - mean[j]) * invstd[j];
          const float g = rounded<std::is_same_v<S, uint16_t>>(
              (load(grad_z, r * J + j) - c_bias[j] - x_hat * c_weight[j]) * c_scale[j]);
          store(grad_z, r * J + j, g);
          sums[j] += g;
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          const float x_hat = (load(z, r * J + j) - mean[j]) * invstd[j];
          store(grad_z, r * J + j, (load(grad_z, r * J + j) - c_bias[j] - x_hat * c_weight[j]) * c_scale[j]);
        }
      }
    }
  }
  if (column_sums) add_thread_partials(acc.data(), threads, J, J, column_sums);
}

}  // namespace

// The C ABI that suite/models/kernels/native_cpu.py calls through ctypes; dtype 0 = float32, 1 = bfloat16
// (tensors passed as raw pointers to contiguous [T, R, J] storage).
extern "C" {

int suite_lif_abi_version() { return 4; }

void suite_lif_forward(int dtype, const void* z, void* spikes, uint8_t* spikes_u8, const float* scale,
                       const float* shift, int64_t T, int64_t R, int64_t J, float tau, float v_th, int threads) {
  if (dtype == 0)
    forward(static_cast<const float*>(z), static_cast<float*>(spikes), spikes_u8, scale, shift, T, R, J, tau, v_th,
            threads);
  else
    forward(static_cast<const uint16_t*>(z), static_cast<uint16_t*>(spikes), spikes_u8, scale, shift, T, R, J, tau,
            v_th, threads);
}

void suite_column_moments(int dtype, const void* z, const float* pivot, double* sum, double* sum_sq, int64_t rows,
                          int64_t J, int threads) {
  if (dtype == 0)
    column_moments(static_cast<const float*>(z), pivot, sum, sum_sq, rows, J, threads);
  else
    column_moments(static_cast<const uint16_t*>(z), pivot, sum, sum_sq, rows, J, threads);
}

// pass 0: plain LIF input gradient into grad_z; 1: BatchNorm's output gradient dy into grad_z and
// its sums into sum_dy / sum_dy_xhat (scale, shift, mean, invstd per column).
void suite_lif_backward(int dtype, int pass, const void* grad, const void* z, void* grad_z, double* sum_dy,
                        double* sum_dy_xhat, const float* scale, const float* shift, const float* mean,
                        const float* invstd, int64_t T, int64_t R, int64_t J, float tau, float v_th, float alpha,
                        int threads) {
  const BackwardArgs a{{scale, shift}, mean, invstd, tau, v_th, alpha};
#define SUITE_LIF_BACKWARD(S)                                                                                 \
  do {                                                                                                         \
    const S* g = static_cast<const S*>(grad);                                                                  \
    const S* x = static_cast<const S*>(z);                                                                     \
    S* gz = static_cast<S*>(grad_z);                                                                           \
    if (pass == 0) backward<S, Pass::kPlainGrad>(g, x, gz, sum_dy, sum_dy_xhat, a, T, R, J, threads);          \
    if (pass == 1) backward<S, Pass::kReduce>(g, x, gz, sum_dy, sum_dy_xhat, a, T, R, J, threads);             \
  } while (0)
  if (dtype == 0)
    SUITE_LIF_BACKWARD(float);
  else
    SUITE_LIF_BACKWARD(uint16_t);
#undef SUITE_LIF_BACKWARD
}

void suite_batchnorm_input_grad(int dtype, void* grad_z, const void* z, const float* mean, const float* invstd,
                                const float* c_bias, const float* c_weight, const float* c_scale, double* column_sums,
                                int64_t rows, int64_t J, int threads) {
  if (dtype == 0)
    batchnorm_input_grad(static_cast<float*>(grad_z), static_cast<const float*>(z), mean, invstd, c_bias, c_weight,
                         c_scale, column_sums, rows, J, threads);
  else
    batchnorm_input_grad(static_cast<uint16_t*>(grad_z), static_cast<const uint16_t*>(z), mean, invstd, c_bias,
                         c_weight, c_scale, column_sums, rows, J, threads);
}

}  // extern "C"
