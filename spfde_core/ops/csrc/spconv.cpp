// Sparse convolution kernels for training on CPU (AVX-512 or AVX2, + OpenMP); see docs/sparse_kernels.md.
//
// Layout: activations are NCHW, contiguous, float32 or bfloat16 (stored as uint16). The weight is
// sparse, stride 1, "same" padding (k odd, pad = k/2), given as CSR rows grouped by (row, tap):
//
//   rowptr[r * K2 + tap] .. rowptr[r * K2 + tap + 1]   entries of row r at tap = kh * k + kw
//   cidx[j]   the channel entry j reads               vals[j]   its weight
//
//   forward         y[n, co, h, w] = sum_{j in row co} vals[j] * x[n, cidx[j], h + kh - pad, w + kw - pad]
//   input gradient  the same product with the transposed weight grouped by the flipped tap (the
//                   caller passes that CSR), applied to dy
//   weight gradient dW[j] = sum_{n, h, w} dy[n, co, h, w] * x[n, cidx[j], h + kh - pad, w + kw - pad],
//                   computed only at the active entries (a sampled dense-dense product, SDDMM)
//
// Work is cut into tiles of 8 (or 4, see make_tiling) chunks of L output pixels (L = 16 lanes with
// AVX-512, 8 with AVX2; rows of one image, or whole small images); per tile the input rows it reads
// are packed once into a per-thread float32 buffer (see Tiling), then every output channel's entries
// stream over that buffer: one L-lane FMA per entry and chunk, with one accumulator per chunk in
// registers. Each FMA needs one (usually unaligned) load, so the kernels are bound by L1 load
// bandwidth, not by the FMA units (docs).
//
// A float64 scalar path (same CSR and shifts, a per-pixel inside-the-image table) exists for gradcheck.

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <vector>

namespace {

// The vector layer: L float lanes per register. One source builds for two targets (spfde_core/ops/native.py):
// AVX-512 (+BF16) with 16 lanes and AVX2 + FMA with 8 lanes. A "chunk" is L consecutive output pixels;
// everything below is written in chunks, so the tiling, packing and kernels are the same on both.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)
constexpr int L = 16;
using vec = __m512;
using lmask = __mmask16;  // one bit per lane
inline vec vzero() { return _mm512_setzero_ps(); }
inline vec vset1(float v) { return _mm512_set1_ps(v); }
inline vec vfmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec vmul(vec a, vec b) { return _mm512_mul_ps(a, b); }
inline vec vmaskz_load(lmask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
inline float vreduce(vec v) { return _mm512_reduce_add_ps(v); }
inline lmask lane_mask(const bool* on) {
  lmask m = 0;
  for (int l = 0; l < L; ++l)
    if (on[l]) m |= lmask(1u << l);
  return m;
}
inline vec load(const float* p) { return _mm512_loadu_ps(p); }
inline vec load(const uint16_t* p) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
inline void store(uint16_t* p, vec v) {
  // round to nearest even, as PyTorch's float -> bfloat16 conversion
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int L = 8;
using vec = __m256;
using lmask = __m256i;  // all ones in the lanes to load
inline vec vzero() { return _mm256_setzero_ps(); }
inline vec vset1(float v) { return _mm256_set1_ps(v); }
inline vec vfmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
inline vec vmul(vec a, vec b) { return _mm256_mul_ps(a, b); }
inline vec vmaskz_load(lmask m, const float* p) { return _mm256_maskload_ps(p, m); }  // masked lanes never fault
inline float vreduce(vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline lmask lane_mask(const bool* on) {
  alignas(32) int32_t bits[L];
  for (int l = 0; l < L; ++l) bits[l] = on[l] ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(bits));
}
inline vec load(const float* p) { return _mm256_loadu_ps(p); }
inline vec load(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
inline void store(uint16_t* p, vec v) {
  // round to nearest even, NaN to 0x7FC0: PyTorch's float -> bfloat16 conversion (c10::BFloat16)
  const __m256i b = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
#else
#error "spconv.cpp builds for AVX-512 (F, BW, BF16) or AVX2 + FMA"
#endif

inline void vstoreu(float* p, vec v) { store(p, v); }
inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) {
  uint32_t bits = uint32_t(v) << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// How the (image, chunk) sequence is cut into tiles and how a tile's input is packed.
//
// A tile is 8 or 4 chunks: R consecutive output rows of one image (W >= L), or whole images (small
// planes). Its input rows, with the k/2 halo rows above and below, are copied once per tile into a
// per-thread buffer as float32 with zero rows outside the image ("packing"): the copy converts bf16
// once instead of in every product, turns vertical padding into zeros, and gives each channel a
// stride that is not a multiple of 4 KiB, so the channels a tile reads do not all compete for the
// same L1 sets (with 32x32 planes every channel of an NCHW tensor starts at the same set).
// Horizontal padding: W a multiple of L gets k/2 zero columns on both sides (no masks); W < L
// (several rows per chunk) uses one lane mask per horizontal tap offset.
struct Tiling {
  int N, C, H, W, k, pad, HW, nch;
  int Wp, padc;      // packed row width and left zero columns
  int tile_chunks;   // T, or nch for a tail tile
  int segs;          // images per tile
  int seg_rows;      // output rows per image segment in a tile
  long segstride;    // packed floats per (channel, segment)
  long cstride;      // packed floats per channel
  bool masked;       // W < L: lane masks per horizontal offset
  lmask hmask[16];   // per horizontal tap (k <= 15)
};

bool tiling_for(Tiling& t, int N, int C, int H, int W, int k, int tc) {
  t.N = N; t.C = C; t.H = H; t.W = W; t.k = k; t.pad = k / 2; t.HW = H * W; t.nch = t.HW / L;
  if (t.HW % L || k > 15) return false;
  if (W % L == 0) { t.masked = false; t.Wp = W + 2 * t.pad; t.padc = t.pad; }
  else if (L % W == 0) { t.masked = true; t.Wp = W; t.padc = 0; }
  else return false;
  if (t.nch >= tc) {
    if (t.nch % tc || (tc * L) % W) return false;
    t.segs = 1; t.seg_rows = tc * L / W;
  } else {
    if (tc % t.nch) return false;
    t.segs = tc / t.nch; t.seg_rows = H;
  }
  t.tile_chunks = tc;
  t.segstride = long(t.seg_rows + 2 * t.pad) * t.Wp;
  t.cstride = (t.segs * t.segstride + 15) / 16 * 16;  // whole 64-byte lines per channel
  if (t.cstride % 256 == 0) t.cstride += 16;  // 1 KiB multiples: skew by a line against set conflicts
  for (int kw = 0; kw < k; ++kw) {
    int dw = kw - t.pad;
    bool on[L];
    for (int l = 0; l < L; ++l) {
      int w = l % W;
      on[l] = !t.masked || (w + dw >= 0 && w + dw < W);
    }
    t.hmask[kw] = lane_mask(on);
  }
  return true;
}

// 8 chunks per tile (8 accumulators) unless the packed tile is well beyond L1 (48 KiB here); then
// 4. The budget is measured: a 53 KiB tile of 64 channels still ran faster with 8 chunks, an 80 KiB
// tile of 128 channels (8x8 planes) faster with 4.
constexpr long L1_BUDGET = 56 * 1024;

bool make_tiling(Tiling& t, int N, int C, int H, int W, int k) {
  Tiling four;
  const bool eight_ok = tiling_for(t, N, C, H, W, k, 8);
  if (eight_ok && long(C) * t.cstride * 4 <= L1_BUDGET) return true;
  if (tiling_for(four, N, C, H, W, k, 4)) {
    t = four;
    return true;
  }
  return eight_ok && tiling_for(t, N, C, H, W, k, 8);
}

// Position of a tile: first image, first output row (segs == 1), number of images.
struct TilePos { long n0; int h0; int nimg; };

inline long num_tiles(const Tiling& t) {
  if (t.segs == 1) return long(t.N) * (t.nch / t.tile_chunks);
  return (t.N + t.segs - 1) / t.segs;
}
inline TilePos tile_pos(const Tiling& t, long i) {
  if (t.segs == 1) {
    long per = t.nch / t.tile_chunks;
    return TilePos{i / per, int(i % per) * t.seg_rows, 1};
  }
  long n0 = i * t.segs;
  return TilePos{n0, 0, int(n0 + t.segs <= t.N ? t.segs : t.N - n0)};
}

// Copy the tile's input (all channels, its rows plus halo) into buf as float32.
template <typename XT>
void pack(const Tiling& t, const XT* x, const TilePos& pos, float* buf) {
  for (int c = 0; c < t.C; ++c)
    for (int s = 0; s < t.segs; ++s) {
      float* seg = buf + c * t.cstride + s * t.segstride;
      const bool present = s < pos.nimg;
      const XT* plane = x + ((pos.n0 + s) * t.C + c) * long(t.HW);
      for (int pr = 0; pr < t.seg_rows + 2 * t.pad; ++pr) {
        float* dst = seg + long(pr) * t.Wp;
        const int h = pos.h0 + pr - t.pad;
        if (!present || h < 0 || h >= t.H) {
          memset(dst, 0, sizeof(float) * t.Wp);
          continue;
        }
        const XT* src = plane + long(h) * t.W;
        for (int i = 0; i < t.padc; ++i) dst[i] = dst[t.padc + t.W + i] = 0.0f;
        int w = 0;
        for (; w + L <= t.W; w += L) vstoreu(dst + t.padc + w, load(src + w));
        for (; w < t.W; ++w) dst[t.padc + w] = to_float(src[w]);
      }
    }
}

// Offsets of a tile's chunks in the packed buffer (poff) and in an NCHW output plane set (yoff).
template <int TT>
inline void chunk_offsets(const Tiling& t, const TilePos& pos, long co_stride, long* poff, long* yoff) {
  const int chunks_per_seg = t.seg_rows * t.W / L;
  for (int i = 0; i < TT; ++i) {
    const int s = i / chunks_per_seg, q = (i % chunks_per_seg) * L;
    const int r = q / t.W, col = q % t.W;
    poff[i] = s * t.segstride + long(r + t.pad) * t.Wp + t.padc + col;
    yoff[i] = (pos.n0 + s) * co_stride + long(pos.h0 + r) * t.W + col;
  }
}

// Per-entry offset into the packed buffer and horizontal mask index, from the (row, tap)-grouped CSR.
void entry_offsets(const Tiling& t, int rows, const int32_t* rowptr, const int32_t* cidx, int32_t* off,
                   uint8_t* kw_of) {
  const int K2 = t.k * t.k;
  for (int r = 0; r < rows; ++r)
    for (int tap = 0; tap < K2; ++tap)
      for (int j = rowptr[r * K2 + tap]; j < rowptr[r * K2 + tap + 1]; ++j) {
        const int kh = tap / t.k, kw = tap % t.k;
        off[j] = int32_t(cidx[j] * t.cstride + (kh - t.pad) * t.Wp + (kw - t.pad));
        kw_of[j] = uint8_t(kw);
      }
}

template <bool MASKED>
inline vec tap_load(const float* p, const lmask& m) {
  if constexpr (MASKED) return vmaskz_load(m, p);
  else return load(p);
}

// y[n, co, tile] = sum_j vals[j] * packed[off[j] + chunk] for one tile.
template <typename YT, int TT, bool MASKED>
void forward_tile(const Tiling& t, int Co, const float* buf, YT* y, const TilePos& pos, const int32_t* rowptr,
                  const int32_t* off, const uint8_t* kw_of, const float* vals) {
  long poff[TT], yoff[TT];
  chunk_offsets<TT>(t, pos, long(Co) * t.HW, poff, yoff);
  const int K2 = t.k * t.k;
  const int valid = pos.nimg * t.nch < TT ? pos.nimg * t.nch : TT;  // chunks of missing images are not stored
  for (int co = 0; co < Co; ++co) {
    vec acc[TT];
    for (int i = 0; i < TT; ++i) acc[i] = vzero();
    for (int j = rowptr[co * K2]; j < rowptr[(co + 1) * K2]; ++j) {
      const vec v = vset1(vals[j]);
      const float* p = buf + off[j];
      const lmask& m = t.hmask[kw_of[j]];
      for (int i = 0; i < TT; ++i) acc[i] = vfmadd(v, tap_load<MASKED>(p + poff[i], m), acc[i]);
    }
    for (int i = 0; i < valid; ++i) store(y + yoff[i] + long(co) * t.HW, acc[i]);
  }
}

// part[j] += sum over the tile's chunks of dy[n, co(j), chunk] * packed[off[j] + chunk] (L lanes kept).
template <typename GT, int TT, bool MASKED>
void wgrad_tile(const Tiling& t, int Co, const float* buf, const GT* dy, const TilePos& pos, const int32_t* rowptr,
                const int32_t* off, const uint8_t* kw_of, float* part) {
  long poff[TT], yoff[TT];
  chunk_offsets<TT>(t, pos, long(Co) * t.HW, poff, yoff);
  const int K2 = t.k * t.k;
  const int valid = pos.nimg * t.nch < TT ? pos.nimg * t.nch : TT;
  for (int co = 0; co < Co; ++co) {
    const int beg = rowptr[co * K2], end = rowptr[(co + 1) * K2];
    if (beg == end) continue;
    vec d[TT];
    for (int i = 0; i < TT; ++i) d[i] = i < valid ? load(dy + yoff[i] + long(co) * t.HW) : vzero();
    for (int j = beg; j < end; ++j) {
      const float* p = buf + off[j];
      const lmask& m = t.hmask[kw_of[j]];
      vec a0 = load(part + long(j) * L), a1 = vzero();
      for (int i = 0; i + 1 < TT; i += 2) {
        a0 = vfmadd(d[i], tap_load<MASKED>(p + poff[i], m), a0);
        a1 = vfmadd(d[i + 1], tap_load<MASKED>(p + poff[i + 1], m), a1);
      }
      if (TT % 2) a0 = vfmadd(d[TT - 1], tap_load<MASKED>(p + poff[TT - 1], m), a0);
      vstoreu(part + long(j) * L, vadd(a0, a1));
    }
  }
}

// Block sparsity (MEST's 4x1 blocks: 4 consecutive output channels share every active (channel, tap)).
// Row g holds the blocks of output channels 4g .. 4g+3; vals[4 j + b] is channel 4g+b's weight. One
// packed load now feeds 4 FMAs (one per channel of the block), so these kernels are bound by the FMA
// units instead of the loads. The tile is processed in parts of HALF chunks: BLK x HALF accumulators,
// 16 of AVX-512's 32 registers, 8 of AVX2's 16 (4 chunks there would spill).
constexpr int BLK = 4;
constexpr int HALF = L == 16 ? 4 : 2;

template <typename YT, int TT, bool MASKED>
void forward_tile_block(const Tiling& t, int Co, const float* buf, YT* y, const TilePos& pos, const int32_t* rowptr,
                        const int32_t* off, const uint8_t* kw_of, const float* vals) {
  static_assert(TT % HALF == 0, "block tiles come in parts of HALF chunks");
  long poff[TT], yoff[TT];
  chunk_offsets<TT>(t, pos, long(Co) * t.HW, poff, yoff);
  const int K2 = t.k * t.k;
  const int valid = pos.nimg * t.nch < TT ? pos.nimg * t.nch : TT;
  for (int g = 0; g < Co / BLK; ++g)
    for (int h = 0; h < TT; h += HALF) {
      vec acc[BLK][HALF];
      for (int b = 0; b < BLK; ++b)
        for (int i = 0; i < HALF; ++i) acc[b][i] = vzero();
      for (int j = rowptr[g * K2]; j < rowptr[(g + 1) * K2]; ++j) {
        const float* p = buf + off[j];
        const lmask& m = t.hmask[kw_of[j]];
        vec xv[HALF];
        for (int i = 0; i < HALF; ++i) xv[i] = tap_load<MASKED>(p + poff[h + i], m);
        for (int b = 0; b < BLK; ++b) {
          const vec v = vset1(vals[long(j) * BLK + b]);
          for (int i = 0; i < HALF; ++i) acc[b][i] = vfmadd(v, xv[i], acc[b][i]);
        }
      }
      for (int b = 0; b < BLK; ++b)
        for (int i = 0; i < HALF; ++i)
          if (h + i < valid) store(y + yoff[h + i] + long(g * BLK + b) * t.HW, acc[b][i]);
    }
}

template <typename GT, int TT, bool MASKED>
void wgrad_tile_block(const Tiling& t, int Co, const float* buf, const GT* dy, const TilePos& pos,
                      const int32_t* rowptr, const int32_t* off, const uint8_t* kw_of, float* part) {
  long poff[TT], yoff[TT];
  chunk_offsets<TT>(t, pos, long(Co) * t.HW, poff, yoff);
  const int K2 = t.k * t.k;
  const int valid = pos.nimg * t.nch < TT ? pos.nimg * t.nch : TT;
  for (int g = 0; g < Co / BLK; ++g) {
    const int beg = rowptr[g * K2], end = rowptr[(g + 1) * K2];
    if (beg == end) continue;
    for (int h = 0; h < TT; h += HALF) {
      vec d[BLK][HALF];
      for (int b = 0; b < BLK; ++b)
        for (int i = 0; i < HALF; ++i)
          d[b][i] = h + i < valid ? load(dy + yoff[h + i] + long(g * BLK + b) * t.HW) : vzero();
      for (int j = beg; j < end; ++j) {
        const float* p = buf + off[j];
        const lmask& m = t.hmask[kw_of[j]];
        vec xv[HALF];
        for (int i = 0; i < HALF; ++i) xv[i] = tap_load<MASKED>(p + poff[h + i], m);
        for (int b = 0; b < BLK; ++b) {
          float* slot = part + (long(j) * BLK + b) * L;
          vec a = vmul(d[b][0], xv[0]);
          for (int i = 1; i < HALF; ++i) a = vfmadd(d[b][i], xv[i], a);
          vstoreu(slot, vadd(load(slot), a));
        }
      }
    }
  }
}

// B = 1: unstructured CSR; B = BLK: block CSR (rows are groups of BLK output channels).
// The drivers' shared part: per-entry offsets, then the tiles split over threads, each packed into
// the thread's buffer and handed to tile(pos, buffer, thread).
template <typename XT, typename F>
void for_each_tile(const Tiling& t, const XT* x, int threads, F&& tile) {
  const long tiles = num_tiles(t);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> buf(size_t(t.C) * t.cstride + 64);
    const int thread = omp_get_thread_num();
#pragma omp for schedule(static)
    for (long i = 0; i < tiles; ++i) {
      const TilePos pos = tile_pos(t, i);
      pack(t, x, pos, buf.data());
      tile(pos, buf.data(), thread);
    }
  }
}

template <int B, int TT, typename XT, typename YT>
void forward_tt(const Tiling& t, int Co, const XT* x, YT* y, const int32_t* rowptr, const int32_t* cidx,
                const float* vals, int threads) {
  const int entries = rowptr[Co / B * t.k * t.k];
  std::vector<int32_t> off(entries);
  std::vector<uint8_t> kw_of(entries);
  entry_offsets(t, Co / B, rowptr, cidx, off.data(), kw_of.data());
  // B and the mask mode are template arguments of the tile kernels: one instantiation per case.
  auto run = [&](auto tile_kernel) {
    for_each_tile(t, x, threads, [&](const TilePos& pos, const float* buf, int) {
      tile_kernel(t, Co, buf, y, pos, rowptr, off.data(), kw_of.data(), vals);
    });
  };
  if constexpr (B == 1) {
    if (t.masked) run(forward_tile<YT, TT, true>);
    else run(forward_tile<YT, TT, false>);
  } else {
    if (t.masked) run(forward_tile_block<YT, TT, true>);
    else run(forward_tile_block<YT, TT, false>);
  }
}

template <int B, int TT, typename XT, typename GT>
void wgrad_tt(const Tiling& t, int Co, const XT* x, const GT* dy, const int32_t* rowptr, const int32_t* cidx,
              float* out, int threads) {
  const int entries = rowptr[Co / B * t.k * t.k];
  std::vector<int32_t> off(entries);
  std::vector<uint8_t> kw_of(entries);
  entry_offsets(t, Co / B, rowptr, cidx, off.data(), kw_of.data());
  const int nnz = entries * B;  // weights: B per entry
  std::vector<float> parts(size_t(threads) * nnz * L, 0.0f);  // one partial-sum vector per weight per thread
  auto run = [&](auto tile_kernel) {
    for_each_tile(t, x, threads, [&](const TilePos& pos, const float* buf, int thread) {
      float* part = parts.data() + size_t(thread) * nnz * L;
      tile_kernel(t, Co, buf, dy, pos, rowptr, off.data(), kw_of.data(), part);
    });
  };
  if constexpr (B == 1) {
    if (t.masked) run(wgrad_tile<GT, TT, true>);
    else run(wgrad_tile<GT, TT, false>);
  } else {
    if (t.masked) run(wgrad_tile_block<GT, TT, true>);
    else run(wgrad_tile_block<GT, TT, false>);
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int j = 0; j < nnz; ++j) {
    vec sum = vzero();
    for (int th = 0; th < threads; ++th) sum = vadd(sum, load(parts.data() + (size_t(th) * nnz + j) * L));
    out[j] = vreduce(sum);
  }
}

// Geometry of the float64 reference path: per-tap flat shifts and per-(chunk, tap) lane masks.
struct Geometry {
  int N, Ci, Co, HW, K2;
  const int32_t* shift;   // [K2]
  const uint8_t* inside;  // [HW * K2]: 1 where pixel p's tap reads inside the image
};

Geometry geometry(int N, int Ci, int Co, int HW, int K2, const int32_t* shift, const uint8_t* inside) {
  return Geometry{N, Ci, Co, HW, K2, shift, inside};
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
          if (!g.inside[long(p) * g.K2 + tap]) continue;
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
            if (g.inside[long(p) * g.K2 + tap])
              acc += dy[(n * g.Co + co) * g.HW + p] * x[(n * g.Ci + cidx[j]) * g.HW + p + g.shift[tap]];
        out[j] = acc;
      }
}

template <int B, typename XT, typename YT>
void forward(const Tiling& t, int Co, const XT* x, YT* y, const int32_t* rowptr, const int32_t* cidx,
             const float* vals, int threads) {
  if (t.tile_chunks == 8) forward_tt<B, 8>(t, Co, x, y, rowptr, cidx, vals, threads);
  else forward_tt<B, 4>(t, Co, x, y, rowptr, cidx, vals, threads);
}

template <int B, typename XT, typename GT>
void wgrad(const Tiling& t, int Co, const XT* x, const GT* dy, const int32_t* rowptr, const int32_t* cidx, float* out,
           int threads) {
  if (t.tile_chunks == 8) wgrad_tt<B, 8>(t, Co, x, dy, rowptr, cidx, out, threads);
  else wgrad_tt<B, 4>(t, Co, x, dy, rowptr, cidx, out, threads);
}

template <int B>
int forward_dispatch(const void* x, int x_bf16, void* y, int y_bf16, const Tiling& t, int Co, const int32_t* rowptr,
                     const int32_t* cidx, const float* vals, int threads) {
  if (x_bf16 && y_bf16)
    forward<B>(t, Co, (const uint16_t*)x, (uint16_t*)y, rowptr, cidx, vals, threads);
  else if (x_bf16)
    forward<B>(t, Co, (const uint16_t*)x, (float*)y, rowptr, cidx, vals, threads);
  else if (y_bf16)
    forward<B>(t, Co, (const float*)x, (uint16_t*)y, rowptr, cidx, vals, threads);
  else
    forward<B>(t, Co, (const float*)x, (float*)y, rowptr, cidx, vals, threads);
  return 0;
}

template <int B>
int wgrad_dispatch(const void* x, int x_bf16, const void* dy, int dy_bf16, const Tiling& t, int Co,
                   const int32_t* rowptr, const int32_t* cidx, float* out, int threads) {
  if (x_bf16 && dy_bf16)
    wgrad<B>(t, Co, (const uint16_t*)x, (const uint16_t*)dy, rowptr, cidx, out, threads);
  else if (x_bf16)
    wgrad<B>(t, Co, (const uint16_t*)x, (const float*)dy, rowptr, cidx, out, threads);
  else if (dy_bf16)
    wgrad<B>(t, Co, (const float*)x, (const uint16_t*)dy, rowptr, cidx, out, threads);
  else
    wgrad<B>(t, Co, (const float*)x, (const float*)dy, rowptr, cidx, out, threads);
  return 0;
}

}  // namespace

extern "C" {

void spconv_forward_f64(const double* x, double* y, int N, int Ci, int Co, int HW, int K2, const int32_t* shift,
                        const uint8_t* inside, const int32_t* rowptr, const int32_t* cidx, const double* vals) {
  forward_f64(geometry(N, Ci, Co, HW, K2, shift, inside), x, y, rowptr, cidx, vals);
}

void spconv_wgrad_f64(const double* x, const double* dy, int N, int Ci, int Co, int HW, int K2, const int32_t* shift,
                      const uint8_t* inside, const int32_t* rowptr, const int32_t* cidx, double* out) {
  wgrad_f64(geometry(N, Ci, Co, HW, K2, shift, inside), x, dy, rowptr, cidx, out);
}


// Float lanes per vector of this build: 16 (AVX-512) or 8 (AVX2); a chunk is this many output pixels.
int spconv_lanes() { return L; }

// Whether the kernels support this geometry (else the caller uses another path).
int spconv_supported(int N, int C, int H, int W, int k) {
  Tiling t;
  return make_tiling(t, N, C, H, W, k) ? 1 : 0;
}

// y = sparse(W) * x; x_bf16 / y_bf16 select bfloat16 (stored as uint16) instead of float32.
// Returns 0, or -1 if the geometry is unsupported (nothing written).
// block = 1 (unstructured CSR) or 4 (block CSR, see forward_tile_block).
int spconv_forward(const void* x, int x_bf16, void* y, int y_bf16, int N, int Ci, int Co, int H, int W, int k,
                   int block, const int32_t* rowptr, const int32_t* cidx, const float* vals, int threads) {
  Tiling t;
  if (!make_tiling(t, N, Ci, H, W, k) || !(block == 1 || (block == BLK && Co % BLK == 0))) return -1;
  if (block == 1) return forward_dispatch<1>(x, x_bf16, y, y_bf16, t, Co, rowptr, cidx, vals, threads);
  return forward_dispatch<BLK>(x, x_bf16, y, y_bf16, t, Co, rowptr, cidx, vals, threads);
}

// out[j] = dW at entry j of the forward CSR (float32). Returns 0, or -1 if unsupported.
int spconv_wgrad(const void* x, int x_bf16, const void* dy, int dy_bf16, int N, int Ci, int Co, int H, int W, int k,
                 int block, const int32_t* rowptr, const int32_t* cidx, float* out, int threads) {
  Tiling t;
  if (!make_tiling(t, N, Ci, H, W, k) || !(block == 1 || (block == BLK && Co % BLK == 0))) return -1;
  if (block == 1) return wgrad_dispatch<1>(x, x_bf16, dy, dy_bf16, t, Co, rowptr, cidx, out, threads);
  return wgrad_dispatch<BLK>(x, x_bf16, dy, dy_bf16, t, Co, rowptr, cidx, out, threads);
}
}
