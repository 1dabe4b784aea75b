/*
 * collemu's native data-plane kernels: element-wise float32 reductions and copies between any two
 * ranks' device memories (Float32Arrays over SharedArrayBuffers / shared WebAssembly memories).
 *
 * Why: the WebAssembly SIMD kernels (runtime/kernels.wat) address one memory only, so a reduction
 * whose source lives in another rank's memory first stages it through the rank's own memory, and
 * TypedArray.prototype.set between shared buffers copies with relaxed atomics, not memcpy. Here a
 * receive reduces straight from the peer's memory and copies with memcpy (measured in
 * bench/dataplane.ts, table (e)). Built by scripts/build-native.mjs at install; never required:
 * without it (or with COLLEMU_NO_NATIVE_KERNELS set) runtime/worker.ts uses the WASM/JS kernels.
 *
 *   reduce(dst, di, a, ai, b, bi, n, op)   dst[di+i] = a[ai+i] op b[bi+i], i < n
 *   copy(dst, di, src, si, n)              dst[di+i] = src[si+i] (memmove)
 *   reduceMany(dst, di, a, ai, srcs, srcIdx, n, op)
 *                                          dst = (((a op s0) op s1) ... op s_{k-1}) element-wise, in
 *                                          blocks of 16 KiB, so that a run of receive-reduces into
 *                                          one region reads and writes it once (runtime/worker.ts);
 *                                          the same rounding as k reduce calls in order
 * dst, a, b, src: Float32Arrays; indices and n in elements; op: 0 sum, 1 prod, 2 max, 3 min
 * (runtime/kernels.ts REDUCE_OPCODE). Ranges are checked (RangeError). dst may be exactly a or b.
 *
 * Results are bit-identical to runtime/reduce.ts (IEEE float32 +, *, and max/min with Math.max /
 * Math.min semantics: NaN if either is NaN, max(-0, +0) = +0, min(-0, +0) = -0) for every result
 * that is not NaN. No -ffast-math, and there is no multiply-add a compiler could contract.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

/* streaming (non-temporal) stores from this many bytes: the destination bypasses the caches */
#define NT_BYTES ((size_t)4 << 20)
static int use_nt = -1;
static int nt_on(size_t n) {
  if (use_nt < 0) { const char *e = getenv("COLLEMU_NO_NT"); use_nt = !(e && *e); }
  return use_nt && n * 4 >= NT_BYTES;
}

static int f32_arg(napi_env env, napi_value v, float **data, size_t *len) {
  napi_typedarray_type t;
  void *d;
  if (napi_get_typedarray_info(env, v, &t, len, &d, NULL, NULL) != napi_ok || t != napi_float32_array) return 0;
  *data = (float *)d;
  return 1;
}

/* a non-negative integer index/count below 2^53 */
static int index_arg(napi_env env, napi_value v, size_t *out) {
  double x;
  if (napi_get_value_double(env, v, &x) != napi_ok || !(x >= 0) || x > 9007199254740991.0 || x != (double)(int64_t)x) return 0;
  *out = (size_t)x;
  return 1;
}

static int in_range(size_t start, size_t n, size_t len) { return start <= len && n <= len - start; }

static void red_sum(float *d, const float *a, const float *b, size_t n) {
#ifdef __AVX__
  if (nt_on(n)) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(d + i) & 31) != 0; i++) d[i] = a[i] + b[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) d[i] = a[i] + b[i];
    _mm_sfence();
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) d[i] = a[i] + b[i];
}
static void copy_nt(float *d, const float *s, size_t n) {
#ifdef __AVX__
  if (nt_on(n) && (d + n <= s || s + n <= d)) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(d + i) & 31) != 0; i++) d[i] = s[i];
    for (; i + 32 <= n; i += 32) {
      __m256 x0 = _mm256_loadu_ps(s + i), x1 = _mm256_loadu_ps(s + i + 8), x2 = _mm256_loadu_ps(s + i + 16), x3 = _mm256_loadu_ps(s + i + 24);
      _mm256_stream_ps(d + i, x0); _mm256_stream_ps(d + i + 8, x1); _mm256_stream_ps(d + i + 16, x2); _mm256_stream_ps(d + i + 24, x3);
    }
    for (; i < n; i++) d[i] = s[i];
    _mm_sfence();
    return;
  }
#endif
  memmove(d, s, n * sizeof(float));
}
static void red_prod(float *d, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = a[i] * b[i];
}
static inline uint32_t bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float of_bits(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static void red_max(float *d, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float x = a[i], y = b[i];
    d[i] = (x != x || y != y) ? NAN : x == y ? of_bits(bits(x) & bits(y)) : x > y ? x : y;
  }
}
static void red_min(float *d, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float x = a[i], y = b[i];
    d[i] = (x != x || y != y) ? NAN : x == y ? of_bits(bits(x) | bits(y)) : x < y ? x : y;
  }
}

static napi_value reduce(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value v[8];
  float *D, *A, *B;
  size_t ld, la, lb, di, ai, bi, n;
  uint32_t op;
  if (napi_get_cb_info(env, info, &argc, v, NULL, NULL) != napi_ok || argc < 8
      || !f32_arg(env, v[0], &D, &ld) || !f32_arg(env, v[2], &A, &la) || !f32_arg(env, v[4], &B, &lb)) {
    napi_throw_type_error(env, NULL, "reduce(dst: Float32Array, di, a: Float32Array, ai, b: Float32Array, bi, n, op)");
    return NULL;
  }
  if (!index_arg(env, v[1], &di) || !index_arg(env, v[3], &ai) || !index_arg(env, v[5], &bi) || !index_arg(env, v[6], &n)
      || !in_range(di, n, ld) || !in_range(ai, n, la) || !in_range(bi, n, lb)) {
    napi_throw_range_error(env, NULL, "reduce: element range outside an array");
    return NULL;
  }
  if (napi_get_value_uint32(env, v[7], &op) != napi_ok || op > 3) {
    napi_throw_type_error(env, NULL, "reduce: op must be 0 (sum), 1 (prod), 2 (max) or 3 (min)");
    return NULL;
  }
  float *d = D + di;
  const float *a = A + ai, *b = B + bi;
  switch (op) {
    case 0: red_sum(d, a, b, n); break;
    case 1: red_prod(d, a, b, n); break;
    case 2: red_max(d, a, b, n); break;
    default: red_min(d, a, b, n); break;
  }
  return NULL;
}

static napi_value copy(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value v[5];
  float *D, *S;
  size_t ld, ls, di, si, n;
  if (napi_get_cb_info(env, info, &argc, v, NULL, NULL) != napi_ok || argc < 5
      || !f32_arg(env, v[0], &D, &ld) || !f32_arg(env, v[2], &S, &ls)) {
    napi_throw_type_error(env, NULL, "copy(dst: Float32Array, di, src: Float32Array, si, n)");
    return NULL;
  }
  if (!index_arg(env, v[1], &di) || !index_arg(env, v[3], &si) || !index_arg(env, v[4], &n) || !in_range(di, n, ld) || !in_range(si, n, ls)) {
    napi_throw_range_error(env, NULL, "copy: element range outside an array");
    return NULL;
  }
  copy_nt(D + di, S + si, n);
  return NULL;
}

/* reduceMany: dst = (((a op s0) op s1) ... op s_{k-1}), in blocks that stay in L1 */
#define MANY_MAX 64
#define MANY_BLOCK 4096
static napi_value reduce_many(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value v[8];
  float *D, *A;
  size_t ld, la, di, ai, n;
  uint32_t op, k, k2;
  const float *src[MANY_MAX];
  if (napi_get_cb_info(env, info, &argc, v, NULL, NULL) != napi_ok || argc < 8
      || !f32_arg(env, v[0], &D, &ld) || !f32_arg(env, v[2], &A, &la) || napi_get_array_length(env, v[4], &k) != napi_ok
      || napi_get_array_length(env, v[5], &k2) != napi_ok || k2 != k) {
    napi_throw_type_error(env, NULL, "reduceMany(dst: Float32Array, di, a: Float32Array, ai, srcs: Float32Array[], srcIdx: number[], n, op)");
    return NULL;
  }
  if (!index_arg(env, v[1], &di) || !index_arg(env, v[3], &ai) || !index_arg(env, v[6], &n) || !in_range(di, n, ld) || !in_range(ai, n, la)
      || k > MANY_MAX) {
    napi_throw_range_error(env, NULL, "reduceMany: element range outside an array, or too many sources");
    return NULL;
  }
  for (uint32_t j = 0; j < k; j++) {
    napi_value e, x;
    float *S;
    size_t ls, si;
    if (napi_get_element(env, v[4], j, &e) != napi_ok || !f32_arg(env, e, &S, &ls) || napi_get_element(env, v[5], j, &x) != napi_ok
        || !index_arg(env, x, &si) || !in_range(si, n, ls)) {
      napi_throw_range_error(env, NULL, "reduceMany: a source is not a Float32Array, or its range is outside it");
      return NULL;
    }
    src[j] = S + si;
  }
  if (napi_get_value_uint32(env, v[7], &op) != napi_ok || op > 3) {
    napi_throw_type_error(env, NULL, "reduceMany: op must be 0 (sum), 1 (prod), 2 (max) or 3 (min)");
    return NULL;
  }
  float *d = D + di;
  const float *a = A + ai;
  for (size_t b = 0; b < n; b += MANY_BLOCK) {
    const size_t m = n - b < MANY_BLOCK ? n - b : MANY_BLOCK;
    const float *x = a + b;
    for (uint32_t j = 0; j < k; j++) {
      switch (op) {
        case 0: red_sum(d + b, x, src[j] + b, m); break;
        case 1: red_prod(d + b, x, src[j] + b, m); break;
        case 2: red_max(d + b, x, src[j] + b, m); break;
        default: red_min(d + b, x, src[j] + b, m); break;
      }
      x = d + b;
    }
    if (k == 0 && d + b != x) memmove(d + b, x, m * sizeof(float));
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor d[] = {
    { "reduce", NULL, reduce, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reduceMany", NULL, reduce_many, NULL, NULL, NULL, napi_enumerable, NULL },
    { "copy", NULL, copy, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
