//! Assembly text shared by the aarch64 int8 kernels whose loops are inline assembly (a
//! textual macro, declared before the kernel modules so they all see it).

/// `gemm::neon::store16`'s u8 arithmetic as assembly text, for the kernels whose loops are inline
/// assembly: the i32 sums in `v$a`..`v$d` (overwritten) times the multipliers in
/// `v$s0`..`v$s3` (`SCVTF`, `FMUL`, `FCVTNS`), narrowed with saturation, `+ zp` (`v$zp`, i16
/// lanes), clamped to `v$lo..v$hi`: the 16 bytes end in `v$t0` (`v$t1` is scratch). The
/// caller stores them. Registers are numbers so the text is a literal.
#[rustfmt::skip]
macro_rules! requant16_asm {
    ($a:literal, $b:literal, $c:literal, $d:literal;
     $s0:literal, $s1:literal, $s2:literal, $s3:literal;
     $zp:literal, $lo:literal, $hi:literal; $t0:literal, $t1:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; $s0, $s1, $s2, $s3; $zp; $t0, $t1),
            "umax v", $t0, ".16b, v", $t0, ".16b, v", $lo, ".16b\n",
            "umin v", $t0, ".16b, v", $t0, ".16b, v", $hi, ".16b\n",
        )
    };
    // without the clamp: for bounds 0..=255, which the saturating narrowing already gives
    ($a:literal, $b:literal, $c:literal, $d:literal;
     $s0:literal, $s1:literal, $s2:literal, $s3:literal;
     $zp:literal; $t0:literal, $t1:literal) => {
        concat!(
            "scvtf v", $a, ".4s, v", $a, ".4s\n",
            "scvtf v", $b, ".4s, v", $b, ".4s\n",
            "scvtf v", $c, ".4s, v", $c, ".4s\n",
            "scvtf v", $d, ".4s, v", $d, ".4s\n",
            "fmul v", $a, ".4s, v", $a, ".4s, v", $s0, ".4s\n",
            "fmul v", $b, ".4s, v", $b, ".4s, v", $s1, ".4s\n",
            "fmul v", $c, ".4s, v", $c, ".4s, v", $s2, ".4s\n",
            "fmul v", $d, ".4s, v", $d, ".4s, v", $s3, ".4s\n",
            "fcvtns v", $a, ".4s, v", $a, ".4s\n",
            "fcvtns v", $b, ".4s, v", $b, ".4s\n",
            "fcvtns v", $c, ".4s, v", $c, ".4s\n",
            "fcvtns v", $d, ".4s, v", $d, ".4s\n",
            "sqxtn v", $t0, ".4h, v", $a, ".4s\n",
            "sqxtn2 v", $t0, ".8h, v", $b, ".4s\n",
            "sqxtn v", $t1, ".4h, v", $c, ".4s\n",
            "sqxtn2 v", $t1, ".8h, v", $d, ".4s\n",
            "sqadd v", $t0, ".8h, v", $t0, ".8h, v", $zp, ".8h\n",
            "sqadd v", $t1, ".8h, v", $t1, ".8h, v", $zp, ".8h\n",
            "sqxtun v", $t0, ".8b, v", $t0, ".8h\n",
            "sqxtun2 v", $t0, ".16b, v", $t1, ".8h\n",
        )
    };
}
