// Sparse convolution kernels for training on CPU (AVX-512 + OpenMP); see docs/sparse_kernels.md.
//
// Layout: activations are NCHW, contiguous, fp32 or bf16; H*W must be a multiple of 16 so that one
// 512-bit vector holds 16 consecutive pixels of one channel plane. The weight is sparse, stride 1,
// "same" padding (k odd, pad = k/2), and given as CSR rows grouped by (output channel, tap):
//
//   rowptr[co * K2 + tap] .. rowptr[co * K2 + tap + 1]   entries of output channel co at tap
//   cidx[j]   input channel of entry j            vals[j]   its weight
//
// where tap = kh * k + kw and shift[tap] = (kh - pad) * W + (kw - pad) is the flat pixel offset the
// tap reads. Pixels whose shifted position falls outside the image are zero padding: the masks table
// holds, per 16-pixel chunk c and tap, the lanes that read inside (masked loads never touch the
// others, so reading "before" or "after" a plane is safe).
//
//   y[n, co, p] = sum_{tap, j in row(co, tap)} vals[j] * x[n, cidx[j], p + shift[tap]]     (forward)
//
// The input gradient is the same product with the transposed weight grouped by the flipped tap
// (shift -> -shift), so spconv_forward computes it too. The weight gradient is a sampled
// dense-dense product (SDDMM): only the active entries are computed,
//
//   dW[j] = sum_{n, p} dy[n, co(j), p] * x[n, cidx[j], p + shift[tap(j)]].
//
// Work is split over tiles of T chunks of the (image, chunk) sequence, so each thread streams the
// activations once while the weights (small) stay in cache.

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <vector>

namespace {

constexpr int T = 8;  // chunks (of 16 pixels) per tile: 8 independent accumulators hide FMA latency

inline __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load(const uint16_t* p, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load_full(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_full(const uint16_t* p) { return load(p, 0xFFFF); }
inline void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
inline void store(uint16_t* p, __m512 v) {
  // round to nearest even, as PyTorch's float -> bfloat16 conversion
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
}

struct Geometry {
  int N, Ci, Co, HW, nch, K2;
  const int32_t* shift;   // [K2]
  const uint16_t* masks;  // [nch * K2]
};

// One tile: chunks q0 .. q0 + t_count - 1 of the (image, chunk) sequence, every output channel.
template <typename XT, typename YT, int TT>
inline void forward_tile(const Geometry& g, const XT* x, YT* y, const int32_t* rowptr, const int32_t* cidx,
                         const float* vals, long q0) {
  long xoff[TT], yoff[TT];
  int chunk[TT];
  for (int t = 0; t < TT; ++t) {
    long q = q0 + t;
    long n = q / g.nch;
    chunk[t] = int(q % g.nch);
    xoff[t] = n * g.Ci * g.HW + chunk[t] * 16L;
    yoff[t] = n * g.Co * g.HW + chunk[t] * 16L;
  }
  for (int co = 0; co < g.Co; ++co) {
    __m512 acc[TT];
    for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
    for (int tap = 0; tap < g.K2; ++tap) {
      int beg = rowptr[co * g.K2 + tap], end = rowptr[co * g.K2 + tap + 1];
      if (beg == end) continue;
      __mmask16 m[TT];
      for (int t = 0; t < TT; ++t) m[t] = g.masks[chunk[t] * g.K2 + tap];
      const long s = g.shift[tap];
      for (int j = beg; j < end; ++j) {
        const __m512 v = _mm512_set1_ps(vals[j]);
        const XT* xp = x + long(cidx[j]) * g.HW + s;
        for (int t = 0; t < TT; ++t) acc[t] = _mm512_fmadd_ps(v, load(xp + xoff[t], m[t]), acc[t]);
      }
    }
    for (int t = 0; t < TT; ++t) store(y + yoff[t] + long(co) * g.HW, acc[t]);
  }
}

template <typename XT, typename YT>
void forward(const Geometry& g, const XT* x, YT* y, const int32_t* rowptr, const int32_t* cidx, const float* vals,
             int threads) {
  const long Q = long(g.N) * g.nch;
  const long full = Q / T;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long tile = 0; tile < full; ++tile) forward_tile<XT, YT, T>(g, x, y, rowptr, cidx, vals, tile * T);
  for (long q = full * T; q < Q; ++q) forward_tile<XT, YT, 1>(g, x, y, rowptr, cidx, vals, q);
}

// Weight gradient for the chunks of one tile, accumulated into part[j * 16 .. j * 16 + 15].
template <typename XT, typename GT, int TT>
inline void wgrad_tile(const Geometry& g, const XT* x, const GT* dy, const int32_t* rowptr, const int32_t* cidx,
                       float* part, long q0) {
  long xoff[TT], yoff[TT];
  int chunk[TT];
  for (int t = 0; t < TT; ++t) {
    long q = q0 + t;
    long n = q / g.nch;
    chunk[t] = int(q % g.nch);
    xoff[t] = n * g.Ci * g.HW + chunk[t] * 16L;
    yoff[t] = n * g.Co * g.HW + chunk[t] * 16L;
  }
  for (int co = 0; co < g.Co; ++co) {
    const int row_beg = rowptr[co * g.K2], row_end = rowptr[(co + 1) * g.K2];
    if (row_beg == row_end) continue;
    __m512 d[TT];
    for (int t = 0; t < TT; ++t) d[t] = load_full(dy + yoff[t] + long(co) * g.HW);
    for (int tap = 0; tap < g.K2; ++tap) {
      int beg = rowptr[co * g.K2 + tap], end = rowptr[co * g.K2 + tap + 1];
      if (beg == end) continue;
      __mmask16 m[TT];
      for (int t = 0; t < TT; ++t) m[t] = g.masks[chunk[t] * g.K2 + tap];
      const long s = g.shift[tap];
      for (int j = beg; j < end; ++j) {
        const XT* xp = x + long(cidx[j]) * g.HW + s;
        __m512 a0 = _mm512_loadu_ps(part + long(j) * 16), a1 = _mm512_setzero_ps();
        for (int t = 0; t + 1 < TT; t += 2) {
          a0 = _mm512_fmadd_ps(d[t], load(xp + xoff[t], m[t]), a0);
          a1 = _mm512_fmadd_ps(d[t + 1], load(xp + xoff[t + 1], m[t + 1]), a1);
        }
        if (TT % 2) a0 = _mm512_fmadd_ps(d[TT - 1], load(xp + xoff[TT - 1], m[TT - 1]), a0);
        _mm512_storeu_ps(part + long(j) * 16, _mm512_add_ps(a0, a1));
      }
    }
  }
}

template <typename XT, typename GT>
void wgrad(const Geometry& g, const XT* x, const GT* dy, const int32_t* rowptr, const int32_t* cidx, float* out,
           int threads) {
  const long Q = long(g.N) * g.nch;
  const long full = Q / T;
  const int nnz = rowptr[g.Co * g.K2];
  std::vector<float> parts(size_t(threads) * nnz * 16, 0.0f);  // one partial-sum vector per entry per thread
#pragma omp parallel num_threads(threads)
  {
    float* part = parts.data() + size_t(omp_get_thread_num()) * nnz * 16;
#pragma omp for schedule(static)
    for (long tile = 0; tile < full; ++tile) wgrad_tile<XT, GT, T>(g, x, dy, rowptr, cidx, part, tile * T);
#pragma omp single
    for (long q = full * T; q < Q; ++q) wgrad_tile<XT, GT, 1>(g, x, dy, rowptr, cidx, part, q);
#pragma omp for schedule(static)
    for (int j = 0; j < nnz; ++j) {
      __m512 s = _mm512_setzero_ps();
      for (int th = 0; th < threads; ++th) s = _mm512_add_ps(s, _mm512_loadu_ps(parts.data() + (size_t(th) * nnz + j) * 16));
      out[j] = _mm512_reduce_add_ps(s);
    }
  }
}

Geometry geometry(int N, int Ci, int Co, int HW, int K2, const int32_t* shift, const uint16_t* masks) {
  return Geometry{N, Ci, Co, HW, HW / 16, K2, shift, masks};
}

// Float64 reference path: the same CSR walk, shifts and lane masks, one lane at a time. It exists so
// that torch.autograd.gradcheck can verify the indexing of all three products in double precision.
void forward_f64(const Geometry& g, const double* x, double* y, const int32_t* rowptr, const int32_t* cidx,
                 const double* vals) {
  for (long n = 0; n < g.N; ++n)
    for (int co = 0; co < g.Co; ++co)
      for (int p = 0; p < g.HW; ++p) {
        double acc = 0.0;
        for (int tap = 0; tap < g.K2; ++tap) {
          if (!((g.masks[(p / 16) * g.K2 + tap] >> (p % 16)) & 1)) continue;
          for (int j = rowptr[co * g.K2 + tap]; j < rowptr[co * g.K2 + tap + 1]; ++j)
            acc += vals[j] * x[(n * g.Ci + cidx[j]) * g.HW + p + g.shift[tap]];
        }
        y[(n * g.Co + co) * g.HW + p] = acc;
      }
}

void wgrad_f64(const Geometry& g, const double* x, const double* dy, const int32_t* rowptr, const int32_t* cidx,
               double* out) {
  for (int co = 0; co < g.Co; ++co)
    for (int tap = 0; tap < g.K2; ++tap)
      for (int j = rowptr[co * g.K2 + tap]; j < rowptr[co * g.K2 + tap + 1]; ++j) {
        double acc = 0.0;
        for (long n = 0; n < g.N; ++n)
          for (int p = 0; p < g.HW; ++p)
            if ((g.masks[(p / 16) * g.K2 + tap] >> (p % 16)) & 1)
              acc += dy[(n * g.Co + co) * g.HW + p] * x[(n * g.Ci + cidx[j]) * g.HW + p + g.shift[tap]];
        out[j] = acc;
      }
}

}  // namespace

extern "C" {

void spconv_forward_f64(const double* x, double* y, int N, int Ci, int Co, int HW, int K2, const int32_t* shift,
                        const uint16_t* masks, const int32_t* rowptr, const int32_t* cidx, const double* vals) {
  forward_f64(geometry(N, Ci, Co, HW, K2, shift, masks), x, y, rowptr, cidx, vals);
}

void spconv_wgrad_f64(const double* x, const double* dy, int N, int Ci, int Co, int HW, int K2, const int32_t* shift,
                      const uint16_t* masks, const int32_t* rowptr, const int32_t* cidx, double* out) {
  wgrad_f64(geometry(N, Ci, Co, HW, K2, shift, masks), x, dy, rowptr, cidx, out);
}


// y = sparse(W) * x; x_bf16 / y_bf16 select bfloat16 (stored as uint16) instead of float32.
void spconv_forward(const void* x, int x_bf16, void* y, int y_bf16, int N, int Ci, int Co, int HW, int K2,
                    const int32_t* shift, const uint16_t* masks, const int32_t* rowptr, const int32_t* cidx,
                    const float* vals, int threads) {
  Geometry g = geometry(N, Ci, Co, HW, K2, shift, masks);
  if (x_bf16 && y_bf16)
    forward(g, (const uint16_t*)x, (uint16_t*)y, rowptr, cidx, vals, threads);
  else if (x_bf16)
    forward(g, (const uint16_t*)x, (float*)y, rowptr, cidx, vals, threads);
  else if (y_bf16)
    forward(g, (const float*)x, (uint16_t*)y, rowptr, cidx, vals, threads);
  else
    forward(g, (const float*)x, (float*)y, rowptr, cidx, vals, threads);
}

// out[j] = dW at entry j of the forward CSR (float32).
void spconv_wgrad(const void* x, int x_bf16, const void* dy, int dy_bf16, int N, int Ci, int Co, int HW, int K2,
                  const int32_t* shift, const uint16_t* masks, const int32_t* rowptr, const int32_t* cidx, float* out,
                  int threads) {
  Geometry g = geometry(N, Ci, Co, HW, K2, shift, masks);
  if (x_bf16 && dy_bf16)
    wgrad(g, (const uint16_t*)x, (const uint16_t*)dy, rowptr, cidx, out, threads);
  else if (x_bf16)
    wgrad(g, (const uint16_t*)x, (const float*)dy, rowptr, cidx, out, threads);
  else if (dy_bf16)
    wgrad(g, (const float*)x, (const uint16_t*)dy, rowptr, cidx, out, threads);
  else
    wgrad(g, (const float*)x, (const float*)dy, rowptr, cidx, out, threads);
}
}
