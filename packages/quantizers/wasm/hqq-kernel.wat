;; HQQ kernels in WebAssembly SIMD (f32x4), hand-written. Source of src/hqq-kernel-wasm.generated.ts
;; (`pnpm --filter @layerquant/quantizers build:wasm`). Every operation is the fp32 operation of the TypeScript
;; oracle (src/asymmetric-init.ts, src/hqq-proximal.ts) in the same order, so both give bit-identical scales,
;; zeros, codes and dequantized values (src/hqq-proximal.test.ts checks it).
;; Weights arrive group-major: `groups` runs of `g` f32 values, g a multiple of 4.
(module
  (import "env" "pow" (func $pow (param f64 f64) (result f64)))
  (memory (export "memory") 1)

  ;; One element of the shrinkage: e = sign(x) * relu(|x| - ib * |x|^ex); returns q - (w - e) * s.
  (func $shrunk (param $w f32) (param $q f32) (param $x f32) (param $s f32) (param $ib f32) (param $ex f32) (result f32)
    (local $a f32) (local $e f32)
    (local.set $a (f32.abs (local.get $x)))
    (local.set $e
      (f32.sub (local.get $a)
        (f32.mul (local.get $ib)
          (f32.demote_f64 (call $pow (f64.promote_f32 (local.get $a)) (f64.promote_f32 (local.get $ex)))))))
    (if (f32.lt (local.get $e) (f32.const 0)) (then (local.set $e (f32.const 0))))
    (if (f32.lt (local.get $x) (f32.const 0)) (then (local.set $e (f32.neg (local.get $e)))))
    (f32.sub (local.get $q) (f32.mul (f32.sub (local.get $w) (local.get $e)) (local.get $s))))

  ;; One proximal iteration over all groups; updates the zeros in place; returns sum |W - Wr| (float64, lanes
  ;; combined as (l0 + l2) + (l1 + l3)).
  (func $proximalIteration (export "proximalIteration")
    (param $w i32) (param $scale i32) (param $zero i32) (param $groups i32) (param $g i32)
    (param $maxv f32) (param $ib f32) (param $ex f32) (param $threshold f32) (result f64)
    (local $k i32) (local $p i32) (local $end i32)
    (local $sc f32)
    (local $sv v128) (local $zv v128) (local $wv v128) (local $tv v128) (local $qv v128)
    (local $xv v128) (local $av v128) (local $vv v128) (local $maxvv v128) (local $thv v128)
    (local $err01 v128) (local $err23 v128) (local $sum01 v128) (local $sum23 v128) (local $t v128)
    (local.set $maxvv (f32x4.splat (local.get $maxv)))
    (local.set $thv (f32x4.splat (local.get $threshold)))
    (local.set $err01 (v128.const i64x2 0 0))
    (local.set $err23 (v128.const i64x2 0 0))
    (local.set $p (local.get $w))
    (block $groups_done
      (br_if $groups_done (i32.eqz (local.get $groups)))
      (loop $group
        (local.set $sc (f32.load (i32.add (local.get $scale) (i32.shl (local.get $k) (i32.const 2)))))
        (local.set $sv (f32x4.splat (local.get $sc)))
        (local.set $zv (f32x4.splat (f32.load (i32.add (local.get $zero) (i32.shl (local.get $k) (i32.const 2))))))
        (local.set $sum01 (v128.const i64x2 0 0))
        (local.set $sum23 (v128.const i64x2 0 0))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $g) (i32.const 2))))
        (loop $element
          (local.set $wv (v128.load (local.get $p)))
          (local.set $tv (f32x4.mul (local.get $wv) (local.get $sv)))
          (local.set $qv
            (f32x4.min
              (f32x4.max (f32x4.nearest (f32x4.add (local.get $tv) (local.get $zv))) (v128.const f32x4 0 0 0 0))
              (local.get $maxvv)))
          (local.set $xv
            (f32x4.sub (local.get $wv) (f32x4.div (f32x4.sub (local.get $qv) (local.get $zv)) (local.get $sv))))
          (local.set $av (f32x4.abs (local.get $xv)))
          ;; float64 lane sums: (l0, l1) and (l2, l3)
          (local.set $err01 (f64x2.add (local.get $err01) (f64x2.promote_low_f32x4 (local.get $av))))
          (local.set $err23 (f64x2.add (local.get $err23)
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $av) (local.get $av)))))
          ;; W_e = 0 below the threshold: the zero term is q - W*s
          (local.set $vv (f32x4.sub (local.get $qv) (local.get $tv)))
          (if (v128.any_true (f32x4.gt (local.get $av) (local.get $thv)))
            (then
              (if (f32.gt (f32x4.extract_lane 0 (local.get $av)) (local.get $threshold))
                (then (local.set $vv (f32x4.replace_lane 0 (local.get $vv)
                  (call $shrunk (f32x4.extract_lane 0 (local.get $wv)) (f32x4.extract_lane 0 (local.get $qv))
                    (f32x4.extract_lane 0 (local.get $xv)) (local.get $sc) (local.get $ib) (local.get $ex))))))
              (if (f32.gt (f32x4.extract_lane 1 (local.get $av)) (local.get $threshold))
                (then (local.set $vv (f32x4.replace_lane 1 (local.get $vv)
                  (call $shrunk (f32x4.extract_lane 1 (local.get $wv)) (f32x4.extract_lane 1 (local.get $qv))
                    (f32x4.extract_lane 1 (local.get $xv)) (local.get $sc) (local.get $ib) (local.get $ex))))))
              (if (f32.gt (f32x4.extract_lane 2 (local.get $av)) (local.get $threshold))
                (then (local.set $vv (f32x4.replace_lane 2 (local.get $vv)
                  (call $shrunk (f32x4.extract_lane 2 (local.get $wv)) (f32x4.extract_lane 2 (local.get $qv))
                    (f32x4.extract_lane 2 (local.get $xv)) (local.get $sc) (local.get $ib) (local.get $ex))))))
              (if (f32.gt (f32x4.extract_lane 3 (local.get $av)) (local.get $threshold))
                (then (local.set $vv (f32x4.replace_lane 3 (local.get $vv)
                  (call $shrunk (f32x4.extract_lane 3 (local.get $wv)) (f32x4.extract_lane 3 (local.get $qv))
                    (f32x4.extract_lane 3 (local.get $xv)) (local.get $sc) (local.get $ib) (local.get $ex))))))))
          (local.set $sum01 (f64x2.add (local.get $sum01) (f64x2.promote_low_f32x4 (local.get $vv))))
          (local.set $sum23 (f64x2.add (local.get $sum23)
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vv) (local.get $vv)))))
          (local.set $p (i32.add (local.get $p) (i32.const 16)))
          (br_if $element (i32.lt_u (local.get $p) (local.get $end))))
        ;; z = fp32(sum) / g with sum = (l0 + l2) + (l1 + l3): (sum01 + sum23) holds (l0 + l2, l1 + l3)
        (local.set $t (f64x2.add (local.get $sum01) (local.get $sum23)))
        (f32.store (i32.add (local.get $zero) (i32.shl (local.get $k) (i32.const 2)))
          (f32.div
            (f32.demote_f64 (f64.add (f64x2.extract_lane 0 (local.get $t)) (f64x2.extract_lane 1 (local.get $t))))
            (f32.convert_i32_u (local.get $g))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $group (i32.lt_u (local.get $k) (local.get $groups)))))
    (local.set $t (f64x2.add (local.get $err01) (local.get $err23)))
    (f64.add (f64x2.extract_lane 0 (local.get $t)) (f64x2.extract_lane 1 (local.get $t))))

  ;; Codes: clamp(round(W*s + z), 0, maxv) as bytes, group-major.
  (func $roundToCodes (export "roundToCodes")
    (param $w i32) (param $scale i32) (param $zero i32) (param $codes i32) (param $groups i32) (param $g i32) (param $maxv f32)
    (local $k i32) (local $p i32) (local $end i32) (local $o i32)
    (local $sv v128) (local $zv v128) (local $maxvv v128) (local $qv v128)
    (local.set $maxvv (f32x4.splat (local.get $maxv)))
    (local.set $p (local.get $w))
    (local.set $o (local.get $codes))
    (block $groups_done
      (br_if $groups_done (i32.eqz (local.get $groups)))
      (loop $group
        (local.set $sv (f32x4.splat (f32.load (i32.add (local.get $scale) (i32.shl (local.get $k) (i32.const 2))))))
        (local.set $zv (f32x4.splat (f32.load (i32.add (local.get $zero) (i32.shl (local.get $k) (i32.const 2))))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $g) (i32.const 2))))
        (loop $element
          (local.set $qv
            (f32x4.min
              (f32x4.max
                (f32x4.nearest (f32x4.add (f32x4.mul (v128.load (local.get $p)) (local.get $sv)) (local.get $zv)))
                (v128.const f32x4 0 0 0 0))
              (local.get $maxvv)))
          (local.set $qv (i32x4.trunc_sat_f32x4_u (local.get $qv)))
          (local.set $qv (i16x8.narrow_i32x4_u (local.get $qv) (local.get $qv)))
          (local.set $qv (i8x16.narrow_i16x8_u (local.get $qv) (local.get $qv)))
          (v128.store32_lane 0 (local.get $o) (local.get $qv))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (local.set $p (i32.add (local.get $p) (i32.const 16)))
          (br_if $element (i32.lt_u (local.get $p) (local.get $end))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $group (i32.lt_u (local.get $k) (local.get $groups))))))

  ;; Asymmetric min/max init per group: s = maxv / (max - min) (1 where |max - min| <= 1e-4), at most 2e4;
  ;; z = -min * s, rounded when roundZero. min and max get + 0 so a -0 reads as +0, as in the TypeScript oracle.
  (func $minMaxInit (export "minMaxInit")
    (param $w i32) (param $scale i32) (param $zero i32) (param $groups i32) (param $g i32) (param $maxv f32) (param $roundZero i32)
    (local $k i32) (local $p i32) (local $end i32)
    (local $lo v128) (local $hi v128) (local $v v128)
    (local $min f32) (local $max f32) (local $range f32) (local $s f32) (local $z f32)
    (local.set $p (local.get $w))
    (block $groups_done
      (br_if $groups_done (i32.eqz (local.get $groups)))
      (loop $group
        (local.set $lo (v128.load (local.get $p)))
        (local.set $hi (local.get $lo))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $g) (i32.const 2))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (block $elements_done
          (br_if $elements_done (i32.ge_u (local.get $p) (local.get $end)))
          (loop $element
            (local.set $v (v128.load (local.get $p)))
            (local.set $lo (f32x4.min (local.get $lo) (local.get $v)))
            (local.set $hi (f32x4.max (local.get $hi) (local.get $v)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br_if $element (i32.lt_u (local.get $p) (local.get $end)))))
        (local.set $min (f32.add (f32.min
          (f32.min (f32x4.extract_lane 0 (local.get $lo)) (f32x4.extract_lane 1 (local.get $lo)))
          (f32.min (f32x4.extract_lane 2 (local.get $lo)) (f32x4.extract_lane 3 (local.get $lo)))) (f32.const 0)))
        (local.set $max (f32.add (f32.max
          (f32.max (f32x4.extract_lane 0 (local.get $hi)) (f32x4.extract_lane 1 (local.get $hi)))
          (f32.max (f32x4.extract_lane 2 (local.get $hi)) (f32x4.extract_lane 3 (local.get $hi)))) (f32.const 0)))
        (local.set $range (f32.sub (local.get $max) (local.get $min)))
        ;; torch's scalar / tensor is reciprocal(tensor) * scalar: two fp32 roundings, as upstream HQQ computes the scale
        (local.set $s (f32.mul (f32.div (f32.const 1) (local.get $range)) (local.get $maxv)))
        (if (f32.le (f32.abs (local.get $range)) (f32.const 1e-4)) (then (local.set $s (f32.const 1))))
        (if (f32.gt (local.get $s) (f32.const 2e4)) (then (local.set $s (f32.const 2e4))))
        (local.set $z (f32.mul (f32.neg (local.get $min)) (local.get $s)))
        (if (local.get $roundZero) (then (local.set $z (f32.nearest (local.get $z)))))
        (f32.store (i32.add (local.get $scale) (i32.shl (local.get $k) (i32.const 2))) (local.get $s))
        (f32.store (i32.add (local.get $zero) (i32.shl (local.get $k) (i32.const 2))) (local.get $z))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $group (i32.lt_u (local.get $k) (local.get $groups))))))

  ;; RTN in one pass over memory: min/max init then codes, group by group, while the group is still in cache.
  (func (export "rtnQuantize")
    (param $w i32) (param $scale i32) (param $zero i32) (param $codes i32) (param $groups i32) (param $g i32) (param $maxv f32) (param $roundZero i32)
    (local $k i32) (local $p i32) (local $sp i32) (local $zp i32) (local $o i32)
    (local.set $p (local.get $w))
    (local.set $sp (local.get $scale))
    (local.set $zp (local.get $zero))
    (local.set $o (local.get $codes))
    (block $done
      (br_if $done (i32.eqz (local.get $groups)))
      (loop $group
        (call $minMaxInit (local.get $p) (local.get $sp) (local.get $zp) (i32.const 1) (local.get $g) (local.get $maxv) (local.get $roundZero))
        (call $roundToCodes (local.get $p) (local.get $sp) (local.get $zp) (local.get $o) (i32.const 1) (local.get $g) (local.get $maxv))
        (local.set $p (i32.add (local.get $p) (i32.shl (local.get $g) (i32.const 2))))
        (local.set $o (i32.add (local.get $o) (local.get $g)))
        (local.set $sp (i32.add (local.get $sp) (i32.const 4)))
        (local.set $zp (i32.add (local.get $zp) (i32.const 4)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $group (i32.lt_u (local.get $k) (local.get $groups))))))

  ;; Packs `count` byte codes (a multiple of 16) of 2 or 4 bits into words, least significant bits first: the
  ;; rows-u32-lsb packing of a matrix whose row length is a multiple of the codes per word. Pairs of bytes in each
  ;; 16-bit lane are merged (low | high << bits), then narrowed to bytes; 2 bits merge twice.
  (func (export "packCodes")
    (param $codes i32) (param $out i32) (param $count i32) (param $bits i32)
    (local $p i32) (local $o i32) (local $end i32) (local $v v128) (local $mask v128)
    (local.set $mask (i16x8.splat (i32.const 255)))
    (local.set $p (local.get $codes))
    (local.set $o (local.get $out))
    (local.set $end (i32.add (local.get $codes) (local.get $count)))
    (block $done
      (br_if $done (i32.eqz (local.get $count)))
      (loop $chunk
        (local.set $v (v128.load (local.get $p)))
        (if (i32.eq (local.get $bits) (i32.const 4))
          (then
            (local.set $v (v128.or (v128.and (local.get $v) (local.get $mask)) (i16x8.shl (i16x8.shr_u (local.get $v) (i32.const 8)) (i32.const 4))))
            (v128.store64_lane 0 (local.get $o) (i8x16.narrow_i16x8_u (local.get $v) (local.get $v)))
            (local.set $o (i32.add (local.get $o) (i32.const 8))))
          (else
            (local.set $v (v128.or (v128.and (local.get $v) (local.get $mask)) (i16x8.shl (i16x8.shr_u (local.get $v) (i32.const 8)) (i32.const 2))))
            (local.set $v (i8x16.narrow_i16x8_u (local.get $v) (local.get $v)))
            (local.set $v (v128.or (v128.and (local.get $v) (local.get $mask)) (i16x8.shl (i16x8.shr_u (local.get $v) (i32.const 8)) (i32.const 4))))
            (v128.store32_lane 0 (local.get $o) (i8x16.narrow_i16x8_u (local.get $v) (local.get $v)))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br_if $chunk (i32.lt_u (local.get $p) (local.get $end))))))

  ;; Dequantization (Wq - z) * fp32(1/s), group-major bytes in, float32 out.
  (func (export "dequantize")
    (param $codes i32) (param $scale i32) (param $zero i32) (param $out i32) (param $groups i32) (param $g i32)
    (local $k i32) (local $p i32) (local $o i32) (local $end i32) (local $iv v128) (local $zv v128)
    (local.set $p (local.get $codes))
    (local.set $o (local.get $out))
    (block $groups_done
      (br_if $groups_done (i32.eqz (local.get $groups)))
      (loop $group
        (local.set $iv (f32x4.splat (f32.div (f32.const 1)
          (f32.load (i32.add (local.get $scale) (i32.shl (local.get $k) (i32.const 2)))))))
        (local.set $zv (f32x4.splat (f32.load (i32.add (local.get $zero) (i32.shl (local.get $k) (i32.const 2))))))
        (local.set $end (i32.add (local.get $p) (local.get $g)))
        (loop $element
          (v128.store (local.get $o)
            (f32x4.mul
              (f32x4.sub
                (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero (local.get $p)))))
                (local.get $zv))
              (local.get $iv)))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $element (i32.lt_u (local.get $p) (local.get $end))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $group (i32.lt_u (local.get $k) (local.get $groups))))))

  ;; The whole solver with upstream's early stop (runProximalSolver of src/hqq-proximal.ts, op for op): each step
  ;; uses fp32(1/beta) and the shortcut threshold 0.9 * (1/beta)^(1/(2-p)); the mean error is compared in fp32;
  ;; beta *= kappa after each step. Returns the iterations run.
  (func (export "proximalSolve")
    (param $w i32) (param $scale i32) (param $zero i32) (param $groups i32) (param $g i32) (param $maxv f32)
    (param $lpNorm f64) (param $beta f64) (param $kappa f64) (param $iterations i32) (result i32)
    (local $i i32) (local $ib f32) (local $ex f32) (local $best f32) (local $error f32) (local $count f64)
    (local.set $ex (f32.demote_f64 (f64.sub (local.get $lpNorm) (f64.const 1))))
    (local.set $best (f32.const inf))
    (local.set $count (f64.convert_i32_u (i32.mul (local.get $groups) (local.get $g))))
    (block $done
      (loop $step
        (br_if $done (i32.ge_u (local.get $i) (local.get $iterations)))
        (local.set $ib (f32.demote_f64 (f64.div (f64.const 1) (local.get $beta))))
        (local.set $error (f32.demote_f64 (f64.div
          (call $proximalIteration (local.get $w) (local.get $scale) (local.get $zero) (local.get $groups) (local.get $g)
            (local.get $maxv) (local.get $ib) (local.get $ex)
            (f32.demote_f64 (f64.mul (f64.const 0.9)
              (call $pow (f64.promote_f32 (local.get $ib)) (f64.div (f64.const 1) (f64.sub (f64.const 2) (local.get $lpNorm)))))))
          (local.get $count))))
        (local.set $beta (f64.mul (local.get $beta) (local.get $kappa)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (f32.lt (local.get $error) (local.get $best))
          (then (local.set $best (local.get $error)) (br $step)))
        (return (local.get $i))))
    (local.get $iterations))

  ;; ---- GPTQ (src/gptq-solver.ts, solveGptqColumns, op for op): column-major weights [columns][rows], f32x4 over rows
  ;; (rows a multiple of 4). Each weight receives its updates in column order, so results are bit-identical.

  ;; A group's range from the current weights of columns c..c+g-1 (at $w, the first of them): low = min(0, min w),
  ;; high = max(0, max w), +0 for -0; symmetric: [-m, m], m = max(-low, high); under 1e-30: [-1, 1].
  (func $gptqRange (param $w i32) (param $rows i32) (param $g i32) (param $sym i32) (param $low i32) (param $high i32)
    (local $r i32) (local $j i32) (local $p i32) (local $lo v128) (local $hi v128) (local $v v128) (local $tiny v128)
    (local $stride i32)
    (local.set $stride (i32.shl (local.get $rows) (i32.const 2)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $lo (v128.const f32x4 0 0 0 0))
        (local.set $hi (v128.const f32x4 0 0 0 0))
        (local.set $p (i32.add (local.get $w) (i32.shl (local.get $r) (i32.const 2))))
        (local.set $j (i32.const 0))
        (loop $column
          (local.set $v (v128.load (local.get $p)))
          (local.set $lo (f32x4.min (local.get $lo) (local.get $v)))
          (local.set $hi (f32x4.max (local.get $hi) (local.get $v)))
          (local.set $p (i32.add (local.get $p) (local.get $stride)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $column (i32.lt_u (local.get $j) (local.get $g))))
        (local.set $lo (f32x4.add (local.get $lo) (v128.const f32x4 0 0 0 0)))
        (local.set $hi (f32x4.add (local.get $hi) (v128.const f32x4 0 0 0 0)))
        (if (local.get $sym)
          (then
            (local.set $hi (f32x4.max (f32x4.neg (local.get $lo)) (local.get $hi)))
            (local.set $lo (f32x4.neg (local.get $hi)))))
        (local.set $tiny (f32x4.lt (f32x4.sub (local.get $hi) (local.get $lo)) (f32x4.splat (f32.const 1e-30))))
        (local.set $lo (v128.bitselect (v128.const f32x4 -1 -1 -1 -1) (local.get $lo) (local.get $tiny)))
        (local.set $hi (v128.bitselect (v128.const f32x4 1 1 1 1) (local.get $hi) (local.get $tiny)))
        (v128.store (i32.add (local.get $low) (i32.shl (local.get $r) (i32.const 2))) (local.get $lo))
        (v128.store (i32.add (local.get $high) (i32.shl (local.get $r) (i32.const 2))) (local.get $hi))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $row))))

  ;; The grid of each row's range at maxq into three [rows] arrays at $grid: s = 1/((high - low)/maxq), step = 1/s,
  ;; zero = round(-low * s) + 0 (symmetric: (maxq + 1) / 2); maxq 0: all three 0.
  (func $gptqGrid (param $low i32) (param $high i32) (param $rows i32) (param $maxq f32) (param $sym i32) (param $grid i32)
    (local $r i32) (local $o i32) (local $lo v128) (local $s v128) (local $z v128) (local $bytes i32)
    (local.set $bytes (i32.shl (local.get $rows) (i32.const 2)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $o (i32.shl (local.get $r) (i32.const 2)))
        (if (f32.eq (local.get $maxq) (f32.const 0))
          (then
            (local.set $s (v128.const f32x4 0 0 0 0))
            (local.set $z (v128.const f32x4 0 0 0 0))
            (v128.store (i32.add (i32.add (local.get $grid) (i32.shl (local.get $bytes) (i32.const 1))) (local.get $o)) (local.get $s)))
          (else
            (local.set $lo (v128.load (i32.add (local.get $low) (local.get $o))))
            (local.set $s (f32x4.div (v128.const f32x4 1 1 1 1)
              (f32x4.div (f32x4.sub (v128.load (i32.add (local.get $high) (local.get $o))) (local.get $lo)) (f32x4.splat (local.get $maxq)))))
            (if (local.get $sym)
              (then (local.set $z (f32x4.splat (f32.div (f32.add (local.get $maxq) (f32.const 1)) (f32.const 2)))))
              (else (local.set $z (f32x4.add (f32x4.nearest (f32x4.mul (f32x4.neg (local.get $lo)) (local.get $s))) (v128.const f32x4 0 0 0 0)))))
            (v128.store (i32.add (i32.add (local.get $grid) (i32.shl (local.get $bytes) (i32.const 1))) (local.get $o))
              (f32x4.div (v128.const f32x4 1 1 1 1) (local.get $s)))))
        (v128.store (i32.add (local.get $grid) (local.get $o)) (local.get $s))
        (v128.store (i32.add (i32.add (local.get $grid) (local.get $bytes)) (local.get $o)) (local.get $z))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $row))))

  ;; Column c: codes clamp(round(w*s + z), 0, maxq), errors e = (w - (q - z)*step) / U[c, c] into $err, then
  ;; w_j -= e * U[c, j] for the batch's later columns j < end.
  (func $gptqColumn (param $w i32) (param $u i32) (param $codes i32) (param $err i32) (param $grid i32)
    (param $rows i32) (param $n i32) (param $c i32) (param $end i32) (param $maxq f32)
    (local $r i32) (local $o i32) (local $j i32) (local $bytes i32) (local $col i32) (local $urow i32) (local $target i32)
    (local $x v128) (local $s v128) (local $z v128) (local $q v128) (local $e v128) (local $f v128) (local $diag v128) (local $maxv v128)
    (local.set $bytes (i32.shl (local.get $rows) (i32.const 2)))
    (local.set $col (i32.add (local.get $w) (i32.mul (local.get $c) (local.get $bytes))))
    (local.set $urow (i32.add (local.get $u) (i32.shl (i32.mul (local.get $c) (local.get $n)) (i32.const 2))))
    (local.set $diag (f32x4.splat (f32.load (i32.add (local.get $urow) (i32.shl (local.get $c) (i32.const 2))))))
    (local.set $maxv (f32x4.splat (local.get $maxq)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $o (i32.shl (local.get $r) (i32.const 2)))
        (local.set $x (v128.load (i32.add (local.get $col) (local.get $o))))
        (local.set $s (v128.load (i32.add (local.get $grid) (local.get $o))))
        (local.set $z (v128.load (i32.add (i32.add (local.get $grid) (local.get $bytes)) (local.get $o))))
        (local.set $q (f32x4.min (f32x4.max
          (f32x4.nearest (f32x4.add (f32x4.mul (local.get $x) (local.get $s)) (local.get $z)))
          (v128.const f32x4 0 0 0 0)) (local.get $maxv)))
        (local.set $e (f32x4.div
          (f32x4.sub (local.get $x)
            (f32x4.mul (f32x4.sub (local.get $q) (local.get $z))
              (v128.load (i32.add (i32.add (local.get $grid) (i32.shl (local.get $bytes) (i32.const 1))) (local.get $o)))))
          (local.get $diag)))
        (v128.store (i32.add (local.get $err) (local.get $o)) (local.get $e))
        (local.set $q (i32x4.trunc_sat_f32x4_u (local.get $q)))
        (local.set $q (i16x8.narrow_i32x4_u (local.get $q) (local.get $q)))
        (local.set $q (i8x16.narrow_i16x8_u (local.get $q) (local.get $q)))
        (v128.store32_lane 0 (i32.add (i32.add (local.get $codes) (i32.mul (local.get $c) (local.get $rows))) (local.get $r)) (local.get $q))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $row)))
    (local.set $j (i32.add (local.get $c) (i32.const 1)))
    (block $columns_done
      (loop $column
        (br_if $columns_done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $f (f32x4.splat (f32.load (i32.add (local.get $urow) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $target (i32.add (local.get $w) (i32.mul (local.get $j) (local.get $bytes))))
        (local.set $o (i32.const 0))
        (loop $update
          (v128.store (i32.add (local.get $target) (local.get $o))
            (f32x4.sub (v128.load (i32.add (local.get $target) (local.get $o)))
              (f32x4.mul (v128.load (i32.add (local.get $err) (local.get $o))) (local.get $f))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $update (i32.lt_u (local.get $o) (local.get $bytes))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $column))))

  ;; The lazy batch update: w_j -= sum over the batch's columns k (in order) of e_k * U[k, j], for every j >= end.
  ;; Blocked for the caches: rows in tiles of 16 (the batch's errors of 16 rows, 8 KiB for 128 columns, stay in L1
  ;; while every later column is updated), columns in pairs (eight accumulators in registers over the batch). Each
  ;; weight still receives the batch's updates in column order, so the result is the TypeScript loop's.
  (func $gptqLazy (param $w i32) (param $u i32) (param $err i32) (param $rows i32) (param $n i32) (param $start i32) (param $end i32)
    (local $j i32) (local $k i32) (local $o i32) (local $bytes i32) (local $t0 i32) (local $t1 i32) (local $e i32)
    (local $up i32) (local $ustride i32) (local $tiles i32)
    (local $f0 v128) (local $f1 v128) (local $e0 v128) (local $e1 v128) (local $e2 v128) (local $e3 v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local.set $bytes (i32.shl (local.get $rows) (i32.const 2)))
    (local.set $ustride (i32.shl (local.get $n) (i32.const 2)))
    (local.set $tiles (i32.and (local.get $bytes) (i32.const -64)))
    (local.set $o (i32.const 0))
    (block $tiles_done
      (loop $tile
        (br_if $tiles_done (i32.ge_u (local.get $o) (local.get $tiles)))
        (local.set $j (local.get $end))
        (block $pairs_done
          (loop $pair
            (br_if $pairs_done (i32.ge_u (i32.add (local.get $j) (i32.const 1)) (local.get $n)))
            (local.set $t0 (i32.add (i32.add (local.get $w) (i32.mul (local.get $j) (local.get $bytes))) (local.get $o)))
            (local.set $t1 (i32.add (local.get $t0) (local.get $bytes)))
            (local.set $a0 (v128.load (local.get $t0)))
            (local.set $a1 (v128.load offset=16 (local.get $t0)))
            (local.set $a2 (v128.load offset=32 (local.get $t0)))
            (local.set $a3 (v128.load offset=48 (local.get $t0)))
            (local.set $b0 (v128.load (local.get $t1)))
            (local.set $b1 (v128.load offset=16 (local.get $t1)))
            (local.set $b2 (v128.load offset=32 (local.get $t1)))
            (local.set $b3 (v128.load offset=48 (local.get $t1)))
            (local.set $e (i32.add (local.get $err) (local.get $o)))
            (local.set $up (i32.add (local.get $u) (i32.shl (i32.add (i32.mul (local.get $start) (local.get $n)) (local.get $j)) (i32.const 2))))
            (local.set $k (local.get $start))
            (loop $batch
              (local.set $f0 (f32x4.splat (f32.load (local.get $up))))
              (local.set $f1 (f32x4.splat (f32.load offset=4 (local.get $up))))
              (local.set $e0 (v128.load (local.get $e)))
              (local.set $e1 (v128.load offset=16 (local.get $e)))
              (local.set $e2 (v128.load offset=32 (local.get $e)))
              (local.set $e3 (v128.load offset=48 (local.get $e)))
              (local.set $a0 (f32x4.sub (local.get $a0) (f32x4.mul (local.get $e0) (local.get $f0))))
              (local.set $a1 (f32x4.sub (local.get $a1) (f32x4.mul (local.get $e1) (local.get $f0))))
              (local.set $a2 (f32x4.sub (local.get $a2) (f32x4.mul (local.get $e2) (local.get $f0))))
              (local.set $a3 (f32x4.sub (local.get $a3) (f32x4.mul (local.get $e3) (local.get $f0))))
              (local.set $b0 (f32x4.sub (local.get $b0) (f32x4.mul (local.get $e0) (local.get $f1))))
              (local.set $b1 (f32x4.sub (local.get $b1) (f32x4.mul (local.get $e1) (local.get $f1))))
              (local.set $b2 (f32x4.sub (local.get $b2) (f32x4.mul (local.get $e2) (local.get $f1))))
              (local.set $b3 (f32x4.sub (local.get $b3) (f32x4.mul (local.get $e3) (local.get $f1))))
              (local.set $e (i32.add (local.get $e) (local.get $bytes)))
              (local.set $up (i32.add (local.get $up) (local.get $ustride)))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $batch (i32.lt_u (local.get $k) (local.get $end))))
            (v128.store (local.get $t0) (local.get $a0))
            (v128.store offset=16 (local.get $t0) (local.get $a1))
            (v128.store offset=32 (local.get $t0) (local.get $a2))
            (v128.store offset=48 (local.get $t0) (local.get $a3))
            (v128.store (local.get $t1) (local.get $b0))
            (v128.store offset=16 (local.get $t1) (local.get $b1))
            (v128.store offset=32 (local.get $t1) (local.get $b2))
            (v128.store offset=48 (local.get $t1) (local.get $b3))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))
            (br $pair)))
        ;; an odd last column of this tile
        (if (i32.lt_u (local.get $j) (local.get $n))
          (then (call $gptqLazyVectors (local.get $w) (local.get $u) (local.get $err) (local.get $bytes) (local.get $n) (local.get $start) (local.get $end)
            (local.get $j) (local.get $o) (i32.add (local.get $o) (i32.const 64)))))
        (local.set $o (i32.add (local.get $o) (i32.const 64)))
        (br $tile)))
    ;; the rows after the last whole tile, a vector at a time, every later column
    (if (i32.lt_u (local.get $tiles) (local.get $bytes))
      (then
        (local.set $j (local.get $end))
        (block $rest_done
          (loop $rest
            (br_if $rest_done (i32.ge_u (local.get $j) (local.get $n)))
            (call $gptqLazyVectors (local.get $w) (local.get $u) (local.get $err) (local.get $bytes) (local.get $n) (local.get $start) (local.get $end)
              (local.get $j) (local.get $tiles) (local.get $bytes))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $rest))))))

  ;; Column j, byte range [from, to) of its rows: w -= e_k * U[k, j] over the batch's columns k, a vector at a time.
  (func $gptqLazyVectors (param $w i32) (param $u i32) (param $err i32) (param $bytes i32) (param $n i32) (param $start i32) (param $end i32)
    (param $j i32) (param $from i32) (param $to i32)
    (local $o i32) (local $k i32) (local $e i32) (local $up i32) (local $target i32) (local $a v128) (local $ucol i32)
    (local.set $target (i32.add (local.get $w) (i32.mul (local.get $j) (local.get $bytes))))
    (local.set $ucol (i32.add (local.get $u) (i32.shl (i32.add (i32.mul (local.get $start) (local.get $n)) (local.get $j)) (i32.const 2))))
    (local.set $o (local.get $from))
    (block $done
      (loop $vector
        (br_if $done (i32.ge_u (local.get $o) (local.get $to)))
        (local.set $a (v128.load (i32.add (local.get $target) (local.get $o))))
        (local.set $e (i32.add (local.get $err) (local.get $o)))
        (local.set $up (local.get $ucol))
        (local.set $k (local.get $start))
        (loop $batch
          (local.set $a (f32x4.sub (local.get $a) (f32x4.mul (v128.load (local.get $e)) (f32x4.splat (f32.load (local.get $up))))))
          (local.set $e (i32.add (local.get $e) (local.get $bytes)))
          (local.set $up (i32.add (local.get $up) (i32.shl (local.get $n) (i32.const 2))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $batch (i32.lt_u (local.get $k) (local.get $end))))
        (v128.store (i32.add (local.get $target) (local.get $o)) (local.get $a))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vector))))

  ;; The whole column loop (solveGptqColumns): batches ending at the i32 $blockEnds, each column's group from
  ;; $groupOf (i32), its range taken where $rangeAt (u8) says, its maxq from $maxq (f32). $grid: 3 x rows f32 scratch.
  (func (export "gptqRun")
    (param $w i32) (param $u i32) (param $codes i32) (param $err i32) (param $low i32) (param $high i32)
    (param $groupOf i32) (param $rangeAt i32) (param $maxq i32) (param $blockEnds i32) (param $blocks i32)
    (param $rows i32) (param $n i32) (param $g i32) (param $sym i32) (param $grid i32)
    (local $b i32) (local $start i32) (local $end i32) (local $c i32) (local $bytes i32) (local $group i32) (local $m f32)
    (local.set $bytes (i32.shl (local.get $rows) (i32.const 2)))
    (block $done
      (loop $batch
        (br_if $done (i32.ge_u (local.get $b) (local.get $blocks)))
        (local.set $end (i32.load (i32.add (local.get $blockEnds) (i32.shl (local.get $b) (i32.const 2)))))
        (local.set $c (local.get $start))
        (block $columns_done
          (loop $column
            (br_if $columns_done (i32.ge_u (local.get $c) (local.get $end)))
            (local.set $group (i32.mul (i32.load (i32.add (local.get $groupOf) (i32.shl (local.get $c) (i32.const 2)))) (local.get $bytes)))
            (if (i32.load8_u (i32.add (local.get $rangeAt) (local.get $c)))
              (then (call $gptqRange (i32.add (local.get $w) (i32.mul (local.get $c) (local.get $bytes))) (local.get $rows) (local.get $g) (local.get $sym)
                (i32.add (local.get $low) (local.get $group)) (i32.add (local.get $high) (local.get $group)))))
            (local.set $m (f32.load (i32.add (local.get $maxq) (i32.shl (local.get $c) (i32.const 2)))))
            (call $gptqGrid (i32.add (local.get $low) (local.get $group)) (i32.add (local.get $high) (local.get $group)) (local.get $rows) (local.get $m) (local.get $sym) (local.get $grid))
            (call $gptqColumn (local.get $w) (local.get $u) (local.get $codes)
              (i32.add (local.get $err) (i32.mul (i32.sub (local.get $c) (local.get $start)) (local.get $bytes)))
              (local.get $grid) (local.get $rows) (local.get $n) (local.get $c) (local.get $end) (local.get $m))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $column)))
        (call $gptqLazy (local.get $w) (local.get $u) (local.get $err) (local.get $rows) (local.get $n) (local.get $start) (local.get $end))
        (local.set $start (local.get $end))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $batch))))
)
