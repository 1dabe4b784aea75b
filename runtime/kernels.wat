;; collemu data-plane kernels: element-wise float32 reduce and scale, WebAssembly SIMD.
;;
;; The module imports the rank's device memory (a shared WebAssembly.Memory) and works on BYTE
;; offsets into it, so one instance per rank memory serves every buffer of that rank.
;;
;;   reduce(dst, a, b, n, op)   dst[i] = a[i] op b[i], i < n; op 0=sum 1=prod 2=max 3=min
;;   scale(dst, n, factor)      dst[i] = dst[i] * factor  (factor is an f32)
;;
;; Results are bit-identical to runtime/reduce.ts (reduceJs/scaleJs) except for the payload of a
;; NaN result (JS leaves that implementation-defined too):
;;   - f32 add/mul are correctly rounded in both;
;;   - f32x4.max/min and f32.max/min are the IEEE 754-2019 maximum/minimum: any NaN operand gives
;;     NaN and -0 < +0, which is exactly Math.max/Math.min. (The "pseudo" f32x4.pmax/pmin would
;;     NOT be: they are `a < b ? b : a` and get NaN and signed zeros wrong.)
;;
;; Addresses need no alignment: every access carries align=1 (v128.load/store and f32.load/store
;; are defined for any address; the hint only promises nothing about alignment). n = 0 does
;; nothing. dst may be exactly a or exactly b (each vector is loaded before its lanes are stored);
;; a dst that partially overlaps a or b at a different offset is not supported.
;; Out-of-bounds accesses trap (RuntimeError), as for any WebAssembly memory access.
;;
;; Loops: 16 elements (4 vectors, all loads before the stores) per iteration, then single
;; vectors, then a scalar tail of at most 3 elements.
(module
  (import "env" "memory" (memory 1 65536 shared))

  (func (export "reduce") (param $d i32) (param $a i32) (param $b i32) (param $n i32) (param $op i32)
    (block $bad
      (block $min
        (block $max
          (block $prod
            (block $sum
              (br_table $sum $prod $max $min $bad (local.get $op)))
            ;; op 0
            (call $sum (local.get $d) (local.get $a) (local.get $b) (local.get $n))
            (return))
          ;; op 1
          (call $prod (local.get $d) (local.get $a) (local.get $b) (local.get $n))
          (return))
        ;; op 2
        (call $max (local.get $d) (local.get $a) (local.get $b) (local.get $n))
        (return))
      ;; op 3
      (call $min (local.get $d) (local.get $a) (local.get $b) (local.get $n))
      (return))
    ;; unknown opcode
    (unreachable))

  ;; ---------------------------------------------------------------------------------- sum
  (func $sum (param $d i32) (param $a i32) (param $b i32) (param $n i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (block $x16
      (loop $l16
        (br_if $x16 (i32.lt_u (local.get $n) (i32.const 16)))
        (local.set $v0 (f32x4.add (v128.load offset=0 align=1 (local.get $a))
                                  (v128.load offset=0 align=1 (local.get $b))))
        (local.set $v1 (f32x4.add (v128.load offset=16 align=1 (local.get $a))
                                  (v128.load offset=16 align=1 (local.get $b))))
        (local.set $v2 (f32x4.add (v128.load offset=32 align=1 (local.get $a))
                                  (v128.load offset=32 align=1 (local.get $b))))
        (local.set $v3 (f32x4.add (v128.load offset=48 align=1 (local.get $a))
                                  (v128.load offset=48 align=1 (local.get $b))))
        (v128.store offset=0 align=1 (local.get $d) (local.get $v0))
        (v128.store offset=16 align=1 (local.get $d) (local.get $v1))
        (v128.store offset=32 align=1 (local.get $d) (local.get $v2))
        (v128.store offset=48 align=1 (local.get $d) (local.get $v3))
        (local.set $d (i32.add (local.get $d) (i32.const 64)))
        (local.set $a (i32.add (local.get $a) (i32.const 64)))
        (local.set $b (i32.add (local.get $b) (i32.const 64)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $l16)))
    (block $x4
      (loop $l4
        (br_if $x4 (i32.lt_u (local.get $n) (i32.const 4)))
        (v128.store align=1 (local.get $d)
          (f32x4.add (v128.load align=1 (local.get $a)) (v128.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $l4)))
    (block $x1
      (loop $l1
        (br_if $x1 (i32.eqz (local.get $n)))
        (f32.store align=1 (local.get $d)
          (f32.add (f32.load align=1 (local.get $a)) (f32.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l1))))

  ;; ---------------------------------------------------------------------------------- prod
  (func $prod (param $d i32) (param $a i32) (param $b i32) (param $n i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (block $x16
      (loop $l16
        (br_if $x16 (i32.lt_u (local.get $n) (i32.const 16)))
        (local.set $v0 (f32x4.mul (v128.load offset=0 align=1 (local.get $a))
                                  (v128.load offset=0 align=1 (local.get $b))))
        (local.set $v1 (f32x4.mul (v128.load offset=16 align=1 (local.get $a))
                                  (v128.load offset=16 align=1 (local.get $b))))
        (local.set $v2 (f32x4.mul (v128.load offset=32 align=1 (local.get $a))
                                  (v128.load offset=32 align=1 (local.get $b))))
        (local.set $v3 (f32x4.mul (v128.load offset=48 align=1 (local.get $a))
                                  (v128.load offset=48 align=1 (local.get $b))))
        (v128.store offset=0 align=1 (local.get $d) (local.get $v0))
        (v128.store offset=16 align=1 (local.get $d) (local.get $v1))
        (v128.store offset=32 align=1 (local.get $d) (local.get $v2))
        (v128.store offset=48 align=1 (local.get $d) (local.get $v3))
        (local.set $d (i32.add (local.get $d) (i32.const 64)))
        (local.set $a (i32.add (local.get $a) (i32.const 64)))
        (local.set $b (i32.add (local.get $b) (i32.const 64)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $l16)))
    (block $x4
      (loop $l4
        (br_if $x4 (i32.lt_u (local.get $n) (i32.const 4)))
        (v128.store align=1 (local.get $d)
          (f32x4.mul (v128.load align=1 (local.get $a)) (v128.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $l4)))
    (block $x1
      (loop $l1
        (br_if $x1 (i32.eqz (local.get $n)))
        (f32.store align=1 (local.get $d)
          (f32.mul (f32.load align=1 (local.get $a)) (f32.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l1))))

  ;; ---------------------------------------------------------------------------------- max
  (func $max (param $d i32) (param $a i32) (param $b i32) (param $n i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (block $x16
      (loop $l16
        (br_if $x16 (i32.lt_u (local.get $n) (i32.const 16)))
        (local.set $v0 (f32x4.max (v128.load offset=0 align=1 (local.get $a))
                                  (v128.load offset=0 align=1 (local.get $b))))
        (local.set $v1 (f32x4.max (v128.load offset=16 align=1 (local.get $a))
                                  (v128.load offset=16 align=1 (local.get $b))))
        (local.set $v2 (f32x4.max (v128.load offset=32 align=1 (local.get $a))
                                  (v128.load offset=32 align=1 (local.get $b))))
        (local.set $v3 (f32x4.max (v128.load offset=48 align=1 (local.get $a))
                                  (v128.load offset=48 align=1 (local.get $b))))
        (v128.store offset=0 align=1 (local.get $d) (local.get $v0))
        (v128.store offset=16 align=1 (local.get $d) (local.get $v1))
        (v128.store offset=32 align=1 (local.get $d) (local.get $v2))
        (v128.store offset=48 align=1 (local.get $d) (local.get $v3))
        (local.set $d (i32.add (local.get $d) (i32.const 64)))
        (local.set $a (i32.add (local.get $a) (i32.const 64)))
        (local.set $b (i32.add (local.get $b) (i32.const 64)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $l16)))
    (block $x4
      (loop $l4
        (br_if $x4 (i32.lt_u (local.get $n) (i32.const 4)))
        (v128.store align=1 (local.get $d)
          (f32x4.max (v128.load align=1 (local.get $a)) (v128.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $l4)))
    (block $x1
      (loop $l1
        (br_if $x1 (i32.eqz (local.get $n)))
        (f32.store align=1 (local.get $d)
          (f32.max (f32.load align=1 (local.get $a)) (f32.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l1))))

  ;; ---------------------------------------------------------------------------------- min
  (func $min (param $d i32) (param $a i32) (param $b i32) (param $n i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (block $x16
      (loop $l16
        (br_if $x16 (i32.lt_u (local.get $n) (i32.const 16)))
        (local.set $v0 (f32x4.min (v128.load offset=0 align=1 (local.get $a))
                                  (v128.load offset=0 align=1 (local.get $b))))
        (local.set $v1 (f32x4.min (v128.load offset=16 align=1 (local.get $a))
                                  (v128.load offset=16 align=1 (local.get $b))))
        (local.set $v2 (f32x4.min (v128.load offset=32 align=1 (local.get $a))
                                  (v128.load offset=32 align=1 (local.get $b))))
        (local.set $v3 (f32x4.min (v128.load offset=48 align=1 (local.get $a))
                                  (v128.load offset=48 align=1 (local.get $b))))
        (v128.store offset=0 align=1 (local.get $d) (local.get $v0))
        (v128.store offset=16 align=1 (local.get $d) (local.get $v1))
        (v128.store offset=32 align=1 (local.get $d) (local.get $v2))
        (v128.store offset=48 align=1 (local.get $d) (local.get $v3))
        (local.set $d (i32.add (local.get $d) (i32.const 64)))
        (local.set $a (i32.add (local.get $a) (i32.const 64)))
        (local.set $b (i32.add (local.get $b) (i32.const 64)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $l16)))
    (block $x4
      (loop $l4
        (br_if $x4 (i32.lt_u (local.get $n) (i32.const 4)))
        (v128.store align=1 (local.get $d)
          (f32x4.min (v128.load align=1 (local.get $a)) (v128.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $l4)))
    (block $x1
      (loop $l1
        (br_if $x1 (i32.eqz (local.get $n)))
        (f32.store align=1 (local.get $d)
          (f32.min (f32.load align=1 (local.get $a)) (f32.load align=1 (local.get $b))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l1))))

  ;; ---------------------------------------------------------------------------------- scale
  (func (export "scale") (param $d i32) (param $n i32) (param $f f32)
    (local $fv v128) (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (local.set $fv (f32x4.splat (local.get $f)))
    (block $x16
      (loop $l16
        (br_if $x16 (i32.lt_u (local.get $n) (i32.const 16)))
        ;; operand order dst[i] * factor, as in scaleJs
        (local.set $v0 (f32x4.mul (v128.load offset=0 align=1 (local.get $d)) (local.get $fv)))
        (local.set $v1 (f32x4.mul (v128.load offset=16 align=1 (local.get $d)) (local.get $fv)))
        (local.set $v2 (f32x4.mul (v128.load offset=32 align=1 (local.get $d)) (local.get $fv)))
        (local.set $v3 (f32x4.mul (v128.load offset=48 align=1 (local.get $d)) (local.get $fv)))
        (v128.store offset=0 align=1 (local.get $d) (local.get $v0))
        (v128.store offset=16 align=1 (local.get $d) (local.get $v1))
        (v128.store offset=32 align=1 (local.get $d) (local.get $v2))
        (v128.store offset=48 align=1 (local.get $d) (local.get $v3))
        (local.set $d (i32.add (local.get $d) (i32.const 64)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $l16)))
    (block $x4
      (loop $l4
        (br_if $x4 (i32.lt_u (local.get $n) (i32.const 4)))
        (v128.store align=1 (local.get $d)
          (f32x4.mul (v128.load align=1 (local.get $d)) (local.get $fv)))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $l4)))
    (block $x1
      (loop $l1
        (br_if $x1 (i32.eqz (local.get $n)))
        (f32.store align=1 (local.get $d)
          (f32.mul (f32.load align=1 (local.get $d)) (local.get $f)))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l1))))
)
