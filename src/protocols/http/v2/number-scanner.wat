;; The V2 JSON body parser's number scanner (json-body.ts): reads one run of JSON numbers
;; separated by commas, as in the innermost array of a tensor's `data`, into doubles.
;;
;; It produces exactly the doubles json-body.ts's own loop produces, and only where that loop
;; converts exactly: -?(0|[1-9][0-9]*)(.[0-9]+)? with at most 15 significant digits and at most
;; 22 fraction digits, so that the mantissa (an integer below 2^53) and the power of ten are
;; both exact doubles and one IEEE division rounds correctly (Clinger's fast path). Anything
;; else (an exponent, more digits, a leading zero, a bracket among the numbers) answers -1 and
;; the caller reads the run itself. Source of number-scanner-wasm.ts (`npm run build:wasm`).
(module
  ;; Layout, written by the caller: powers of ten 1e0..1e22 as f64 at 0; the body bytes from
  ;; the address it passes, followed by a byte that is not part of a number; the doubles out.
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
    (local $fraction i32) (local $count i32) (local $value f64)
    (global.set $full (i32.const 0))
    (local.set $c (i32.load8_u (local.get $p)))
    (loop $number
      (if (i32.eq (local.get $count) (local.get $cap))
        (then
          (global.set $end (local.get $p))
          (global.set $full (i32.const 1))
          (return (local.get $count))))
      ;; Sign.
      (local.set $negative (i32.eq (local.get $c) (i32.const 0x2d)))
      (if (local.get $negative)
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $c (i32.load8_u (local.get $p)))))
      (local.set $mantissa (i64.const 0))
      (local.set $digits (i32.const 0))
      (local.set $fraction (i32.const 0))
      ;; Integer part: 0, or a non-zero digit and more digits.
      (if (i32.eq (local.get $c) (i32.const 0x30))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.le_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9)) (then (return (i32.const -1)))))
        (else
          (if (i32.gt_u (i32.sub (local.get $c) (i32.const 0x31)) (i32.const 8)) (then (return (i32.const -1))))
          (loop $integer
            (if (i32.eq (local.get $digits) (i32.const 15)) (then (return (i32.const -1))))
            (local.set $mantissa
              (i64.add (i64.mul (local.get $mantissa) (i64.const 10)) (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 0x30)))))
            (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (local.set $c (i32.load8_u (local.get $p)))
            (br_if $integer (i32.le_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9))))))
      ;; Fraction: every digit scales by ten; leading zeros are not significant digits.
      (if (i32.eq (local.get $c) (i32.const 0x2e))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.gt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9)) (then (return (i32.const -1))))
          (loop $fractionDigit
            (if (i32.or (local.get $digits) (i32.ne (local.get $c) (i32.const 0x30)))
              (then
                (if (i32.eq (local.get $digits) (i32.const 15)) (then (return (i32.const -1))))
                (local.set $mantissa
                  (i64.add (i64.mul (local.get $mantissa) (i64.const 10)) (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 0x30)))))
                (local.set $digits (i32.add (local.get $digits) (i32.const 1)))))
            (local.set $fraction (i32.add (local.get $fraction) (i32.const 1)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (local.set $c (i32.load8_u (local.get $p)))
            (br_if $fractionDigit (i32.le_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 9))))))
      ;; Exponents, and fractions beyond 1e-22, are left to the caller.
      (if (i32.or (i32.eq (i32.or (local.get $c) (i32.const 0x20)) (i32.const 0x65)) (i32.gt_u (local.get $fraction) (i32.const 22)))
        (then (return (i32.const -1))))
      (local.set $value
        (f64.div (f64.convert_i64_u (local.get $mantissa)) (f64.load (i32.shl (local.get $fraction) (i32.const 3)))))
      (if (local.get $negative) (then (local.set $value (f64.neg (local.get $value)))))
      (f64.store (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 3))) (local.get $value))
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
