//! Lookups by I32 index: one-hot labels and embedding tables (class-conditional GAN inputs).
//! Indices out of range produce zero rows (kernels cannot fail; PyTorch would raise).
//!
//! Pieces: shader `shaders/embed.wgsl`; no backward (training feeds one-hot rows to a linear
//! layer instead); CPU reference `cpu::embed`; tests below.

use super::bytes_of;
use super::checks::dtype;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("embed");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    rows: u32,
    d: u32,
    _pad: u32,
}

/// labels I32 `[N]` -> f32 `[N, classes]`.
pub fn one_hot(s: &mut Stream, labels: &Tensor, classes: usize) -> Result<Tensor> {
    dtype("one_hot", labels, DType::I32)?;
    let [n] = labels.dims::<1>("one_hot")?;
    if classes == 0 {
        return shape_err(
            "one_hot",
            format!("0 classes for labels {:?}", labels.shape()),
        );
    }
    let y = s.gpu().alloc("one_hot", &[n, classes], DType::F32)?;
    let p = Params {
        total: y.numel() as u32,
        rows: classes as u32,
        d: classes as u32,
        _pad: 0,
    };
    s.dispatch(
        SHADER,
        "one_hot",
        &[],
        bytes_of(&p),
        &[labels, &y],
        grid_1d(y.numel(), 256),
    )?;
    Ok(y)
}

/// table f32 `[V, D]`, indices I32 of any shape `[...]` -> `[..., D]` (nn.Embedding).
pub fn embedding(s: &mut Stream, table: &Tensor, indices: &Tensor) -> Result<Tensor> {
    dtype("embedding", table, DType::F32)?;
    dtype("embedding", indices, DType::I32)?;
    let [v, d] = table.dims::<2>("embedding")?;
    let mut shape = indices.shape().to_vec();
    shape.push(d);
    let y = s.gpu().alloc("embedding", &shape, DType::F32)?;
    let p = Params {
        total: y.numel() as u32,
        rows: v as u32,
        d: d as u32,
        _pad: 0,
    };
    s.dispatch(
        SHADER,
        "embedding",
        &[],
        bytes_of(&p),
        &[indices, &y, table],
        grid_1d(y.numel(), 256),
    )?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn check_one_hot(labels: &[i32], k: usize) {
        let g = gpu();
        let mut s = g.stream();
        let y = one_hot(&mut s, &g.upload_i32(&[labels.len()], labels).unwrap(), k).unwrap();
        s.submit();
        assert_eq!(y.shape(), [labels.len(), k]);
        assert_eq!(g.read_f32(&y).unwrap(), cpu::embed::one_hot(labels, k).data);
    }

    fn check_embedding(v: usize, d: usize, idx: &[i32], idx_shape: &[usize], seed: u64) {
        let g = gpu();
        let table = Array::random(&[v, d], seed);
        let mut s = g.stream();
        let t = g.upload_f32(&[v, d], &table.data).unwrap();
        let y = embedding(&mut s, &t, &g.upload_i32(idx_shape, idx).unwrap()).unwrap();
        s.submit();
        let want = cpu::embed::embedding(&table, idx, idx_shape);
        assert_eq!(y.shape(), &want.shape[..]);
        assert_eq!(g.read_f32(&y).unwrap(), want.data);
    }

    #[test]
    fn one_hot_matches_cpu() {
        crate::ops::skip_without_gpu!();
        check_one_hot(&[0, 3, 9, 1], 10);
        check_one_hot(&[2], 3);
        check_one_hot(&[0, -1, 10, 5], 10); // out of range: zero rows
    }

    #[test]
    fn embedding_matches_cpu() {
        crate::ops::skip_without_gpu!();
        check_embedding(10, 7, &[3, 0, 9, 3], &[4], 1);
        check_embedding(5, 1, &[4, 2, 1, 0, 3, 2], &[2, 3], 2);
        check_embedding(3, 4, &[-1, 3, 1], &[3], 3); // out of range: zero rows
    }

    #[test]
    fn rejects_bad_inputs() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let mut s = g.stream();
        let f = g.upload_f32(&[3], &[0.0; 3]).unwrap();
        let err = one_hot(&mut s, &f, 10).unwrap_err().to_string();
        assert!(err.contains("one_hot") && err.contains("F32"), "{err}");
        let l = g.upload_i32(&[3], &[0; 3]).unwrap();
        assert!(one_hot(&mut s, &l, 0).is_err());
        assert!(one_hot(&mut s, &l.reshape(&[1, 3]).unwrap(), 4).is_err());
        let t3 = g.upload_f32(&[1, 3, 1], &[0.0; 3]).unwrap();
        let err = embedding(&mut s, &t3, &l).unwrap_err().to_string();
        assert!(
            err.contains("embedding") && err.contains("[1, 3, 1]"),
            "{err}"
        );
        assert!(embedding(&mut s, &f.reshape(&[3, 1]).unwrap(), &f).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn random_lookups(v in 1usize..20, d in 1usize..40, idx in proptest::collection::vec(-2i32..22, 1..50), seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            check_one_hot(&idx, v);
            check_embedding(v, d, &idx, &[idx.len()], seed);
        }
    }
}
