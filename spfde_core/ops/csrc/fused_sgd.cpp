// Fused masked SGD update over many float32 tensors in one OpenMP region (docs/fused_update.md).
//
// Per element, exactly the rule of spfde_core/ops/fused_update.py:eager_masked_update (torch.optim.SGD's
// single-tensor step between the maskings; m = mask in {0, 1}, m = 1 for a tensor without a mask):
//   g   = grad * m
//   g   = g + wd * w                                (only when wd != 0)
//   buf = g                     on the first step   (torch: clone(grad))
//   buf = momentum * buf + (1 - dampening) * g      afterwards (only when momentum != 0)
//   d   = nesterov ? g + momentum * buf : buf       (d = g when momentum == 0)
//   w   = w - lr * d
//   w   = w * m
//   buf = buf * m               when the tensor's MASK_BUF flag is set (reset_momentum)
// Tensors are raw storage of equal layout (the Python side checks strides and density). The element
// range over all tensors is split evenly across threads, each thread walking the tensors it covers,
// so a few huge tensors and many small ones balance alike. No PyTorch headers: plain pointers.
// Rounding follows ATen's vectorised CPU kernels: `a.add(b, alpha=s)` is fmadd(b, s, a), a mul_ is
// a rounded product; hence the explicit std::fma calls (and no free a*b+c for the compiler to contract),
// which keeps the fused path bit-identical to the eager one wherever ATen takes its vector path.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace {

enum Flag : int32_t {
  kMask = 1,       // the tensor has a bool mask
  kMomentum = 2,   // momentum != 0 (a buffer pointer is given)
  kFirst = 4,      // first step: the buffer is written, not read
  kNesterov = 8,   // Nesterov momentum
  kMaskBuf = 16,   // multiply the buffer by the mask after the update (reset_momentum)
  kDecay = 32,     // weight decay != 0
};

struct Tensor {
  float* w;
  const float* g;
  float* buf;
  const uint8_t* m;
  float lr, wd, momentum, keep;  // keep = 1 - dampening
};

template <int F>
void update(const Tensor& t, int64_t begin, int64_t end) {
  constexpr bool MASK = F & kMask, MOM = F & kMomentum, FIRST = F & kFirst;
  constexpr bool NEST = F & kNesterov, MASK_BUF = F & kMaskBuf, DECAY = F & kDecay;
  float* __restrict w = t.w;
  const float* __restrict g = t.g;
  float* __restrict buf = t.buf;
  const uint8_t* __restrict m = t.m;
  const float lr = t.lr, wd = t.wd, mu = t.momentum, keep = t.keep;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float mf = MASK ? static_cast<float>(m[i]) : 1.0f;
    const float wi = w[i];
    float gi = MASK ? g[i] * mf : g[i];
    if (DECAY) gi = std::fma(wi, wd, gi);
    float d = gi;
    float b = 0.0f;
    if (MOM) {
      b = FIRST ? gi : std::fma(gi, keep, buf[i] * mu);
      d = NEST ? std::fma(b, mu, gi) : b;
    }
    float wn = std::fma(d, -lr, wi);
    if (MASK) wn = wn * mf;
    w[i] = wn;
    if (MOM) buf[i] = (MASK && MASK_BUF) ? b * mf : b;
  }
}

using Kernel = void (*)(const Tensor&, int64_t, int64_t);

template <int... Fs>
constexpr std::array<Kernel, sizeof...(Fs)> make_table(std::integer_sequence<int, Fs...>) {
  return {&update<Fs>...};
}

constexpr auto kKernels = make_table(std::make_integer_sequence<int, 64>{});

}  // namespace

extern "C" {

// Returns 0 on success, -1 on invalid arguments (a null pointer where a non-empty tensor needs one,
// numel < 0, unknown flags).
// Pointer arrays have `count` entries; buf[i] may be null unless kMomentum, mask[i] unless kMask.
int spfde_fused_masked_sgd_f32(int64_t count, float* const* w, const float* const* g, float* const* buf,
                               const uint8_t* const* mask, const int64_t* numel, const float* lr, const float* wd,
                               const float* momentum, const float* dampening, const int32_t* flags,
                               int32_t num_threads) {
  std::vector<int64_t> start(count + 1, 0);
  std::vector<Tensor> tensors(count);
  for (int64_t i = 0; i < count; ++i) {
    const int32_t f = flags[i];
    if (numel[i] < 0 || f < 0 || f >= 64) return -1;
    const bool missing = w[i] == nullptr || g[i] == nullptr || ((f & kMomentum) && buf[i] == nullptr) ||
                         ((f & kMask) && mask[i] == nullptr);
    if (numel[i] > 0 && missing) return -1;  // an empty tensor may have null storage
    tensors[i] = {w[i], g[i], buf[i], mask[i], lr[i], wd[i], momentum[i], 1.0f - dampening[i]};
    start[i + 1] = start[i] + numel[i];
  }
  const int64_t total = start[count];
  if (total == 0) return 0;
  // At least 32K elements per thread: below that the fork/join costs more than it saves.
  const int64_t max_threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, total / 32768 + 1));
#pragma omp parallel num_threads(static_cast<int>(max_threads))
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    // Boundaries on 16-element (64-byte) multiples, so neighbouring threads do not share cache lines.
    int64_t lo = (total * tid / nt) & ~int64_t(15);
    int64_t hi = tid + 1 == nt ? total : (total * (tid + 1) / nt) & ~int64_t(15);
    int64_t k = std::upper_bound(start.begin(), start.end(), lo) - start.begin() - 1;
    while (lo < hi && k < count) {
      const int64_t end = std::min(hi, start[k + 1]);
      if (end > lo) kKernels[flags[k]](tensors[k], lo - start[k], end - start[k]);
      lo = end;
      ++k;
    }
  }
  return 0;
}

}  // extern "C"
