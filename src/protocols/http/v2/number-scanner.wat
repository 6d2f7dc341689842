;; The V2 JSON body parser's number scanner (json-body.ts): reads one run of JSON numbers
;; separated by commas, as in the innermost array of a tensor's `data`, into doubles.
;;
;; It produces exactly the doubles json-body.ts's own loop produces, and only where that loop
;; converts exactly: -?(0|[1-9][0-9]*)(.[0-9]+)? with at most 15 digits (not counting a lone
;; integer 0) and at most 22 fraction digits, so that the mantissa (an integer below 2^53) and
;; the power of ten are both exact doubles and one IEEE division rounds correctly (Clinger's
;; fast path). Anything else (an exponent, more digits, a leading zero, a bracket among the
;; numbers) answers -1 and the caller reads the run itself.
;;
;; Fraction digits are read eight bytes at a time (one 64-bit load; the length of the digit run
;; from the lowest non-digit byte, its value with three multiplies), because real data has
;; fractions of varying length ("0.1", "-1.2345") and a loop that stops after each digit
;; mispredicts the end of nearly every run; the sign and a leading 0 are taken without branches
;; for the same reason. On 4-decimal data with trailing zeros dropped this reads a 224x224x3
;; image in ~1.4 ms where the byte loop took ~2.2 ms. Source of number-scanner-wasm.ts
;; (`npm run build:wasm`).
(module
  ;; Layout, written by the caller: powers of ten 1e0..1e22 as f64 at 0 and 10^0..10^8 as i64
  ;; at 184; the body bytes from the address it passes, followed by a byte that is not part of
  ;; a number and at least 7 more readable bytes; the doubles out.
  (memory (export "memory") 1)
  ;; Where the scan stopped: the first byte after the run and the whitespace after it, or
  ;; the start of the next number when $full.
  (global $end (export "end") (mut i32) (i32.const 0))
  ;; 1 when the scan stopped because it had written cap numbers: call again from $end.
  (global $full (export "full") (mut i32) (i32.const 0))

  (func $isSpace (param $c i32) (result i32)
    (i32.or
      (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x0a)))
      (i32.or (i32.eq (local.get $c) (i32.const 0x0d)) (i32.eq (local.get $c) (i32.const 0x09)))))

  ;; scan(p, out, cap): numbers from address p, written as f64 from address out, at most cap
  ;; of them. Returns how many (and sets $end and $full), or -1 when the run is not all
  ;; fast-path numbers.
  (func (export "scan") (param $p i32) (param $out i32) (param $cap i32) (result i32)
    (local $c i32) (local $negative i32) (local $mantissa i64) (local $digits i32)
    (local $fraction i32) (local $count i32) (local $n i32) (local $value f64) (local $d i64) (local $v i64)
    (global.set $full (i32.const 0))
    (local.set $c (i32.load8_u (local.get $p)))
    (loop $number
      (if (i32.eq (local.get $count) (local.get $cap))
        (then
          (global.set $end (local.get $p))
          (global.set $full (i32.const 1))
          (return (local.get $count))))
      ;; Sign, without a branch (signs of real data are as good as random).
      (local.set $negative (i32.eq (local.get $c) (i32.const 0x2d)))
      (local.set $p (i32.add (local.get $p) (local.get $negative)))
      ;; Integer part: 0, or a non-zero digit and more digits (up to 15). Byte by byte:
      ;; it is one digit long in most data, a branch that predicts well.
      (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 0x30)))
      (if (i32.gt_u (local.get $c) (i32.const 9)) (then (return (i32.const -1))))
      (local.set $mantissa (i64.extend_i32_u (local.get $c)))
      ;; A leading 0 is no significant digit (without a branch: whether the integer part is 0
      ;; is as random in real data as the sign).
      (local.set $digits (i32.ne (local.get $c) (i32.const 0)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 0x30)))
      (if (i32.le_u (local.get $c) (i32.const 9))
        (then
          ;; More integer digits: a leading 0 must stand alone.
          (if (i32.eqz (local.get $digits)) (then (return (i32.const -1))))
          (loop $integer
            (if (i32.eq (local.get $digits) (i32.const 15)) (then (return (i32.const -1))))
            (local.set $mantissa (i64.add (i64.mul (local.get $mantissa) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
            (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 0x30)))
            (br_if $integer (i32.le_u (local.get $c) (i32.const 9))))))
      (local.set $fraction (i32.const 0))
      (local.set $c (i32.load8_u (local.get $p)))
      ;; Fraction: every digit scales by ten (a run of 8 may go on).
      (if (i32.eq (local.get $c) (i32.const 0x2e))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (loop $fractionRun
            (local.set $d (i64.sub (i64.load (local.get $p)) (i64.const 0x3030303030303030)))
            (local.set $n
              (i32.wrap_i64
                (i64.shr_u
                  (i64.ctz
                    (i64.and
                      (i64.or (local.get $d) (i64.add (local.get $d) (i64.const 0x7676767676767676)))
                      (i64.const 0x8080808080808080)))
                  (i64.const 3))))
            (local.set $v (i64.shl (local.get $d) (i64.extend_i32_u (i32.shl (i32.sub (i32.const 8) (local.get $n)) (i32.const 3)))))
            (local.set $v (i64.shr_u (i64.mul (i64.and (local.get $v) (i64.const 0x0f0f0f0f0f0f0f0f)) (i64.const 2561)) (i64.const 8)))
            (local.set $v (i64.shr_u (i64.mul (i64.and (local.get $v) (i64.const 0x00ff00ff00ff00ff)) (i64.const 6553601)) (i64.const 16)))
            (local.set $v (i64.shr_u (i64.mul (i64.and (local.get $v) (i64.const 0x0000ffff0000ffff)) (i64.const 42949672960001)) (i64.const 32)))
            (local.set $v (select (local.get $v) (i64.const 0) (local.get $n)))
            (local.set $mantissa
              (i64.add
                (i64.mul (local.get $mantissa) (i64.load offset=184 (i32.shl (local.get $n) (i32.const 3))))
                (local.get $v)))
            (local.set $digits (i32.add (local.get $digits) (local.get $n)))
            (local.set $fraction (i32.add (local.get $fraction) (local.get $n)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (br_if $fractionRun (i32.and (i32.eq (local.get $n) (i32.const 8)) (i32.le_u (local.get $digits) (i32.const 15)))))
          (if (i32.eqz (local.get $fraction)) (then (return (i32.const -1))))
          (local.set $c (i32.load8_u (local.get $p)))))
      ;; More digits than convert exactly, exponents, and fractions beyond 1e-22 are left to the caller.
      (if (i32.or
            (i32.or (i32.gt_u (local.get $digits) (i32.const 15)) (i32.gt_u (local.get $fraction) (i32.const 22)))
            (i32.eq (i32.or (local.get $c) (i32.const 0x20)) (i32.const 0x65)))
        (then (return (i32.const -1))))
      (local.set $value
        (f64.div (f64.convert_i64_u (local.get $mantissa)) (f64.load (i32.shl (local.get $fraction) (i32.const 3)))))
      (f64.store (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 3)))
        (select (f64.neg (local.get $value)) (local.get $value) (local.get $negative)))
      (local.set $count (i32.add (local.get $count) (i32.const 1)))
      ;; Whitespace, then a comma and whitespace before the next number, or the end of the run.
      ;; Whitespace is rare and every whitespace byte is <= 0x20: one compare in the common case.
      (if (i32.le_u (local.get $c) (i32.const 0x20))
        (then
          (block $afterSpace
            (loop $space
              (br_if $afterSpace (i32.eqz (call $isSpace (local.get $c))))
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (local.set $c (i32.load8_u (local.get $p)))
              (br $space)))))
      (if (i32.eq (local.get $c) (i32.const 0x2c))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.le_u (local.get $c) (i32.const 0x20))
            (then
              (block $afterSpace2
                (loop $space2
                  (br_if $afterSpace2 (i32.eqz (call $isSpace (local.get $c))))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (local.set $c (i32.load8_u (local.get $p)))
                  (br $space2)))))
          (br $number))))
    (global.set $end (local.get $p))
    (local.get $count))
)
