/*
 * One of collemu's native helpers (the other is native/kernels.c): poll a SharedArrayBuffer word
 * with sched_yield() between polls.
 *
 * Why: with more rank threads than cores, a rank that blocks in Atomics.wait costs a futex wake
 * per hand-off (tens of microseconds here, bench/dataplane.ts), and spinning steals the core the
 * awaited rank needs. Yielding between polls hands the core to a runnable rank at once, as MPI
 * implementations over shared memory do. runtime/worker.ts yields for a bounded time, then blocks
 * in Atomics.wait as before; without this addon (not built, or COLLEMU_NO_YIELD set) it blocks at
 * once. Built by scripts/build-native.mjs at install; never required.
 *
 *   pollYieldGE(i32: Int32Array, index, target, budgetNs) -> the last value read: as soon as
 *     i32[index] >= target (sequentially consistent load), or when budgetNs has elapsed.
 *     Keep budgetNs small (tens of microseconds): a worker is only terminated between calls.
 *   pollYieldGE(i32, index, target, budgetNs, busyIndex, maxBusy) -> the same, and it also returns
 *     as soon as i32[busyIndex] >= maxBusy (every core already has a rank with work to do: yielding
 *     would only take turns with it).
 *
 * Plain Node-API (node_api.h), NAPI_MODULE_INIT: context-aware, so it loads in worker threads.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static napi_value poll_yield_ge(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], out;
  napi_typedarray_type type;
  size_t len;
  void *data;
  uint32_t index;
  int32_t target;
  int64_t budget;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "pollYieldGE(i32, index, target, budgetNs)");
    return NULL;
  }
  if (napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "pollYieldGE: expected an Int32Array");
    return NULL;
  }
  if (napi_get_value_uint32(env, argv[1], &index) != napi_ok || index >= len) {
    napi_throw_range_error(env, NULL, "pollYieldGE: index out of range");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[2], &target) != napi_ok || napi_get_value_int64(env, argv[3], &budget) != napi_ok) {
    napi_throw_type_error(env, NULL, "pollYieldGE: target and budgetNs must be numbers");
    return NULL;
  }
  /* optional: stop early once i32[busyIndex] >= maxBusy (every core has a rank with work) */
  uint32_t busy_index = 0;
  int32_t max_busy = INT32_MAX;
  if (argc >= 6) {
    if (napi_get_value_uint32(env, argv[4], &busy_index) != napi_ok || busy_index >= len || napi_get_value_int32(env, argv[5], &max_busy) != napi_ok) {
      napi_throw_range_error(env, NULL, "pollYieldGE: busyIndex out of range or maxBusy not a number");
      return NULL;
    }
  }
  int32_t *p = (int32_t *)data + index;
  const int32_t *busy = (int32_t *)data + busy_index;
  int32_t cur;
  const int64_t t0 = now_ns();
  for (;;) {
    cur = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    if (cur >= target || now_ns() - t0 >= budget) break;
    if (argc >= 6 && __atomic_load_n(busy, __ATOMIC_RELAXED) >= max_busy) break;
    sched_yield();
  }
  napi_create_int32(env, cur, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor d[] = {
    { "pollYieldGE", NULL, poll_yield_ge, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
