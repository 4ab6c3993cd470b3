// 2-D max-pooling over channels-last (NHWC) tensors, forward and backward, for the spike maps of
// the patch-splitting stem (suite/models/spike_pool.py).
//
// Why: ATen's max_pool2d computes and saves an int64 index per output element (8 bytes next to
// a 1-byte spike) and its backward zero-fills and scatters through those indices. Here backward
// recomputes each window's maximum from the saved input (spikes as uint8) and routes the gradient
// to the first element of the window, in (kh, kw) order, that attains it: ATen's rule (it only
// moves its argmax on a strictly greater value), so gradients are the same. One difference: a
// window holding NaN routes to its first NaN here, to its last one in ATen.

#include <cstdint>
#include <limits>
#include <omp.h>
#include <vector>

#include "storage.h"

namespace {

struct PoolShape {
  int64_t N, H, W, C, Ho, Wo;
  int64_t k, s, p;
  int64_t row_begin(int64_t o) const { return o * s - p; }

  // visit(ih, iw) for the window of output (oh, ow), in ATen's scan order, inside the image only.
  template <class Visit>
  void for_each_in_window(int64_t oh, int64_t ow, Visit visit) const {
    for (int64_t kh = 0; kh < k; ++kh) {
      const int64_t ih = row_begin(oh) + kh;
      if (ih < 0 || ih >= H) continue;
      for (int64_t kw = 0; kw < k; ++kw) {
        const int64_t iw = row_begin(ow) + kw;
        if (iw >= 0 && iw < W) visit(ih, iw);
      }
    }
  }
};

// m[c] = max over the window of output (oh, ow) of image n; NaN wins, as in ATen.
template <typename X>
void window_max(const X* x, const PoolShape& q, int64_t n, int64_t oh, int64_t ow, float* m) {
  const int64_t C = q.C;
  for (int64_t c = 0; c < C; ++c) m[c] = -std::numeric_limits<float>::infinity();
  q.for_each_in_window(oh, ow, [&](int64_t ih, int64_t iw) {
    // __restrict: uint8 input may alias anything (char type), which would stop vectorisation
    const X* __restrict px = x + ((n * q.H + ih) * q.W + iw) * C;
    float* __restrict mm = m;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float v = load(px, c), cur = mm[c];
      mm[c] = ((v > cur) | (v != v)) ? v : cur;
    }
  });
}

template <typename S>
void maxpool_forward(const S* x, S* out, uint8_t* out_u8, const PoolShape& q, int threads) {
  advise_huge_pages(out, q.N * q.Ho * q.Wo * q.C * static_cast<int64_t>(sizeof(S)));
#pragma omp parallel num_threads(threads)
  {
    int64_t i0, i1;
    my_share(q.N * q.Ho, &i0, &i1);
    std::vector<float> m(q.C);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / q.Ho, oh = i % q.Ho;
      for (int64_t ow = 0; ow < q.Wo; ++ow) {
        window_max(x, q, n, oh, ow, m.data());
        const int64_t base = ((n * q.Ho + oh) * q.Wo + ow) * q.C;
        float* mp = m.data();
#pragma omp simd
        for (int64_t c = 0; c < q.C; ++c) store(out, base + c, mp[c]);
        if (out_u8) {
#pragma omp simd
          for (int64_t c = 0; c < q.C; ++c) out_u8[base + c] = mp[c] != 0.0f ? 1 : 0;
        }
      }
    }
  }
}

// grad_in (same layout as x) from grad_out; images are split among threads, so the overlapping
// windows of one image never race. Sums go through a float buffer, rounded to S once.
template <typename X, typename G>
void maxpool_backward(const X* x, const G* grad_out, G* grad_in, const PoolShape& q, int threads) {
  advise_huge_pages(grad_in, q.N * q.H * q.W * q.C * static_cast<int64_t>(sizeof(G)));
#pragma omp parallel num_threads(threads)
  {
    int64_t n0, n1;
    my_share(q.N, &n0, &n1);
    const int64_t C = q.C, plane = q.H * q.W * C;
    std::vector<float> m(C), taken(C), acc(plane);
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t i = 0; i < plane; ++i) acc[i] = 0.0f;
      for (int64_t oh = 0; oh < q.Ho; ++oh) {
        for (int64_t ow = 0; ow < q.Wo; ++ow) {
          window_max(x, q, n, oh, ow, m.data());
          for (int64_t c = 0; c < C; ++c) taken[c] = 0.0f;
          const G* __restrict g = grad_out + ((n * q.Ho + oh) * q.Wo + ow) * C;
          q.for_each_in_window(oh, ow, [&](int64_t ih, int64_t iw) {
            const X* __restrict px = x + ((n * q.H + ih) * q.W + iw) * C;
            float* __restrict pa = acc.data() + (ih * q.W + iw) * C;
            const float* __restrict mp = m.data();
            float* __restrict tp = taken.data();
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
              const float v = load(px, c), mx = mp[c], gc = load(g, c), was = tp[c], sum = pa[c];
              // bitwise, not short-circuit: with uint8 input gcc turns && / || into branches
              const bool hit = (was == 0.0f) & ((v == mx) | ((v != v) & (mx != mx)));
              pa[c] = hit ? sum + gc : sum;
              tp[c] = hit ? 1.0f : was;
            }
          });
        }
      }
      G* gi = grad_in + n * plane;
      const float* pa = acc.data();
#pragma omp simd
      for (int64_t i = 0; i < plane; ++i) store(gi, i, pa[i]);
    }
  }
}

template <typename X>
void backward_for_grad_dtype(int grad_dtype, const X* x, const void* grad_out, void* grad_in, const PoolShape& q,
                             int threads) {
  if (grad_dtype == 0)
    maxpool_backward(x, static_cast<const float*>(grad_out), static_cast<float*>(grad_in), q, threads);
  else
    maxpool_backward(x, static_cast<const uint16_t*>(grad_out), static_cast<uint16_t*>(grad_in), q, threads);
}

}  // namespace

extern "C" {

// dtype 0 = float32, 1 = bfloat16, 2 = uint8 (input only: the spikes kept for backward).
void suite_maxpool_forward(int dtype, const void* x, void* out, uint8_t* out_u8, int64_t N, int64_t H, int64_t W,
                           int64_t C, int64_t Ho, int64_t Wo, int64_t k, int64_t s, int64_t p, int threads) {
  const PoolShape q{N, H, W, C, Ho, Wo, k, s, p};
  if (dtype == 0)
    maxpool_forward(static_cast<const float*>(x), static_cast<float*>(out), out_u8, q, threads);
  else
    maxpool_forward(static_cast<const uint16_t*>(x), static_cast<uint16_t*>(out), out_u8, q, threads);
}

void suite_maxpool_backward(int x_dtype, const void* x, int grad_dtype, const void* grad_out, void* grad_in,
                            int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo, int64_t k, int64_t s,
                            int64_t p, int threads) {
  const PoolShape q{N, H, W, C, Ho, Wo, k, s, p};
  if (x_dtype == 0)
    backward_for_grad_dtype(grad_dtype, static_cast<const float*>(x), grad_out, grad_in, q, threads);
  else if (x_dtype == 1)
    backward_for_grad_dtype(grad_dtype, static_cast<const uint16_t*>(x), grad_out, grad_in, q, threads);
  else
    backward_for_grad_dtype(grad_dtype, static_cast<const uint8_t*>(x), grad_out, grad_in, q, threads);
}

}  // extern "C"
