//! Batched matmul with optional transposes, and the linear layer built on it.

use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

macro_rules! matmul_shader {
    ($name:literal, $prelude:literal) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $prelude, ".wgsl")),
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/matmul.wgsl")),
            ),
        }
    };
}

const VEC4: Shader = matmul_shader!("matmul_vec4", "matmul_vec4");
const SCALAR: Shader = matmul_shader!("matmul_scalar", "matmul_scalar");

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
    act: u32,
    slope: f32,
    has_bias: u32,
    _pad: u32,
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

/// C[b] = op(A[b]) * op(B[b]) for A, B of shape [batch, rows, cols] (or 2-d for batch 1).
/// `trans_a` reads A as [batch, K, M], `trans_b` reads B as [batch, N, K]; an operand with
/// batch 1 broadcasts. Returns [batch, M, N] (2-d when both inputs are 2-d).
pub fn matmul(s: &mut Stream, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    let blk = block(s.gpu());
    gemm("matmul", s, a, b, (trans_a, trans_b), None, Act::Identity, blk)
}

/// y = act(x * w^T + bias) with x [N, in], w [out, in] (PyTorch layout), bias [out].
pub fn linear(s: &mut Stream, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, act: Act) -> Result<Tensor> {
    const OP: &str = "linear";
    let [_, fin] = x.dims(OP)?;
    let [out, win] = w.dims(OP)?;
    if fin != win {
        return shape_err(OP, format!("x {:?} has {fin} features but w {:?} expects {win}", x.shape(), w.shape()));
    }
    if let Some(bt) = bias {
        if bt.shape() != [out] {
            return shape_err(OP, format!("bias {:?} must be [{out}] for w {:?}", bt.shape(), w.shape()));
        }
    }
    let blk = block(s.gpu());
    gemm(OP, s, x, w, (false, true), bias, act, blk)
}

fn as3(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 3]> {
    match *t.shape() {
        [r, c] => Ok([1, r, c]),
        [b, r, c] => Ok([b, r, c]),
        _ => shape_err(op, format!("{name} must be 2-d or 3-d, got {:?}", t.shape())),
    }
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
        return shape_err(op, format!(
            "inner dimensions differ: a {:?} (trans {ta}) x b {:?} (trans {tb})", a.shape(), b.shape()));
    }
    if ba != bb && ba != 1 && bb != 1 {
        return shape_err(op, format!("batch sizes differ: a {:?}, b {:?}", a.shape(), b.shape()));
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
    let (kind, slope) = act.code();
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch: batch as u32,
        a_batch: ba as u32,
        b_batch: bb as u32,
        tiles_m: tiles_m as u32,
        tiles_n: tiles_n as u32,
        act: kind,
        slope,
        has_bias: bias.is_some() as u32,
        _pad: 0,
    };
    // vec4 loads need every contiguous axis (and so every row start) to be a multiple of 4.
    let aligned = (if ta { m } else { k }) % 4 == 0 && (if tb { k } else { n }) % 4 == 0 && n % 4 == 0;
    let shader = if aligned { VEC4 } else { SCALAR };
    let consts = [
        ("TA", ta as u32 as f64),
        ("TB", tb as u32 as f64),
        ("TM4", tm4 as f64),
        ("TN4", tn4 as f64),
        ("WG", wg as f64),
    ];
    let mut grid = grid_1d(tiles_m * tiles_n, wg);
    grid[2] = batch as u32;
    let bias_t = bias.unwrap_or(a);
    s.dispatch(shader, "matmul", &consts, bytes_of(&params), &[a, b, bias_t, &c], grid)?;
    Ok(c)
}
