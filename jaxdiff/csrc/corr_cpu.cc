// RAFT correlation windows on the CPU as XLA FFI handlers (float32 and float64).
//
// Both handlers compute, for every query q, pyramid level l and window offsets dx, dy in [-r, r],
//
//   out[q, l (2r+1)^2 + (dx + r) (2r+1) + (dy + r)] = bilinear sample of map_l at (x + dx, y + dy),
//
// with (x, y) = xy[q] / 2^l, integer pixel centres and zeros outside the map (RAFT's
// grid_sample(align_corners=True) semantics). All taps of a window share one fractional
// offset, so a window is read as one (2r+2)^2 patch of integer taps and blended by four
// shifted slices, in the same order of operations as jaxdiff.flow.corr._windows.
//
//   jaxdiff_corr_lookup(xy (Q, 2), volume_0, ..., volume_{L-1}; radius) -> (Q, L (2r+1)^2):
//       map_l of query q is volume_l[q], volume_l of shape (Q, h_l, w_l).
//   jaxdiff_corr_windows(f1 (B, H, W, D), xy (B, H, W, 2), f2_0, ..., f2_{L-1}; radius, scale)
//       -> (B, H W, L (2r+1)^2): map_l is computed on the fly, tap (i, j) = scale <f1[b, y, x], f2_l[b, i, j]>,
//       f2_l of shape (B, h_l, w_l, D), each level the 2 x 2 average pool of the one before (floor
//       sizes): some level-(l+1) taps are taken as the mean of four level-l taps.
//
// Non-finite coordinates give an all-zero window. Queries are split into blocks that the
// caller and XLA's intra-op thread pool take from a shared counter.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

// Runs body(begin, end) over [0, n) in blocks of `block` on the caller and the pool. Returns once
// every block is done; pool tasks that start later find no work and only touch the shared state.
template <typename Body>
void parallel_for(ffi::ThreadPool& pool, int64_t n, Body body, int64_t block = 32) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  const int64_t blocks = (n + block - 1) / block;
  auto state = std::make_shared<State>();
  auto work = [state, blocks, block, n, &body]() {
    int64_t i;
    while ((i = state->next.fetch_add(1)) < blocks) {
      body(i * block, std::min(n, (i + 1) * block));
      if (state->done.fetch_add(1) + 1 == blocks) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), blocks - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    // The pool may run a task after this call returned: it must not touch `body` then, and it
    // cannot, because `next` is exhausted by the time `done` reaches `blocks`.
    pool.Schedule([work]() { work(); });
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == blocks; });
}

// Window geometry of one query at one level: first tap row/column (may lie outside the map)
// and the fractional offsets shared by all taps.
template <typename T>
struct Window {
  bool empty;
  int64_t row0, col0;
  T fx, fy;
};

template <typename T>
Window<T> window_at(T x, T y, int64_t r, int64_t h, int64_t w) {
  Window<T> win{true, 0, 0, T(0), T(0)};
  if (!std::isfinite(x) || !std::isfinite(y)) return win;
  const T x0 = std::floor(x), y0 = std::floor(y);
  const int64_t k = 2 * r + 2;
  // Far outside: every tap misses the map (also keeps the int conversion in range).
  if (x0 - r >= T(w) || x0 - r + k <= T(0) || y0 - r >= T(h) || y0 - r + k <= T(0)) return win;
  win.empty = false;
  win.col0 = static_cast<int64_t>(x0) - r;
  win.row0 = static_cast<int64_t>(y0) - r;
  win.fx = x - x0;
  win.fy = y - y0;
  return win;
}

// Blends k x k taps (tap (i, j) at taps + i row_stride + j col_stride) into (2r+1)^2 outputs,
// x-offset slow, times scale.
template <typename T>
void blend(const T* taps, int64_t row_stride, int64_t col_stride, int64_t r, T fx, T fy, T* out, T scale = T(1)) {
  const int64_t k = 2 * r + 2, n = 2 * r + 1;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (k <= 16 && row_stride <= INT32_MAX / 16) {
      // Column j of the taps is one load (one gather unless row_stride is 1); the same operations
      // as below, by columns.
      const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(static_cast<int>(row_stride)));
      const __mmask16 taps_k = (1u << k) - 1, outs_n = (1u << n) - 1;
      auto column = [&](int64_t j) {
        const T* first = taps + j * col_stride;
        return row_stride == 1 ? _mm512_maskz_loadu_ps(taps_k, first)
                               : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), taps_k, rows, first, 4);
      };
      const __m512 ax = _mm512_set1_ps(1 - fx), bx = _mm512_set1_ps(fx), ay = _mm512_set1_ps(1 - fy),
                   by = _mm512_set1_ps(fy);
      __m512 left = column(0);
      for (int64_t dx = 0; dx < n; ++dx) {
        const __m512 right = column(dx + 1);
        const __m512 x = _mm512_add_ps(_mm512_mul_ps(ax, left), _mm512_mul_ps(bx, right));  // rows_x[.][dx]
        const __m512 below = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(x), _mm512_castps_si512(x), 1));
        __m512 y = _mm512_add_ps(_mm512_mul_ps(ay, x), _mm512_mul_ps(by, below));
        if (scale != 1) y = _mm512_mul_ps(y, _mm512_set1_ps(scale));
        _mm512_mask_storeu_ps(out + dx * n, outs_n, y);
        left = right;
      }
      return;
    }
  }
#endif
  T rows_x[64 * 63];
  for (int64_t i = 0; i < k; ++i) {
    const T* row = taps + i * row_stride;
    for (int64_t j = 0; j < n; ++j) rows_x[i * n + j] = (1 - fx) * row[j * col_stride] + fx * row[(j + 1) * col_stride];
  }
  for (int64_t dx = 0; dx < n; ++dx)
    for (int64_t dy = 0; dy < n; ++dy)
      out[dx * n + dy] = (1 - fy) * rows_x[dy * n + dx] + fy * rows_x[(dy + 1) * n + dx];
  if (scale != 1)
    for (int64_t i = 0; i < n * n; ++i) out[i] *= scale;
}

// Transpose of `blend`: the cotangent g of the (2r+1)^2 outputs -> the k x k tap cotangent,
// tap (i, j) written to taps[j ld + i] (by columns).
template <typename T>
void unblend(const T* g, int64_t r, T fx, T fy, T scale, T* taps, int64_t ld) {
  const int64_t k = 2 * r + 2, n = 2 * r + 1;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (k <= 16) {
      // Column j of rows_x from output column j of g, the same operations as below by columns.
      const __mmask16 outs_n = (1u << n) - 1, taps_k = (1u << k) - 1;
      const __m512 ax = _mm512_set1_ps(1 - fx), bx = _mm512_set1_ps(fx), ay = _mm512_set1_ps(1 - fy),
                   by = _mm512_set1_ps(fy), s = _mm512_set1_ps(scale), zero = _mm512_setzero_ps();
      __m512 left = zero;  // rows_x[.][j - 1]
      for (int64_t j = 0; j < k; ++j) {
        __m512 right = zero;  // rows_x[.][j]
        if (j < n) {
          const __m512 col = _mm512_maskz_loadu_ps(outs_n, g + j * n);
          const __m512 above = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(col), _mm512_castps_si512(zero), 15));
          right = _mm512_mul_ps(s, _mm512_add_ps(_mm512_mul_ps(ay, col), _mm512_mul_ps(by, above)));
        }
        _mm512_mask_storeu_ps(taps + j * ld, taps_k, _mm512_add_ps(_mm512_mul_ps(ax, right), _mm512_mul_ps(bx, left)));
        left = right;
      }
      return;
    }
  }
#endif
  T rows_x[64 * 63];  // d rows_x[i][j], i: tap row, j: x-offset
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j)
      rows_x[i * n + j] = scale * ((i < n ? (1 - fy) * g[j * n + i] : T(0)) + (i > 0 ? fy * g[j * n + i - 1] : T(0)));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      taps[j * ld + i] = (j < n ? (1 - fx) * rows_x[i * n + j] : T(0)) + (j > 0 ? fx * rows_x[i * n + j - 1] : T(0));
}

// Calls f(i, row, c0, c1) for each row i of a rows x cols rectangle at map pixel (row0, col0)
// whose map row lies in [lo, hi) and inside an h x w map, with its in-map columns [c0, c1).
template <typename F>
void clip_rows(int64_t row0, int64_t col0, int64_t rows, int64_t cols, int64_t h, int64_t w, F f, int64_t lo = 0,
               int64_t hi = INT64_MAX) {
  const int64_t c0 = std::max<int64_t>(col0, 0), c1 = std::min<int64_t>(col0 + cols, w);
  if (c0 >= c1) return;
  const int64_t i1 = std::min(rows, std::min(hi, h) - row0);
  for (int64_t i = std::max<int64_t>(0, std::max<int64_t>(lo, 0) - row0); i < i1; ++i) f(i, row0 + i, c0, c1);
}

// A rectangle of taps by columns, zero outside the map: entry (i, j) is map pixel
// (row0 + i, col0 + j), at data[j rows + i].
template <typename T>
struct Box {
  int64_t row0, col0, rows, cols;
  T* data;  // cols x rows

  // fill_col(col, row_begin, row_end, dst) writes each in-map column segment; the rest is untouched.
  template <typename FillCol>
  void fill(int64_t h, int64_t w, FillCol fill_col) const {
    const int64_t r0 = std::max<int64_t>(row0, 0), r1 = std::min(row0 + rows, h);
    if (r0 >= r1) return;
    for (int64_t col = std::max<int64_t>(col0, 0); col < std::min(col0 + cols, w); ++col)
      fill_col(col, r0, r1, data + (col - col0) * rows + (r0 - row0));
  }

  void blend_window(const Window<T>& win, int64_t r, T* out, T scale = T(1)) const {
    blend(data + (win.col0 - col0) * rows + (win.row0 - row0), 1, rows, r, win.fx, win.fy, out, scale);
  }
};

// ------------------------------------------------------------------ dot products

// GCC/Clang vector extensions: one register (64 bytes with AVX-512, else 32), unaligned loads
// through memcpy, horizontal sums as a tree of half-width adds.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};

template <typename T, int Bytes>
T hsum(typename VecOf<T, Bytes>::type v) {
  if constexpr (Bytes == sizeof(T)) {
    return v[0];
  } else {
    typename VecOf<T, Bytes / 2>::type lo, hi;
    std::memcpy(&lo, &v, Bytes / 2);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + Bytes / 2, Bytes / 2);
    return hsum<T, Bytes / 2>(lo + hi);
  }
}

template <typename T>
struct Vec {
  static constexpr int kLanes = kVecBytes / sizeof(T);
  using type = typename VecOf<T, kVecBytes>::type;
  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static T sum(type v) { return hsum<T, kVecBytes>(v); }
};


#if defined(__AVX512F__)
// Lane s of 128-bit block j of the result: the sum of lanes 4 j .. 4 j + 3 of v[s], s < 4.
__attribute__((always_inline)) inline __m512 block_sums4(const __m512* v) {
  const __m512d x = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1])));
  const __m512d y = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3])));
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}

// Blocks (b0.0 + b0.1, b0.2 + b0.3, b1.0 + b1.1, b1.2 + b1.3) of two block_sums4 results.
__attribute__((always_inline)) inline __m512 add_block_pairs(__m512 b0, __m512 b1) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Lane 4 g + s of the result is the sum of the 16 lanes of v[4 g + s]: a transposed reduction,
// 45 shuffles and adds for 16 sums.
__attribute__((always_inline)) inline __m512 sum16(const __m512* v) {
  return add_block_pairs(add_block_pairs(block_sums4(v), block_sums4(v + 4)),
                         add_block_pairs(block_sums4(v + 8), block_sums4(v + 12)));
}

// Lane s of the result is the sum of the 16 lanes of v[s], s < 4.
__attribute__((always_inline)) inline __m128 sum4(const __m512* v) {
  const __m512 b = block_sums4(v);
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Lane s of block 0 (block 2) of the result is the sum of the 16 lanes of v[s] (v[4 + s]).
__attribute__((always_inline)) inline __m512 sum8(const __m512* v) {
  const __m512 c = add_block_pairs(block_sums4(v), block_sums4(v + 4));
  return _mm512_add_ps(c, _mm512_shuffle_f32x4(c, c, _MM_SHUFFLE(2, 3, 0, 1)));
}
#endif

#if defined(__AVX512F__)
// The float kernel of dots_fixed: M query vectors and M x NT accumulators in registers, plain
// loads (masked loads measured slower, so the last d mod 16 channels are added after).
template <int M, int NT>
__attribute__((always_inline)) inline void dots_avx512(const float* const* q, const float* taps, int64_t stride,
                                                       int64_t d, float* out, int64_t ldo) {
  __m512 acc[M][NT] = {};
  const float* tap[NT];
  for (int t = 0; t < NT; ++t) tap[t] = taps + t * stride;
  const int64_t full = d & ~int64_t(15);
  for (int64_t i = 0; i < full; i += 16) {
    __m512 qv[M];
    for (int m = 0; m < M; ++m) qv[m] = _mm512_loadu_ps(q[m] + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 tv = _mm512_loadu_ps(tap[t] + i);
      for (int m = 0; m < M; ++m) acc[m][t] = _mm512_fmadd_ps(qv[m], tv, acc[m][t]);
    }
  }
  if constexpr (M == 4) {
    // Transposed reductions: taps 0..3, then a pair, then one (constant indices keep acc in registers).
    static_assert(NT <= 7);
    constexpr int kPair = NT >= 4 ? 4 : 0, kOne = kPair + (NT - kPair >= 2 ? 2 : 0);
    if constexpr (NT >= 4) {
      const __m512 v[16] = {acc[0][0], acc[0][1], acc[0][2], acc[0][3], acc[1][0], acc[1][1], acc[1][2], acc[1][3],
                            acc[2][0], acc[2][1], acc[2][2], acc[2][3], acc[3][0], acc[3][1], acc[3][2], acc[3][3]};
      const __m512 sums = sum16(v);
      _mm_storeu_ps(out, _mm512_extractf32x4_ps(sums, 0));
      _mm_storeu_ps(out + ldo, _mm512_extractf32x4_ps(sums, 1));
      _mm_storeu_ps(out + 2 * ldo, _mm512_extractf32x4_ps(sums, 2));
      _mm_storeu_ps(out + 3 * ldo, _mm512_extractf32x4_ps(sums, 3));
    }
    if constexpr (kOne > kPair) {  // eight sums: block 0 queries 0 and 1, block 2 queries 2 and 3
      constexpr int t = kPair;
      const __m512 v[8] = {acc[0][t], acc[0][t + 1], acc[1][t], acc[1][t + 1],
                           acc[2][t], acc[2][t + 1], acc[3][t], acc[3][t + 1]};
      const __m512 pairs = sum8(v);
      const __m128 lo = _mm512_extractf32x4_ps(pairs, 0), hi = _mm512_extractf32x4_ps(pairs, 2);
      _mm_storel_pi(reinterpret_cast<__m64*>(out + t), lo);
      _mm_storeh_pi(reinterpret_cast<__m64*>(out + ldo + t), lo);
      _mm_storel_pi(reinterpret_cast<__m64*>(out + 2 * ldo + t), hi);
      _mm_storeh_pi(reinterpret_cast<__m64*>(out + 3 * ldo + t), hi);
    }
    if constexpr (kOne < NT) {
      constexpr int t = kOne;
      const __m512 v[4] = {acc[0][t], acc[1][t], acc[2][t], acc[3][t]};
      const __m128 one = sum4(v);
      _mm_store_ss(out + t, one);
      _mm_store_ss(out + ldo + t, _mm_movehdup_ps(one));
      _mm_store_ss(out + 2 * ldo + t, _mm_movehl_ps(one, one));
      _mm_store_ss(out + 3 * ldo + t, _mm_shuffle_ps(one, one, 3));
    }
  } else {
    for (int m = 0; m < M; ++m)
      for (int t = 0; t < NT; ++t) out[m * ldo + t] = _mm512_reduce_add_ps(acc[m][t]);
  }
  for (int64_t j = full; j < d; ++j)
    for (int m = 0; m < M; ++m)
      for (int t = 0; t < NT; ++t) out[m * ldo + t] += q[m][j] * tap[t][j];
}
#endif

// out[m][t] = <q[m], taps + t stride> for M queries and NT taps of length d; out rows are `ldo` apart.
template <typename T, int M, int NT>
void dots_fixed(const T* const* q, const T* taps, int64_t stride, int64_t d, T* out, int64_t ldo) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return dots_avx512<M, NT>(q, taps, stride, d, out, ldo);
#endif
  using V = Vec<T>;
  typename V::type acc[M][NT] = {};
  int64_t i = 0;
  for (; i + V::kLanes <= d; i += V::kLanes) {
    typename V::type qv[M];
    for (int m = 0; m < M; ++m) qv[m] = V::load(q[m] + i);
    for (int t = 0; t < NT; ++t) {
      const typename V::type tv = V::load(taps + t * stride + i);
      for (int m = 0; m < M; ++m) acc[m][t] += qv[m] * tv;
    }
  }
  for (int m = 0; m < M; ++m)
    for (int t = 0; t < NT; ++t) {
      T s = V::sum(acc[m][t]);
      for (int64_t j = i; j < d; ++j) s += q[m][j] * taps[t * stride + j];
      out[m * ldo + t] = s;
    }
}

// dots_fixed over `count` taps (taps + t stride), kTaps at a time.
template <typename T, int M>
void dots(const T* const* q, const T* taps, int64_t stride, int64_t count, int64_t d, T* out, int64_t ldo) {
  // Registers: M query vectors and M x kTaps accumulators.
  constexpr int kTaps = M == 1 ? 8 : M == 2 ? (kVecBytes == 64 ? 6 : 4) : (kVecBytes == 64 ? 6 : 2);
  for (; count >= kTaps; count -= kTaps, taps += kTaps * stride, out += kTaps)
    dots_fixed<T, M, kTaps>(q, taps, stride, d, out, ldo);
  switch (count) {
    case 7: return dots_fixed<T, M, 7>(q, taps, stride, d, out, ldo);
    case 6: return dots_fixed<T, M, 6>(q, taps, stride, d, out, ldo);
    case 5: return dots_fixed<T, M, 5>(q, taps, stride, d, out, ldo);
    case 4: return dots_fixed<T, M, 4>(q, taps, stride, d, out, ldo);
    case 3: return dots_fixed<T, M, 3>(q, taps, stride, d, out, ldo);
    case 2: return dots_fixed<T, M, 2>(q, taps, stride, d, out, ldo);
    case 1: return dots_fixed<T, M, 1>(q, taps, stride, d, out, ldo);
    default: return;
  }
}

// ------------------------------------------------------------------ kernels

template <typename T>
struct Level {
  const T* data;
  int64_t h, w;
};

template <typename T>
Window<T> level_window(const T* xy, int level, int64_t r, const Level<T>& lv) {
  const T s = std::ldexp(T(1), -level);  // exact: coords / 2^l
  return window_at(xy[0] * s, xy[1] * s, r, lv.h, lv.w);
}

// All pairs: the map of query q at level l is levels[l].data + q h_l w_l.
template <typename T>
void lookup_impl(ffi::ThreadPool& pool, const std::vector<Level<T>>& levels, const T* xy, int64_t queries, int64_t r,
                 T* out) {
  const int64_t k = 2 * r + 2, n = (2 * r + 1) * (2 * r + 1), channels = n * levels.size();
  parallel_for(pool, queries, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(k * k);
    for (int64_t q = begin; q < end; ++q) {
      for (size_t l = 0; l < levels.size(); ++l) {
        const Level<T>& lv = levels[l];
        T* dst = out + q * channels + l * n;
        const Window<T> win = level_window(xy + 2 * q, l, r, lv);
        if (win.empty) {
          std::fill(dst, dst + n, T(0));
          continue;
        }
        const T* map = lv.data + q * lv.h * lv.w;
        if (win.row0 >= 0 && win.col0 >= 0 && win.row0 + k <= lv.h && win.col0 + k <= lv.w) {
          blend(map + win.row0 * lv.w + win.col0, lv.w, 1, r, win.fx, win.fy, dst);
          continue;
        }
        Box<T> box{win.row0, win.col0, k, k, patch.data()};
        std::fill(patch.begin(), patch.end(), T(0));
        box.fill(lv.h, lv.w, [&](int64_t col, int64_t r0, int64_t r1, T* d) {
          for (int64_t row = r0; row < r1; ++row) d[row - r0] = map[row * lv.w + col];
        });
        box.blend_window(win, r, dst);
      }
    }
  });
}

// out[j] = mean of the 2 x 2 taps a[2 j], a[2 j + 1], b[2 j], b[2 j + 1] with b = a + stride, j < n.
template <typename T>
void pool_pairs(const T* above, int64_t stride, int64_t n, T* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (n <= 8) {
      const __mmask16 in = static_cast<__mmask16>((1u << (2 * n)) - 1);
      const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(in, above), _mm512_maskz_loadu_ps(in, above + stride));
      const __m512i even = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
      const __m512 s = _mm512_permutexvar_ps(even, v);  // even lanes in the low half, odd in the high
      const __m256 sum = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
      _mm256_mask_storeu_ps(out, static_cast<__mmask8>((1u << n) - 1), _mm256_mul_ps(sum, _mm256_set1_ps(0.25f)));
      return;
    }
  }
#endif
  for (int64_t j = 0; j < n; ++j)
    out[j] = (above[2 * j] + above[stride + 2 * j] + above[2 * j + 1] + above[stride + 2 * j + 1]) * T(0.25);
}

// The queries (row-major indices into B x H x W) of 2 x 2 block `blk` of the ceil(H/2) x ceil(W/2)
// blocks of each image, in row order; returns how many (fewer at an odd bottom or right edge).
inline int block_queries(int64_t blk, int64_t height, int64_t width, int64_t* qs) {
  const int64_t bh = (height + 1) / 2, bw = (width + 1) / 2;
  const int64_t b = blk / (bh * bw), y = blk / bw % bh * 2, x = blk % bw * 2;
  int count = 0;
  for (int64_t i = y; i < std::min(y + 2, height); ++i)
    for (int64_t j = x; j < std::min(x + 2, width); ++j) qs[count++] = (b * height + i) * width + j;
  return count;
}

// floor(x / 2) and ceil(x / 2) for any sign of x.
inline int64_t floor_half(int64_t x) { return x >= 0 ? x / 2 : -((1 - x) / 2); }
inline int64_t ceil_half(int64_t x) { return -floor_half(-x); }

// On the fly: tap (i, j) of query q = scale <f1[q], f2_l[b, i, j]>. Queries go in 2 x 2 blocks;
// a block whose windows lie within one (2r+4)^2 box of taps shares it (each tap is loaded once
// for all four queries), else each row pair that fits shares a box, else each query has its own.
// Boxes are filled by columns, so the blend reads a window column with one load. f2_{l+1} is
// the 2 x 2 average pool of f2_l, so a level-(l+1) tap whose four children lie in the block's
// shared level-l box is their mean (the pooled volume's value), not a dot product.
template <typename T>
void windows_impl(ffi::ThreadPool& pool, const T* f1, const std::vector<Level<T>>& levels, const T* xy, int64_t batch,
                  int64_t height, int64_t width, int64_t d, int64_t r, T scale, T* out) {
  const int64_t k = 2 * r + 2, n = (2 * r + 1) * (2 * r + 1), channels = n * levels.size();
  const int64_t bh = (height + 1) / 2, bw = (width + 1) / 2;
  const int64_t patch_size = 4 * (k + 2) * (k + 2);  // a box of taps for each of four queries
  parallel_for(pool, batch * bh * bw, [&](int64_t begin, int64_t end) {
    std::vector<T> patches(2 * patch_size);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t b = blk / (bh * bw);
      int64_t qs[4];
      const int count = block_queries(blk, height, width, qs);
      const T* q[4];
      for (int m = 0; m < count; ++m) q[m] = f1 + qs[m] * d;
      Box<T> parent{0, 0, 0, 0, nullptr};  // the previous level's box shared by all four queries
      for (size_t l = 0; l < levels.size(); ++l) {
        const Level<T>& lv = levels[l];
        const T* f2 = lv.data + b * lv.h * lv.w * d;
        T* patch = patches.data() + (l % 2) * patch_size;
        Window<T> wins[4];
        for (int m = 0; m < count; ++m) wins[m] = level_window(xy + 2 * qs[m], l, r, lv);
        // Queries first..first+num from one shared box if their windows fit in (k+2)^2 taps.
        auto run = [&](int first, int num) -> bool {
          int64_t row0 = wins[first].row0, col0 = wins[first].col0, row1 = row0 + k, col1 = col0 + k;
          for (int m = first; m < first + num; ++m) {
            if (wins[m].empty) return false;
            row0 = std::min(row0, wins[m].row0), col0 = std::min(col0, wins[m].col0);
            row1 = std::max(row1, wins[m].row0 + k), col1 = std::max(col1, wins[m].col0 + k);
          }
          if (num > 1 && (row1 - row0 > k + 2 || col1 - col0 > k + 2)) return false;
          const int64_t size = (row1 - row0) * (col1 - col0);
          if (row0 < 0 || col0 < 0 || row1 > lv.h || col1 > lv.w) std::fill(patch, patch + num * size, T(0));
          Box<T> box{row0, col0, row1 - row0, col1 - col0, patch};
          // Taps with all four children in the parent box: rows [pr0, pr1), columns [pc0, pc1).
          int64_t pr0 = 0, pr1 = 0, pc0 = 0, pc1 = 0;
          if (num == 4 && parent.data) {
            pr0 = ceil_half(parent.row0), pr1 = floor_half(parent.row0 + parent.rows);
            pc0 = ceil_half(parent.col0), pc1 = floor_half(parent.col0 + parent.cols);
          }
          box.fill(lv.h, lv.w, [&](int64_t col, int64_t r0, int64_t r1, T* dst) {
            // Rows [m0, m1) from the parent, the rest as dot products (dst + m size: query m's patch).
            int64_t m0 = std::max(r0, pr0), m1 = std::min(r1, pr1);
            if (col < pc0 || col >= pc1 || m0 >= m1) m0 = m1 = r1;
            const int64_t stride = lv.w * d;  // one map row
            for (auto [top, bottom] : {std::pair{r0, m0}, std::pair{m1, r1}}) {
              const int64_t rows = bottom - top;
              if (rows == 0) continue;
              const T* taps = f2 + (top * lv.w + col) * d;
              switch (num) {
                case 4: dots<T, 4>(q + first, taps, stride, rows, d, dst + (top - r0), size); break;
                case 2: dots<T, 2>(q + first, taps, stride, rows, d, dst + (top - r0), size); break;
                default: dots<T, 1>(q + first, taps, stride, rows, d, dst + (top - r0), size);
              }
            }
            if (m0 == m1) return;
            const T* left = parent.data + (2 * col - parent.col0) * parent.rows + (2 * m0 - parent.row0);
            for (int m = 0; m < 4; ++m)
              pool_pairs(left + m * parent.rows * parent.cols, parent.rows, m1 - m0, dst + m * size + (m0 - r0));
          });
          for (int m = 0; m < num; ++m) {
            Box<T> own{row0, col0, box.rows, box.cols, patch + m * size};
            T* dst = out + qs[first + m] * channels + l * n;
            own.blend_window(wins[first + m], r, dst, scale);
          }
          if (num == 4) parent = box;
          return true;
        };
        if (count == 4 && run(0, 4)) continue;
        parent.data = nullptr;
        for (int first = 0; first < count; first += 2) {
          const int num = std::min(2, count - first);
          if (num == 2 && run(first, 2)) continue;
          for (int m = first; m < first + num; ++m) {
            if (!run(m, 1)) std::fill(out + qs[m] * channels + l * n, out + qs[m] * channels + (l + 1) * n, T(0));
          }
        }
      }
    }
  });
}

// Gradient of lookup_impl in the volume: each query's taps go to its own maps, so queries run
// in parallel without conflicts. dvolumes are written whole.
template <typename T>
void lookup_grad_impl(ffi::ThreadPool& pool, const std::vector<Level<T>>& dlevels, const T* xy, const T* g,
                      int64_t queries, int64_t r) {
  const int64_t k = 2 * r + 2, n = (2 * r + 1) * (2 * r + 1), channels = n * dlevels.size();
  parallel_for(pool, queries, [&](int64_t begin, int64_t end) {
    std::vector<T> taps(k * k);
    for (int64_t q = begin; q < end; ++q) {
      for (size_t l = 0; l < dlevels.size(); ++l) {
        const Level<T>& lv = dlevels[l];
        T* map = const_cast<T*>(lv.data) + q * lv.h * lv.w;
        std::fill(map, map + lv.h * lv.w, T(0));
        const Window<T> win = level_window(xy + 2 * q, l, r, lv);
        if (win.empty) continue;
        unblend(g + q * channels + l * n, r, win.fx, win.fy, T(1), taps.data(), k);
        clip_rows(win.row0, win.col0, k, k, lv.h, lv.w, [&](int64_t i, int64_t row, int64_t c0, int64_t c1) {
          for (int64_t c = c0; c < c1; ++c) map[row * lv.w + c] += taps[(c - win.col0) * k + i];
        });
      }
    }
  });
}

// y_t[0..d) += sum_m a[t][m] x[m][0..d) for nt <= 4 contiguous vectors y_t = y + t d and M vectors x[m]
// (each chunk of the x[m] loaded once for the nt vectors).
template <typename T, int M>
void axpy_taps(const T (*a)[4], const T* const* x, int nt, int64_t d, T* y) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::kLanes <= d; i += V::kLanes) {
    typename V::type xv[M];
    for (int m = 0; m < M; ++m) xv[m] = V::load(x[m] + i);
    for (int t = 0; t < nt; ++t) {
      typename V::type acc = V::load(y + t * d + i);
      for (int m = 0; m < M; ++m) acc += a[t][m] * xv[m];
      std::memcpy(y + t * d + i, &acc, sizeof(acc));
    }
  }
  for (; i < d; ++i)
    for (int t = 0; t < nt; ++t)
      for (int m = 0; m < M; ++m) y[t * d + i] += a[t][m] * x[m][i];
}

// out[m][0..d) += sum_p a[m ld + p] x[p][0..d) for M rows of coefficients and `count` vectors x[p]
// (a register tile of M x kCols vectors per pass over the taps).
template <typename T, int M>
void tap_gemv(const T* a, int64_t ld, const T* const* x, int64_t count, int64_t d, T* const* out) {
  using V = Vec<T>;
  constexpr int kCols = kVecBytes == 64 ? 4 : 2;
  int64_t i = 0;
  for (; i + kCols * V::kLanes <= d; i += kCols * V::kLanes) {
    typename V::type acc[M][kCols] = {};
    for (int64_t p = 0; p < count; ++p) {
      typename V::type xv[kCols];
      for (int c = 0; c < kCols; ++c) xv[c] = V::load(x[p] + i + c * V::kLanes);
      for (int m = 0; m < M; ++m) {
        const T am = a[m * ld + p];
        for (int c = 0; c < kCols; ++c) acc[m][c] += am * xv[c];
      }
    }
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < kCols; ++c) {
        const typename V::type sum = V::load(out[m] + i + c * V::kLanes) + acc[m][c];
        std::memcpy(out[m] + i + c * V::kLanes, &sum, sizeof(sum));
      }
  }
  for (; i < d; ++i)
    for (int m = 0; m < M; ++m) {
      T sum = 0;
      for (int64_t p = 0; p < count; ++p) sum += a[m * ld + p] * x[p][i];
      out[m][i] += sum;
    }
}

// Splits the windows wins[0..count) of one level into groups that share one box of taps (all of
// them if they fit in (k+2)^2 taps, else one each) and calls f(first, num, box) per group, with the
// tap cotangents of query first + m (unblended from its rows g_m of g) by columns: box tap (i, j) at
// box.data[m box.rows box.cols + j box.rows + i].
template <typename T, typename F>
void for_each_tap_group(const Window<T>* wins, const T* const* g, int count, int64_t r, T scale, T* grid, F f) {
  const int64_t k = 2 * r + 2;
  if (count == 0) return;
  int64_t row0 = INT64_MAX, col0 = INT64_MAX, row1 = INT64_MIN, col1 = INT64_MIN;
  for (int m = 0; m < count; ++m) {
    row0 = std::min(row0, wins[m].row0), col0 = std::min(col0, wins[m].col0);
    row1 = std::max(row1, wins[m].row0 + k), col1 = std::max(col1, wins[m].col0 + k);
  }
  const bool shared = row1 - row0 <= k + 2 && col1 - col0 <= k + 2;
  for (int first = 0; first < count; first += shared ? count : 1) {
    const int num = shared ? count : 1;
    const Box<T> box = shared ? Box<T>{row0, col0, row1 - row0, col1 - col0, grid}
                              : Box<T>{wins[first].row0, wins[first].col0, k, k, grid};
    const int64_t size = box.rows * box.cols;
    std::fill(grid, grid + num * size, T(0));
    for (int m = 0; m < num; ++m) {
      const Window<T>& win = wins[first + m];
      unblend(g[first + m], r, win.fx, win.fy, scale,
              grid + m * size + (win.col0 - box.col0) * box.rows + (win.row0 - box.row0), box.rows);
    }
    f(first, num, box);
  }
}

// Gradient of windows_impl, with the forward's 2 x 2 query blocks sharing a box of taps.
// df1[q] = sum over the taps of dtap f2_l[tap], blocks in parallel (each f2 vector read once per
// block); df2_l[tap] += dtap f1[q], in parallel over bands of map rows, each band visiting the
// blocks in order (no two workers write one row; the sums do not depend on the thread count).
template <typename T>
void windows_grad_impl(ffi::ThreadPool& pool, const T* f1, const std::vector<Level<T>>& levels,
                       const std::vector<Level<T>>& dlevels, const T* xy, const T* g, int64_t batch, int64_t height,
                       int64_t width, int64_t d, int64_t r, T scale, T* df1) {
  const int64_t k = 2 * r + 2, n = (2 * r + 1) * (2 * r + 1), channels = n * levels.size();
  const int64_t bh = (height + 1) / 2, bw = (width + 1) / 2;
  parallel_for(pool, batch * bh * bw, [&](int64_t begin, int64_t end) {
    std::vector<T> grid(4 * (k + 2) * (k + 2)), coef(4 * (k + 2) * (k + 2));
    std::vector<const T*> vectors((k + 2) * (k + 2));
    std::vector<int64_t> at((k + 2) * (k + 2));
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t b = blk / (bh * bw);
      int64_t all[4];
      const int total = block_queries(blk, height, width, all);
      for (int m = 0; m < total; ++m) std::fill(df1 + all[m] * d, df1 + (all[m] + 1) * d, T(0));
      for (size_t l = 0; l < levels.size(); ++l) {
        const Level<T>& lv = levels[l];
        const T* f2 = lv.data + b * lv.h * lv.w * d;
        int64_t qs[4];
        Window<T> wins[4];
        int count = 0;
        for (int m = 0; m < total; ++m) {
          const Window<T> win = level_window(xy + 2 * all[m], l, r, lv);
          if (!win.empty) qs[count] = all[m], wins[count++] = win;
        }
        const T* gs[4];
        for (int m = 0; m < count; ++m) gs[m] = g + qs[m] * channels + l * n;
        for_each_tap_group(wins, gs, count, r, scale, grid.data(), [&](int first, int num, const Box<T>& box) {
          // The group's in-map taps, each f2 vector read once for all of its queries.
          T* outs[4];
          for (int m = 0; m < num; ++m) outs[m] = df1 + qs[first + m] * d;
          int64_t count_taps = 0;
          clip_rows(box.row0, box.col0, box.rows, box.cols, lv.h, lv.w, [&](int64_t i, int64_t row, int64_t c0, int64_t c1) {
            for (int64_t col = c0; col < c1; ++col, ++count_taps) {
              vectors[count_taps] = f2 + (row * lv.w + col) * d;
              at[count_taps] = (col - box.col0) * box.rows + i;
            }
          });
          for (int m = 0; m < num; ++m)
            for (int64_t p = 0; p < count_taps; ++p) coef[m * count_taps + p] = box.data[m * box.rows * box.cols + at[p]];
          switch (num) {
            case 4: tap_gemv<T, 4>(coef.data(), count_taps, vectors.data(), count_taps, d, outs); break;
            case 3: tap_gemv<T, 3>(coef.data(), count_taps, vectors.data(), count_taps, d, outs); break;
            case 2: tap_gemv<T, 2>(coef.data(), count_taps, vectors.data(), count_taps, d, outs); break;
            default: tap_gemv<T, 1>(coef.data(), count_taps, vectors.data(), count_taps, d, outs);
          }
        });
      }
    }
  });
  constexpr int64_t kBand = 8;  // map rows per work item
  std::vector<std::pair<int64_t, int64_t>> bands;  // (level, first row)
  for (size_t l = 0; l < dlevels.size(); ++l)
    for (int64_t row = 0; row < dlevels[l].h; row += kBand) bands.emplace_back(l, row);
  parallel_for(
      pool, bands.size(),
      [&](int64_t begin, int64_t end) {
        std::vector<T> grid(4 * (k + 2) * (k + 2));
        for (int64_t item = begin; item < end; ++item) {
          const auto [l, band0] = bands[item];
          const Level<T>& dl = dlevels[l];
          const int64_t band1 = std::min(band0 + kBand, dl.h), row_size = dl.w * d;
          T* df2 = const_cast<T*>(dl.data);
          for (int64_t b = 0; b < batch; ++b) {
            T* dmap = df2 + b * dl.h * row_size;
            std::fill(dmap + band0 * row_size, dmap + band1 * row_size, T(0));
            for (int64_t blk = 0; blk < bh * bw; ++blk) {
              // The block's queries whose windows reach the band.
              int64_t all[4], qs[4];
              Window<T> wins[4];
              int count = 0;
              for (int m = 0, total = block_queries(b * bh * bw + blk, height, width, all); m < total; ++m) {
                const Window<T> win = level_window(xy + 2 * all[m], l, r, dl);
                if (win.empty || win.row0 + k <= band0 || win.row0 >= band1) continue;
                qs[count] = all[m], wins[count++] = win;
              }
              const T* gs[4];
              for (int m = 0; m < count; ++m) gs[m] = g + qs[m] * channels + l * n;
              for_each_tap_group(wins, gs, count, r, scale, grid.data(), [&](int first, int num, const Box<T>& box) {
                const T* xs[4];
                for (int m = 0; m < num; ++m) xs[m] = f1 + qs[first + m] * d;
                const int64_t size = box.rows * box.cols;
                auto scatter = [&](int64_t i, int64_t row, int64_t c0, int64_t c1) {
                  for (int64_t col = c0; col < c1; col += 4) {  // four df2 vectors at a time
                    const int nt = static_cast<int>(std::min<int64_t>(4, c1 - col));
                    T a[4][4];
                    for (int t = 0; t < nt; ++t)
                      for (int m = 0; m < num; ++m) a[t][m] = box.data[m * size + (col + t - box.col0) * box.rows + i];
                    T* y = dmap + (row * dl.w + col) * d;
                    switch (num) {
                      case 4: axpy_taps<T, 4>(a, xs, nt, d, y); break;
                      case 3: axpy_taps<T, 3>(a, xs, nt, d, y); break;
                      case 2: axpy_taps<T, 2>(a, xs, nt, d, y); break;
                      default: axpy_taps<T, 1>(a, xs, nt, d, y);
                    }
                  }
                };
                clip_rows(box.row0, box.col0, box.rows, box.cols, dl.h, dl.w, scatter, band0, band1);
              });
            }
          }
        }
      },
      1);
}

ffi::Error check_radius(int64_t r) {
  if (r < 0 || 2 * r + 2 > 64) return ffi::Error::InvalidArgument("radius must be in [0, 31]");
  return ffi::Error::Success();
}

// Levels from remaining arguments or results: maps of shape (..., h, w[, d]), h and w at axes
// `axis` and `axis` + 1.
template <typename T, typename Buffer>
ffi::ErrorOr<Level<T>> level_of(const Buffer& buf, ffi::DataType type, size_t axis) {
  if (buf.element_type() != type) return ffi::Unexpected(ffi::Error::InvalidArgument("levels must share one dtype"));
  auto dims = buf.dimensions();
  if (dims.size() < axis + 2) return ffi::Unexpected(ffi::Error::InvalidArgument("level of too few dimensions"));
  return Level<T>{buf.template typed_data<T>(), dims[axis], dims[axis + 1]};
}

template <typename T>
ffi::ErrorOr<std::vector<Level<T>>> levels_of(const ffi::RemainingArgs& args, ffi::DataType type, size_t axis) {
  std::vector<Level<T>> levels;
  for (size_t i = 0; i < args.size(); ++i) {
    auto buf = args.get<ffi::AnyBuffer>(i);
    if (buf.has_error()) return ffi::Unexpected(buf.error());
    auto level = level_of<T>(*buf, type, axis);
    if (level.has_error()) return ffi::Unexpected(level.error());
    levels.push_back(*level);
  }
  if (levels.empty() || levels.size() > 16) return ffi::Unexpected(ffi::Error::InvalidArgument("1 to 16 levels"));
  return levels;
}

template <typename T>
ffi::ErrorOr<std::vector<Level<T>>> levels_of(const ffi::RemainingRets& rets, ffi::DataType type, size_t axis) {
  std::vector<Level<T>> levels;
  for (size_t i = 0; i < rets.size(); ++i) {
    auto buf = rets.get<ffi::AnyBuffer>(i);
    if (buf.has_error()) return ffi::Unexpected(buf.error());
    auto level = level_of<T>(**buf, type, axis);
    if (level.has_error()) return ffi::Unexpected(level.error());
    levels.push_back(*level);
  }
  return levels;
}

template <typename T>
ffi::Error lookup_typed(ffi::ThreadPool& pool, ffi::AnyBuffer xy, const ffi::RemainingArgs& volumes,
                        ffi::Result<ffi::AnyBuffer>& out, int64_t radius) {
  auto levels = levels_of<T>(volumes, xy.element_type(), 1);
  if (levels.has_error()) return levels.error();
  lookup_impl<T>(pool, *levels, xy.typed_data<T>(), xy.dimensions()[0], radius, out->typed_data<T>());
  return ffi::Error::Success();
}

ffi::Error Lookup(ffi::ThreadPool pool, ffi::AnyBuffer xy, ffi::RemainingArgs volumes, ffi::Result<ffi::AnyBuffer> out,
                  int64_t radius) {
  if (auto e = check_radius(radius); e.failure()) return e;
  if (xy.dimensions().size() != 2) return ffi::Error::InvalidArgument("xy must be (queries, 2)");
  switch (xy.element_type()) {
    case ffi::DataType::F32: return lookup_typed<float>(pool, xy, volumes, out, radius);
    case ffi::DataType::F64: return lookup_typed<double>(pool, xy, volumes, out, radius);
    default: return ffi::Error::InvalidArgument("float32 or float64 only");
  }
}

template <typename T>
ffi::Error windows_typed(ffi::ThreadPool& pool, ffi::AnyBuffer f1, ffi::AnyBuffer xy, const ffi::RemainingArgs& f2,
                         ffi::Result<ffi::AnyBuffer>& out, int64_t radius, double scale) {
  auto levels = levels_of<T>(f2, f1.element_type(), 1);
  if (levels.has_error()) return levels.error();
  auto dims = f1.dimensions();  // (B, H, W, D)
  windows_impl<T>(pool, f1.typed_data<T>(), *levels, xy.typed_data<T>(), dims[0], dims[1], dims[2], dims[3], radius,
                  static_cast<T>(scale), out->typed_data<T>());
  return ffi::Error::Success();
}

ffi::Error Windows(ffi::ThreadPool pool, ffi::AnyBuffer f1, ffi::AnyBuffer xy, ffi::RemainingArgs f2,
                   ffi::Result<ffi::AnyBuffer> out, int64_t radius, double scale) {
  if (auto e = check_radius(radius); e.failure()) return e;
  if (f1.dimensions().size() != 4) return ffi::Error::InvalidArgument("f1 must be (B, H, W, D)");
  switch (f1.element_type()) {
    case ffi::DataType::F32: return windows_typed<float>(pool, f1, xy, f2, out, radius, scale);
    case ffi::DataType::F64: return windows_typed<double>(pool, f1, xy, f2, out, radius, scale);
    default: return ffi::Error::InvalidArgument("float32 or float64 only");
  }
}

template <typename T>
ffi::Error lookup_grad_typed(ffi::ThreadPool& pool, ffi::AnyBuffer xy, ffi::AnyBuffer g,
                             const ffi::RemainingRets& dvolumes, int64_t radius) {
  auto levels = levels_of<T>(dvolumes, xy.element_type(), 1);
  if (levels.has_error()) return levels.error();
  lookup_grad_impl<T>(pool, *levels, xy.typed_data<T>(), g.typed_data<T>(), xy.dimensions()[0], radius);
  return ffi::Error::Success();
}

ffi::Error LookupGrad(ffi::ThreadPool pool, ffi::AnyBuffer xy, ffi::AnyBuffer g, ffi::RemainingRets dvolumes,
                      int64_t radius) {
  if (auto e = check_radius(radius); e.failure()) return e;
  switch (xy.element_type()) {
    case ffi::DataType::F32: return lookup_grad_typed<float>(pool, xy, g, dvolumes, radius);
    case ffi::DataType::F64: return lookup_grad_typed<double>(pool, xy, g, dvolumes, radius);
    default: return ffi::Error::InvalidArgument("float32 or float64 only");
  }
}

template <typename T>
ffi::Error windows_grad_typed(ffi::ThreadPool& pool, ffi::AnyBuffer f1, ffi::AnyBuffer xy, ffi::AnyBuffer g,
                              const ffi::RemainingArgs& f2, ffi::Result<ffi::AnyBuffer>& df1,
                              const ffi::RemainingRets& df2, int64_t radius, double scale) {
  auto levels = levels_of<T>(f2, f1.element_type(), 1);
  if (levels.has_error()) return levels.error();
  auto dlevels = levels_of<T>(df2, f1.element_type(), 1);
  if (dlevels.has_error()) return dlevels.error();
  if (dlevels->size() != levels->size()) return ffi::Error::InvalidArgument("one gradient per level");
  auto dims = f1.dimensions();  // (B, H, W, D)
  windows_grad_impl<T>(pool, f1.typed_data<T>(), *levels, *dlevels, xy.typed_data<T>(), g.typed_data<T>(), dims[0],
                       dims[1], dims[2], dims[3], radius, static_cast<T>(scale), df1->typed_data<T>());
  return ffi::Error::Success();
}

ffi::Error WindowsGrad(ffi::ThreadPool pool, ffi::AnyBuffer f1, ffi::AnyBuffer xy, ffi::AnyBuffer g,
                       ffi::RemainingArgs f2, ffi::Result<ffi::AnyBuffer> df1, ffi::RemainingRets df2, int64_t radius,
                       double scale) {
  if (auto e = check_radius(radius); e.failure()) return e;
  if (f1.dimensions().size() != 4) return ffi::Error::InvalidArgument("f1 must be (B, H, W, D)");
  switch (f1.element_type()) {
    case ffi::DataType::F32: return windows_grad_typed<float>(pool, f1, xy, g, f2, df1, df2, radius, scale);
    case ffi::DataType::F64: return windows_grad_typed<double>(pool, f1, xy, g, f2, df1, df2, radius, scale);
    default: return ffi::Error::InvalidArgument("float32 or float64 only");
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdiffCorrLookupGrad, LookupGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<int64_t>("radius"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdiffCorrWindowsGrad, WindowsGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<int64_t>("radius")
                                  .Attr<double>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdiffCorrLookup, Lookup,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("radius"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdiffCorrWindows, Windows,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("radius")
                                  .Attr<double>("scale"));
