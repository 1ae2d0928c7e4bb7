//! Batched matmul with optional transposes, and the linear layer built on it.
//!
//! Pieces: shader `shaders/matmul.wgsl` with the `matmul_scalar` / `matmul_vec4` load preludes;
//! backward: `matmul` with transposes (`graph::tape`); CPU reference `cpu::matmul`; tests below.

use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

const VEC4: Shader = crate::shader!("matmul_vec4", "matmul_vec4", "matmul_a_plain", "matmul");
const SCALAR: Shader = crate::shader!("matmul_scalar", "matmul_scalar", "matmul_a_plain", "matmul");
/// A tiles broadcast across subgroups of 8 or more lanes (see `shaders/matmul_a_subgroup.wgsl`).
const VEC4_SUBGROUP: Shader = crate::shader!(
    "matmul_vec4_subgroup",
    "matmul_vec4",
    "matmul_a_subgroup",
    "matmul"
);
const SCALAR_SUBGROUP: Shader = crate::shader!(
    "matmul_scalar_subgroup",
    "matmul_scalar",
    "matmul_a_subgroup",
    "matmul"
);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch: u32,
    b_batch: u32,
    tiles_m: u32,
    tiles_n: u32,
    _p0: u32,
    slope: f32,
    has_bias: u32,
    _p1: u32,
}

/// Register block (tiles of 4 rows, tiles of 4 columns) and workgroup size for this adapter.
/// CPU drivers run lanes as SIMD over many registers and pay per load, so a 16x16 block wins
/// there; GPUs want fewer registers per thread and more threads.
pub(crate) fn block(gpu: &Gpu) -> (u32, u32, u32) {
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        (4, 4, 16)
    } else {
        (2, 2, 64)
    }
}

fn check_f32(op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return shape_err(op, format!("{name} must be f32, got {:?}", t.dtype()));
    }
    Ok(())
}

/// `C[b] = op(A[b]) * op(B[b])` for A, B of shape `[batch, rows, cols]` (or 2-d for batch 1).
/// `trans_a` reads A as [batch, K, M], `trans_b` reads B as [batch, N, K]; an operand with
/// batch 1 broadcasts. Returns [batch, M, N] (2-d when both inputs are 2-d).
pub fn matmul(
    s: &mut Stream,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let blk = block(s.gpu());
    gemm(
        "matmul",
        s,
        a,
        b,
        (trans_a, trans_b),
        None,
        Act::Identity,
        blk,
    )
}

/// `y = act(x * w^T + bias)` with x `[N, in]`, w `[out, in]` (PyTorch layout), bias `[out]`.
pub fn linear(
    s: &mut Stream,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
) -> Result<Tensor> {
    const OP: &str = "linear";
    let [_, fin] = x.dims(OP)?;
    let [out, win] = w.dims(OP)?;
    if fin != win {
        return shape_err(
            OP,
            format!(
                "x {:?} has {fin} features but w {:?} expects {win}",
                x.shape(),
                w.shape()
            ),
        );
    }
    if let Some(bt) = bias {
        if bt.shape() != [out] {
            return shape_err(
                OP,
                format!(
                    "bias {:?} must be [{out}] for w {:?}",
                    bt.shape(),
                    w.shape()
                ),
            );
        }
    }
    let blk = block(s.gpu());
    gemm(OP, s, x, w, (false, true), bias, act, blk)
}

fn as3(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 3]> {
    match *t.shape() {
        [r, c] => Ok([1, r, c]),
        [b, r, c] => Ok([b, r, c]),
        _ => shape_err(
            op,
            format!("{name} must be 2-d or 3-d, got {:?}", t.shape()),
        ),
    }
}

/// Tests set `tests::PLAIN` to run the plain-load form on an adapter with subgroups.
#[cfg(test)]
fn plain_forced() -> bool {
    tests::PLAIN.with(|f| f.get())
}

#[cfg(not(test))]
fn plain_forced() -> bool {
    false
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    op: &'static str,
    s: &mut Stream,
    a: &Tensor,
    b: &Tensor,
    (ta, tb): (bool, bool),
    bias: Option<&Tensor>,
    act: Act,
    (tm4, tn4, wg): (u32, u32, u32),
) -> Result<Tensor> {
    check_f32(op, "a", a)?;
    check_f32(op, "b", b)?;
    let [ba, ar, ac] = as3(op, "a", a)?;
    let [bb, br, bc] = as3(op, "b", b)?;
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        return shape_err(
            op,
            format!(
                "inner dimensions differ: a {:?} (trans {ta}) x b {:?} (trans {tb})",
                a.shape(),
                b.shape()
            ),
        );
    }
    if ba != bb && ba != 1 && bb != 1 {
        return shape_err(
            op,
            format!("batch sizes differ: a {:?}, b {:?}", a.shape(), b.shape()),
        );
    }
    if let Some(bt) = bias {
        check_f32(op, "bias", bt)?;
    }
    let batch = ba.max(bb);
    let out_shape: Vec<usize> = if a.shape().len() == 2 && b.shape().len() == 2 {
        vec![m, n]
    } else {
        vec![batch, m, n]
    };
    let c = s.gpu().alloc(op, &out_shape, DType::F32)?;
    let (tiles_m, tiles_n) = (m.div_ceil(4 * tm4 as usize), n.div_ceil(4 * tn4 as usize));
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch: batch as u32,
        a_batch: ba as u32,
        b_batch: bb as u32,
        tiles_m: tiles_m as u32,
        tiles_n: tiles_n as u32,
        _p0: 0,
        slope: act.code().1,
        has_bias: bias.is_some() as u32,
        _p1: 0,
    };
    // vec4 loads need every contiguous axis (and so every row start) to be a multiple of 4.
    let aligned =
        (if ta { m } else { k }) % 4 == 0 && (if tb { k } else { n }) % 4 == 0 && n % 4 == 0;
    // The subgroup form needs 16-row blocks and the row block in the grid's z (with the batch).
    let sg =
        s.gpu().subgroups && tm4 == 4 && wg % 8 == 0 && batch * tiles_m <= 65535 && !plain_forced();
    let shader = match (aligned, sg) {
        (true, false) => VEC4,
        (false, false) => SCALAR,
        (true, true) => VEC4_SUBGROUP,
        (false, true) => SCALAR_SUBGROUP,
    };
    let consts = [
        ("TA", ta as u32 as f64),
        ("TB", tb as u32 as f64),
        ("TM4", tm4 as f64),
        ("TN4", tn4 as f64),
        ("WG", wg as f64),
        ("MZ", sg as u32 as f64),
        super::elementwise::act_const(act),
    ];
    let mut grid = if sg {
        grid_1d(tiles_n, wg)
    } else {
        grid_1d(tiles_m * tiles_n, wg)
    };
    grid[2] = if sg { batch * tiles_m } else { batch } as u32;
    let bias_t = bias.unwrap_or(a);
    s.dispatch(
        shader,
        "matmul",
        &consts,
        bytes_of(&params),
        &[a, b, bias_t, &c],
        grid,
    )?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    thread_local! {
        /// Set to run the plain-load form on an adapter with subgroups.
        pub(super) static PLAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A is [ba, M, K] (or [ba, K, M] transposed), B likewise; returns the max relative error.
    #[allow(clippy::too_many_arguments)]
    fn check(
        ba: usize,
        bb: usize,
        m: usize,
        n: usize,
        k: usize,
        ta: bool,
        tb: bool,
        blk: (u32, u32, u32),
    ) -> f32 {
        let g = gpu();
        let ash = if ta { [ba, k, m] } else { [ba, m, k] };
        let bsh = if tb { [bb, n, k] } else { [bb, k, n] };
        let (a, b) = (
            Array::random(&ash, (m * 31 + k) as u64),
            Array::random(&bsh, (n * 17 + k) as u64),
        );
        let want = cpu::matmul::matmul(&a, &b, ta, tb);
        let (at, bt) = (
            g.upload_f32(&ash, &a.data).unwrap(),
            g.upload_f32(&bsh, &b.data).unwrap(),
        );
        let mut s = g.stream();
        let c = gemm(
            "matmul",
            &mut s,
            &at,
            &bt,
            (ta, tb),
            None,
            Act::Identity,
            blk,
        )
        .unwrap();
        s.submit();
        assert_eq!(c.shape(), &want.shape[..]);
        Array::new(&want.shape, g.read_f32(&c).unwrap()).max_rel_err(&want.data)
    }

    const TRANS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

    #[test]
    fn odd_and_aligned_sizes_all_transposes() {
        crate::ops::skip_without_gpu!();
        crate::ops::note_untested_subgroups(&crate::testing::gpu(), "matmul");
        // (batch a, batch b, M, N, K): odd sizes take scalar loads, multiples of 4 vec4 loads.
        let cases = [
            (1, 1, 1, 1, 1),
            (2, 2, 3, 17, 5),
            (1, 3, 17, 3, 65),
            (3, 1, 65, 33, 17),
            (2, 2, 20, 24, 16),
            (1, 1, 36, 8, 70),
            (2, 1, 64, 64, 64),
        ];
        // The (4, 4, *) blocks take the subgroup form where the adapter has subgroups; PLAIN
        // runs them with per-lane loads too.
        for plain in [false, true] {
            PLAIN.with(|f| f.set(plain));
            for (ba, bb, m, n, k) in cases {
                for (ta, tb) in TRANS {
                    let blocks: &[_] = if plain {
                        &[(4, 4, 16)]
                    } else {
                        &[(4, 4, 16), (2, 2, 64), (1, 3, 8), (4, 1, 8), (4, 4, 64)]
                    };
                    for &blk in blocks {
                        let e = check(ba, bb, m, n, k, ta, tb, blk);
                        assert!(
                            e < 1e-4,
                            "{ba}x{bb} {m}x{n}x{k} trans ({ta}, {tb}) block {blk:?} plain \
                             {plain}: err {e}"
                        );
                    }
                }
            }
        }
        PLAIN.with(|f| f.set(false));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes_match_cpu(
            batch in 1usize..4, m in 1usize..40, n in 1usize..40, k in 1usize..40,
            ti in 0usize..4, bcast in 0usize..3,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            let (ba, bb) = match bcast { 0 => (batch, batch), 1 => (1, batch), _ => (batch, 1) };
            let (ta, tb) = TRANS[ti];
            let e = check(ba, bb, m, n, k, ta, tb, block(&gpu()));
            prop_assert!(e < 1e-4, "err {}", e);
        }
    }

    #[test]
    fn linear_fuses_bias_and_activation() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (n, fin, out, act) in [
            (5, 7, 10, Act::Relu),
            (8, 64, 12, Act::Tanh),
            (3, 100, 4, Act::LeakyRelu(0.2)),
        ] {
            let (x, w, b) = (
                Array::random(&[n, fin], 1),
                Array::random(&[out, fin], 2),
                Array::random(&[out], 3),
            );
            let want = cpu::matmul::linear(&x, &w, Some(&b), act);
            let xt = g.upload_f32(&x.shape, &x.data).unwrap();
            let wt = g.upload_f32(&w.shape, &w.data).unwrap();
            let bt = g.upload_f32(&b.shape, &b.data).unwrap();
            let mut s = g.stream();
            let y = linear(&mut s, &xt, &wt, Some(&bt), act).unwrap();
            let y2 = linear(&mut s, &xt, &wt, None, Act::Identity).unwrap();
            s.submit();
            assert_eq!(y.shape(), [n, out]);
            assert!(Array::new(&[n, out], g.read_f32(&y).unwrap()).max_rel_err(&want.data) < 1e-4);
            let plain = cpu::matmul::linear(&x, &w, None, Act::Identity);
            assert!(
                Array::new(&[n, out], g.read_f32(&y2).unwrap()).max_rel_err(&plain.data) < 1e-4
            );
        }
    }

    #[test]
    fn shape_errors_name_the_op() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let a = g.upload_f32(&[2, 3, 4], &[0.0; 24]).unwrap();
        let b = g.upload_f32(&[2, 5, 6], &[0.0; 60]).unwrap();
        let err = matmul(&mut g.stream(), &a, &b, false, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("matmul") && err.contains("[2, 3, 4]") && err.contains("[2, 5, 6]"),
            "{err}"
        );
        let b3 = g.upload_f32(&[3, 4, 6], &[0.0; 72]).unwrap();
        let err = matmul(&mut g.stream(), &a, &b3, false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch"), "{err}");
        let v = g.upload_f32(&[4], &[0.0; 4]).unwrap();
        assert!(matmul(&mut g.stream(), &v, &b, false, false).is_err());

        let x = g.upload_f32(&[2, 8], &[0.0; 16]).unwrap();
        let w = g.upload_f32(&[3, 7], &[0.0; 21]).unwrap();
        let err = linear(&mut g.stream(), &x, &w, None, Act::Relu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear") && err.contains("[3, 7]"), "{err}");
        let w = g.upload_f32(&[3, 8], &[0.0; 24]).unwrap();
        let err = linear(&mut g.stream(), &x, &w, Some(&v), Act::Relu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bias"), "{err}");
    }
}
