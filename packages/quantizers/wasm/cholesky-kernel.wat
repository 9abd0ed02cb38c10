;; The O(n^3) parts of GPTQ's Hessian preparation (gptq-solver.ts, inverseCholeskyUpper) in WebAssembly SIMD, float64.
;; Each function computes what its TypeScript twin computes, in the same order of operations per entry (sums over k
;; one term at a time, a multiply then an add; the lanes of a vector are neighbouring columns, never neighbouring
;; terms), so the two give bit-identical factors. Addresses are byte offsets into this module's memory, which holds
;; the whole matrix (n^2 float64: up to 4 GiB of wasm32 memory) and its scratch. build-wasm.mjs also assembles a
;; variant that imports a shared memory instead (threads: the pool's workers run the same functions on other tiles).
(module
  (memory (export "memory") 1 65536)

  ;; a[i, j] -= P[i] . P[j] over the panel's w columns, for the whole 4 x 4 tiles of rows [i0, iEnd) and columns
  ;; [c0, cEnd) at or right of the diagonal band (subtractPanelProducts' tile loop; the TypeScript does the rest).
  ;; P is read twice: as rows (P[i, k] at $p + (i w + k) 8) and transposed (P[j, k] at $pt + (k n + j) 8), so that
  ;; four columns j..j+3 of a term k are two vectors.
  (func (export "panelUpdate")
    (param $a i32) (param $n i32) (param $p i32) (param $pt i32) (param $w i32)
    (param $i0 i32) (param $iEnd i32) (param $c0 i32) (param $cEnd i32)
    (local $i i32) (local $j i32) (local $k i32) (local $rowBytes i32) (local $pRow i32) (local $pa i32) (local $pb i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $b01 v128) (local $b23 v128)
    (local $s00 v128) (local $s01 v128) (local $s10 v128) (local $s11 v128)
    (local $s20 v128) (local $s21 v128) (local $s30 v128) (local $s31 v128) (local $r i32)
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 3)))
    (local.set $pRow (i32.shl (local.get $w) (i32.const 3)))
    (local.set $i (local.get $i0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $iEnd)))
        ;; the first column of this band at or right of the diagonal, on the 4-aligned grid of the tile
        (local.set $j (local.get $c0))
        (if (i32.gt_u (local.get $i) (local.get $c0))
          (then (local.set $j (i32.add (local.get $c0) (i32.and (i32.sub (local.get $i) (local.get $c0)) (i32.const -4))))))
        (block $cols_done
          (loop $cols
            (br_if $cols_done (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $cEnd)))
            (local.set $s00 (v128.const f64x2 0 0)) (local.set $s01 (v128.const f64x2 0 0))
            (local.set $s10 (v128.const f64x2 0 0)) (local.set $s11 (v128.const f64x2 0 0))
            (local.set $s20 (v128.const f64x2 0 0)) (local.set $s21 (v128.const f64x2 0 0))
            (local.set $s30 (v128.const f64x2 0 0)) (local.set $s31 (v128.const f64x2 0 0))
            (local.set $pa (i32.add (local.get $p) (i32.mul (local.get $i) (local.get $pRow))))
            (local.set $pb (i32.add (local.get $pt) (i32.shl (local.get $j) (i32.const 3))))
            (local.set $k (i32.const 0))
            (block $terms_done
              (loop $terms
                (br_if $terms_done (i32.ge_u (local.get $k) (local.get $w)))
                (local.set $x0 (f64x2.splat (f64.load (local.get $pa))))
                (local.set $x1 (f64x2.splat (f64.load (i32.add (local.get $pa) (local.get $pRow)))))
                (local.set $x2 (f64x2.splat (f64.load (i32.add (local.get $pa) (i32.shl (local.get $pRow) (i32.const 1))))))
                (local.set $x3 (f64x2.splat (f64.load (i32.add (local.get $pa) (i32.mul (local.get $pRow) (i32.const 3))))))
                (local.set $b01 (v128.load (local.get $pb)))
                (local.set $b23 (v128.load offset=16 (local.get $pb)))
                (local.set $s00 (f64x2.add (local.get $s00) (f64x2.mul (local.get $x0) (local.get $b01))))
                (local.set $s01 (f64x2.add (local.get $s01) (f64x2.mul (local.get $x0) (local.get $b23))))
                (local.set $s10 (f64x2.add (local.get $s10) (f64x2.mul (local.get $x1) (local.get $b01))))
                (local.set $s11 (f64x2.add (local.get $s11) (f64x2.mul (local.get $x1) (local.get $b23))))
                (local.set $s20 (f64x2.add (local.get $s20) (f64x2.mul (local.get $x2) (local.get $b01))))
                (local.set $s21 (f64x2.add (local.get $s21) (f64x2.mul (local.get $x2) (local.get $b23))))
                (local.set $s30 (f64x2.add (local.get $s30) (f64x2.mul (local.get $x3) (local.get $b01))))
                (local.set $s31 (f64x2.add (local.get $s31) (f64x2.mul (local.get $x3) (local.get $b23))))
                (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
                (local.set $pb (i32.add (local.get $pb) (local.get $rowBytes)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $terms)))
            ;; a[i + q, j..j+3] -= the four rows' sums
            (local.set $r (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j)) (i32.const 3))))
            (v128.store (local.get $r) (f64x2.sub (v128.load (local.get $r)) (local.get $s00)))
            (v128.store offset=16 (local.get $r) (f64x2.sub (v128.load offset=16 (local.get $r)) (local.get $s01)))
            (local.set $r (i32.add (local.get $r) (local.get $rowBytes)))
            (v128.store (local.get $r) (f64x2.sub (v128.load (local.get $r)) (local.get $s10)))
            (v128.store offset=16 (local.get $r) (f64x2.sub (v128.load offset=16 (local.get $r)) (local.get $s11)))
            (local.set $r (i32.add (local.get $r) (local.get $rowBytes)))
            (v128.store (local.get $r) (f64x2.sub (v128.load (local.get $r)) (local.get $s20)))
            (v128.store offset=16 (local.get $r) (f64x2.sub (v128.load offset=16 (local.get $r)) (local.get $s21)))
            (local.set $r (i32.add (local.get $r) (local.get $rowBytes)))
            (v128.store (local.get $r) (f64x2.sub (v128.load (local.get $r)) (local.get $s30)))
            (v128.store offset=16 (local.get $r) (f64x2.sub (v128.load offset=16 (local.get $r)) (local.get $s31)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $cols)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Stores the lanes c < $cols of two vectors (columns c = 0..3) at $to.
  (func $storeColumns (param $to i32) (param $cols i32) (param $v01 v128) (param $v23 v128)
    (if (i32.ge_u (local.get $cols) (i32.const 4))
      (then
        (v128.store (local.get $to) (local.get $v01))
        (v128.store offset=16 (local.get $to) (local.get $v23))
        (return)))
    (f64.store (local.get $to) (f64x2.extract_lane 0 (local.get $v01)))
    (if (i32.ge_u (local.get $cols) (i32.const 2)) (then (f64.store offset=8 (local.get $to) (f64x2.extract_lane 1 (local.get $v01)))))
    (if (i32.ge_u (local.get $cols) (i32.const 3)) (then (f64.store offset=16 (local.get $to) (f64x2.extract_lane 0 (local.get $v23))))))

  ;; T[r, j] = sum_{k = 0 .. depth - 1} R[i0 + r, i1 + k] U[i1 + k, j] into block[r n + j] for r < h and the columns
  ;; j of [$jStart, $jEnd) (blockTimesInverse; $jStart is i1 plus a multiple of 4, so threads can share the columns):
  ;; four columns at a time, U's strip packed at $strip (4 values per term, zero past n; one strip per thread), then
  ;; four rows by four columns (two vectors a row), the rows left one at a time.
  (func (export "blockTimesInverse")
    (param $a i32) (param $n i32) (param $i0 i32) (param $h i32) (param $i1 i32) (param $jStart i32) (param $jEnd i32)
    (param $block i32) (param $strip i32)
    (local $j i32) (local $cols i32) (local $depth i32) (local $k i32) (local $c i32) (local $r i32)
    (local $rowBytes i32) (local $from i32) (local $to i32) (local $xa i32) (local $ps i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $b01 v128) (local $b23 v128)
    (local $s00 v128) (local $s01 v128) (local $s10 v128) (local $s11 v128)
    (local $s20 v128) (local $s21 v128) (local $s30 v128) (local $s31 v128)
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 3)))
    (local.set $j (local.get $jStart))
    (block $cols_done
      (loop $cols_loop
        (br_if $cols_done (i32.ge_u (local.get $j) (local.get $jEnd)))
        (local.set $cols (i32.sub (local.get $n) (local.get $j)))
        (if (i32.gt_u (local.get $cols) (i32.const 4)) (then (local.set $cols (i32.const 4))))
        (local.set $depth (i32.sub (i32.add (local.get $j) (local.get $cols)) (local.get $i1)))
        ;; the strip: U[i1 + k, j..j+3], zero past the last column
        (local.set $from (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $i1) (local.get $n)) (local.get $j)) (i32.const 3))))
        (local.set $to (local.get $strip))
        (local.set $k (i32.const 0))
        (block $pack_done
          (loop $pack
            (br_if $pack_done (i32.ge_u (local.get $k) (local.get $depth)))
            (if (i32.eq (local.get $cols) (i32.const 4))
              (then
                (v128.store (local.get $to) (v128.load (local.get $from)))
                (v128.store offset=16 (local.get $to) (v128.load offset=16 (local.get $from))))
              (else
                (local.set $c (i32.const 0))
                (block $lanes_done
                  (loop $lanes
                    (br_if $lanes_done (i32.ge_u (local.get $c) (i32.const 4)))
                    (f64.store (i32.add (local.get $to) (i32.shl (local.get $c) (i32.const 3)))
                      (select (f64.load (i32.add (local.get $from) (i32.shl (local.get $c) (i32.const 3)))) (f64.const 0)
                        (i32.lt_u (local.get $c) (local.get $cols))))
                    (local.set $c (i32.add (local.get $c) (i32.const 1)))
                    (br $lanes)))))
            (local.set $from (i32.add (local.get $from) (local.get $rowBytes)))
            (local.set $to (i32.add (local.get $to) (i32.const 32)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $pack)))
        ;; four rows at a time
        (local.set $r (i32.const 0))
        (block $quads_done
          (loop $quads
            (br_if $quads_done (i32.gt_u (i32.add (local.get $r) (i32.const 4)) (local.get $h)))
            (local.set $s00 (v128.const f64x2 0 0)) (local.set $s01 (v128.const f64x2 0 0))
            (local.set $s10 (v128.const f64x2 0 0)) (local.set $s11 (v128.const f64x2 0 0))
            (local.set $s20 (v128.const f64x2 0 0)) (local.set $s21 (v128.const f64x2 0 0))
            (local.set $s30 (v128.const f64x2 0 0)) (local.set $s31 (v128.const f64x2 0 0))
            (local.set $xa (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (i32.add (local.get $i0) (local.get $r)) (local.get $n)) (local.get $i1)) (i32.const 3))))
            (local.set $ps (local.get $strip))
            (local.set $k (i32.const 0))
            (block $terms_done
              (loop $terms
                (br_if $terms_done (i32.ge_u (local.get $k) (local.get $depth)))
                (local.set $x0 (f64x2.splat (f64.load (local.get $xa))))
                (local.set $x1 (f64x2.splat (f64.load (i32.add (local.get $xa) (local.get $rowBytes)))))
                (local.set $x2 (f64x2.splat (f64.load (i32.add (local.get $xa) (i32.shl (local.get $rowBytes) (i32.const 1))))))
                (local.set $x3 (f64x2.splat (f64.load (i32.add (local.get $xa) (i32.mul (local.get $rowBytes) (i32.const 3))))))
                (local.set $b01 (v128.load (local.get $ps)))
                (local.set $b23 (v128.load offset=16 (local.get $ps)))
                (local.set $s00 (f64x2.add (local.get $s00) (f64x2.mul (local.get $x0) (local.get $b01))))
                (local.set $s01 (f64x2.add (local.get $s01) (f64x2.mul (local.get $x0) (local.get $b23))))
                (local.set $s10 (f64x2.add (local.get $s10) (f64x2.mul (local.get $x1) (local.get $b01))))
                (local.set $s11 (f64x2.add (local.get $s11) (f64x2.mul (local.get $x1) (local.get $b23))))
                (local.set $s20 (f64x2.add (local.get $s20) (f64x2.mul (local.get $x2) (local.get $b01))))
                (local.set $s21 (f64x2.add (local.get $s21) (f64x2.mul (local.get $x2) (local.get $b23))))
                (local.set $s30 (f64x2.add (local.get $s30) (f64x2.mul (local.get $x3) (local.get $b01))))
                (local.set $s31 (f64x2.add (local.get $s31) (f64x2.mul (local.get $x3) (local.get $b23))))
                (local.set $xa (i32.add (local.get $xa) (i32.const 8)))
                (local.set $ps (i32.add (local.get $ps) (i32.const 32)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $terms)))
            (local.set $to (i32.add (local.get $block) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (local.get $j)) (i32.const 3))))
            (call $storeColumns (local.get $to) (local.get $cols) (local.get $s00) (local.get $s01))
            (local.set $to (i32.add (local.get $to) (local.get $rowBytes)))
            (call $storeColumns (local.get $to) (local.get $cols) (local.get $s10) (local.get $s11))
            (local.set $to (i32.add (local.get $to) (local.get $rowBytes)))
            (call $storeColumns (local.get $to) (local.get $cols) (local.get $s20) (local.get $s21))
            (local.set $to (i32.add (local.get $to) (local.get $rowBytes)))
            (call $storeColumns (local.get $to) (local.get $cols) (local.get $s30) (local.get $s31))
            (local.set $r (i32.add (local.get $r) (i32.const 4)))
            (br $quads)))
        ;; the rows left, one at a time
        (block $singles_done
          (loop $singles
            (br_if $singles_done (i32.ge_u (local.get $r) (local.get $h)))
            (local.set $s00 (v128.const f64x2 0 0)) (local.set $s01 (v128.const f64x2 0 0))
            (local.set $xa (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (i32.add (local.get $i0) (local.get $r)) (local.get $n)) (local.get $i1)) (i32.const 3))))
            (local.set $ps (local.get $strip))
            (local.set $k (i32.const 0))
            (block $terms1_done
              (loop $terms1
                (br_if $terms1_done (i32.ge_u (local.get $k) (local.get $depth)))
                (local.set $x0 (f64x2.splat (f64.load (local.get $xa))))
                (local.set $s00 (f64x2.add (local.get $s00) (f64x2.mul (local.get $x0) (v128.load (local.get $ps)))))
                (local.set $s01 (f64x2.add (local.get $s01) (f64x2.mul (local.get $x0) (v128.load offset=16 (local.get $ps)))))
                (local.set $xa (i32.add (local.get $xa) (i32.const 8)))
                (local.set $ps (i32.add (local.get $ps) (i32.const 32)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $terms1)))
            (call $storeColumns
              (i32.add (local.get $block) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (local.get $j)) (i32.const 3)))
              (local.get $cols) (local.get $s00) (local.get $s01))
            (local.set $r (i32.add (local.get $r) (i32.const 1)))
            (br $singles)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $cols_loop))))

  ;; The rows above a diagonal block, R[i, J] R[J, J]^T = a[i, J] (choleskyFromTheRight's triangular solve) for the
  ;; rows [$iStart, $iEnd): column j from the right, a[i, j] less sum_{k > j in the block} a[i, k] a[j, k], one term
  ;; at a time, over R[j, j]; each result also into the panel (row i) and its transpose (column i).
  (func (export "panelSolve")
    (param $a i32) (param $n i32) (param $p i32) (param $pt i32) (param $j0 i32) (param $j1 i32) (param $iStart i32) (param $iEnd i32)
    (local $i i32) (local $j i32) (local $k i32) (local $w i32) (local $rowI i32) (local $rowJ i32) (local $sum f64) (local $r f64)
    (local.set $w (i32.sub (local.get $j1) (local.get $j0)))
    (local.set $i (local.get $iStart))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $iEnd)))
        (local.set $rowI (i32.add (local.get $a) (i32.shl (i32.mul (local.get $i) (local.get $n)) (i32.const 3))))
        (local.set $j (local.get $j1))
        (block $cols_done
          (loop $cols
            (br_if $cols_done (i32.le_u (local.get $j) (local.get $j0)))
            (local.set $j (i32.sub (local.get $j) (i32.const 1)))
            (local.set $rowJ (i32.add (local.get $a) (i32.shl (i32.mul (local.get $j) (local.get $n)) (i32.const 3))))
            (local.set $sum (f64.load (i32.add (local.get $rowI) (i32.shl (local.get $j) (i32.const 3)))))
            (local.set $k (i32.add (local.get $j) (i32.const 1)))
            (block $terms_done
              (loop $terms
                (br_if $terms_done (i32.ge_u (local.get $k) (local.get $j1)))
                (local.set $sum (f64.sub (local.get $sum)
                  (f64.mul (f64.load (i32.add (local.get $rowI) (i32.shl (local.get $k) (i32.const 3))))
                           (f64.load (i32.add (local.get $rowJ) (i32.shl (local.get $k) (i32.const 3)))))))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $terms)))
            (local.set $r (f64.div (local.get $sum) (f64.load (i32.add (local.get $rowJ) (i32.shl (local.get $j) (i32.const 3))))))
            (f64.store (i32.add (local.get $rowI) (i32.shl (local.get $j) (i32.const 3))) (local.get $r))
            (f64.store (i32.add (local.get $p) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $w)) (i32.sub (local.get $j) (local.get $j0))) (i32.const 3))) (local.get $r))
            (f64.store (i32.add (local.get $pt) (i32.shl (i32.add (i32.mul (i32.sub (local.get $j) (local.get $j0)) (local.get $n)) (local.get $i)) (i32.const 3))) (local.get $r))
            (br $cols)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; The rows of one block of the inverse (invertUpperInPlace), from the bottom: row[i..i1) = 0, row[i1..n) = T's row,
  ;; then row[k..n) += a[i, k] U[k, k..n) for the block's rows k below i (skipped where a[i, k] is 0, as the
  ;; TypeScript does), then U[i, :] = 1 / R[i, i] on the diagonal, -row * (1 / R[i, i]) right of it, 0 left of it.
  ;; Lanes are neighbouring columns, so each entry's sum is the TypeScript's, term by term.
  (func (export "invertRows")
    (param $a i32) (param $n i32) (param $i0 i32) (param $h i32) (param $i1 i32) (param $block i32) (param $row i32)
    (local $r i32) (local $i i32) (local $j i32) (local $k i32) (local $rowI i32) (local $rowK i32)
    (local $inverse f64) (local $t f64) (local $tv v128) (local $iv v128) (local $at i32)
    (local.set $r (local.get $h))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.eqz (local.get $r)))
        (local.set $r (i32.sub (local.get $r) (i32.const 1)))
        (local.set $i (i32.add (local.get $i0) (local.get $r)))
        (local.set $rowI (i32.add (local.get $a) (i32.shl (i32.mul (local.get $i) (local.get $n)) (i32.const 3))))
        (local.set $inverse (f64.div (f64.const 1) (f64.load (i32.add (local.get $rowI) (i32.shl (local.get $i) (i32.const 3))))))
        ;; row[i..i1) = 0, row[i1..n) = block[r, i1..n)
        (local.set $j (local.get $i))
        (block $zero_done
          (loop $zero
            (br_if $zero_done (i32.ge_u (local.get $j) (local.get $i1)))
            (f64.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))) (f64.const 0))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $zero)))
        (memory.copy
          (i32.add (local.get $row) (i32.shl (local.get $i1) (i32.const 3)))
          (i32.add (local.get $block) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $n)) (local.get $i1)) (i32.const 3)))
          (i32.shl (i32.sub (local.get $n) (local.get $i1)) (i32.const 3)))
        ;; row[k..n) += a[i, k] U[k, k..n) for i < k < i1
        (local.set $k (i32.add (local.get $i) (i32.const 1)))
        (block $ks_done
          (loop $ks
            (br_if $ks_done (i32.ge_u (local.get $k) (local.get $i1)))
            (local.set $t (f64.load (i32.add (local.get $rowI) (i32.shl (local.get $k) (i32.const 3)))))
            (if (f64.ne (local.get $t) (f64.const 0))
              (then
                (local.set $tv (f64x2.splat (local.get $t)))
                (local.set $rowK (i32.add (local.get $a) (i32.shl (i32.mul (local.get $k) (local.get $n)) (i32.const 3))))
                (local.set $j (local.get $k))
                (block $pairs_done
                  (loop $pairs
                    (br_if $pairs_done (i32.gt_u (i32.add (local.get $j) (i32.const 2)) (local.get $n)))
                    (local.set $at (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))))
                    (v128.store (local.get $at) (f64x2.add (v128.load (local.get $at))
                      (f64x2.mul (local.get $tv) (v128.load (i32.add (local.get $rowK) (i32.shl (local.get $j) (i32.const 3)))))))
                    (local.set $j (i32.add (local.get $j) (i32.const 2)))
                    (br $pairs)))
                (if (i32.lt_u (local.get $j) (local.get $n))
                  (then
                    (local.set $at (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))))
                    (f64.store (local.get $at) (f64.add (f64.load (local.get $at))
                      (f64.mul (local.get $t) (f64.load (i32.add (local.get $rowK) (i32.shl (local.get $j) (i32.const 3)))))))))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $ks)))
        ;; U[i, :]
        (f64.store (i32.add (local.get $rowI) (i32.shl (local.get $i) (i32.const 3))) (local.get $inverse))
        (local.set $iv (f64x2.splat (local.get $inverse)))
        (local.set $j (i32.add (local.get $i) (i32.const 1)))
        (block $out_done
          (loop $out
            (br_if $out_done (i32.gt_u (i32.add (local.get $j) (i32.const 2)) (local.get $n)))
            (v128.store (i32.add (local.get $rowI) (i32.shl (local.get $j) (i32.const 3)))
              (f64x2.mul (f64x2.neg (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))))) (local.get $iv)))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))
            (br $out)))
        (if (i32.lt_u (local.get $j) (local.get $n))
          (then
            (f64.store (i32.add (local.get $rowI) (i32.shl (local.get $j) (i32.const 3)))
              (f64.mul (f64.neg (f64.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))))) (local.get $inverse)))))
        (memory.fill (local.get $rowI) (i32.const 0) (i32.shl (local.get $i) (i32.const 3)))
        (br $rows))))
)
