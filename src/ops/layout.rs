//! Data movement along channels (dim 1 of any `[N, C, ...]`): concat, split, slice and the
//! ShuffleNet channel shuffle; nearest upsampling and the CIFAR-ResNet option-A shortcut.
//! Reshape and flatten need no kernel: they are views (`Tensor::reshape`).
//!
//! Pieces: shaders `shaders/layout.wgsl` and `layout_copy.wgsl` (f32 and vec4 elements);
//! backward `upsample_backward` below (`shaders/grad.wgsl`; concat's backward is
//! `slice_channels`); CPU reference `cpu::layout`; tests below.

use super::bytes_of;
use super::checks::{nchw, ncs};
use super::grad::{Params as GradParams, SHADER as GRAD};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};
use std::ops::Range;

const SHADER: Shader = crate::shader!("layout", "layout_f32", "layout_copy", "layout");
/// The channel copies four elements at a time, for planes a multiple of 4 long.
const SHADER4: Shader = crate::shader!("layout_vec4", "layout_vec4", "layout_copy");

/// Kernel arguments; each entry point documents what a..g mean.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: u32,
    g: u32,
}

fn launch(s: &mut Stream, entry: &'static str, p: Params, x: &Tensor, y: &Tensor) -> Result<()> {
    let grid = grid_1d(p.total as usize, 256);
    s.dispatch(SHADER, entry, &[], bytes_of(&p), &[x, y], grid)
}

/// A plane of `sp` f32s as the copies see it: `sp / 4` vec4s where `sp` is a multiple of 4,
/// else `sp` f32s, with the module for that element type.
fn elements(sp: usize) -> (usize, Shader) {
    if sp.is_multiple_of(4) {
        (sp / 4, SHADER4)
    } else {
        (sp, SHADER)
    }
}

/// Launches `copy_channels` or `shuffle`: x over `extent` items of one image in workgroups of
/// `wg` (at most 65,535 workgroups; the kernel loops past them), y over `rows`, z over the
/// images, at most 65,535 a dispatch (the first in `p.f`).
fn launch_per_image(
    s: &mut Stream,
    entry: &'static str,
    mut p: Params,
    (x, y): (&Tensor, &Tensor),
    (images, rows, extent, wg): (usize, usize, usize, usize),
    shader: Shader,
) -> Result<()> {
    const MAX: usize = 65535;
    let groups_x = extent.div_ceil(wg).clamp(1, MAX) as u32;
    for first in (0..images).step_by(MAX) {
        p.f = first as u32;
        let grid = [groups_x, rows as u32, (images - first).min(MAX) as u32];
        s.dispatch(shader, entry, &[], bytes_of(&p), &[x, y], grid)?;
    }
    Ok(())
}

fn with_channels(shape: &[usize], c: usize) -> Vec<usize> {
    let mut v = shape.to_vec();
    v[1] = c;
    v
}

/// Copies channels `src_c0..src_c0 + count` of `x` to channels `dst_c0..` of `y`.
fn copy_channels(
    s: &mut Stream,
    x: &Tensor,
    src_c0: usize,
    y: &Tensor,
    dst_c0: usize,
    count: usize,
) -> Result<()> {
    let (n, cx) = (x.shape()[0], x.shape()[1]);
    let (sp, shader) = elements(x.numel() / (n * cx));
    let p = Params {
        a: (count * sp) as u32,
        b: (cx * sp) as u32,
        c: (src_c0 * sp) as u32,
        d: (y.shape()[1] * sp) as u32,
        e: (dst_c0 * sp) as u32,
        ..Params::default()
    };
    let dims = (n, 1, count * sp, 256);
    launch_per_image(s, "copy_channels", p, (x, y), dims, shader)
}

/// torch.cat(xs, dim=1): every input has the same shape except dim 1.
pub fn concat(s: &mut Stream, xs: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        return shape_err("concat", "no inputs");
    };
    let mut c = 0;
    for x in xs {
        ncs("concat", x)?;
        let same = x.shape().len() == first.shape().len()
            && x.shape()[0] == first.shape()[0]
            && x.shape()[2..] == first.shape()[2..];
        if !same {
            let shapes: Vec<_> = xs.iter().map(|t| t.shape()).collect();
            return shape_err("concat", format!("shapes differ outside dim 1: {shapes:?}"));
        }
        c += x.shape()[1];
    }
    let y = s
        .gpu()
        .alloc("concat", &with_channels(first.shape(), c), DType::F32)?;
    let mut at = 0;
    for x in xs {
        copy_channels(s, x, 0, &y, at, x.shape()[1])?;
        at += x.shape()[1];
    }
    Ok(y)
}

/// torch.split(x, sizes, dim=1): consecutive channel blocks of the given sizes (summing to C).
pub fn split(s: &mut Stream, x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let (_, c, _) = ncs("split", x)?;
    if sizes.contains(&0) || sizes.iter().sum::<usize>() != c {
        return shape_err(
            "split",
            format!("sizes {sizes:?} do not partition dim 1 of {:?}", x.shape()),
        );
    }
    let mut at = 0;
    sizes
        .iter()
        .map(|&k| {
            at += k;
            slice_channels(s, x, at - k..at)
        })
        .collect()
}

/// x[:, range] as a new tensor (ShuffleNetV2 halves: `0..c/2` and `c/2..c`).
pub fn slice_channels(s: &mut Stream, x: &Tensor, range: Range<usize>) -> Result<Tensor> {
    let (_, c, _) = ncs("slice_channels", x)?;
    if range.is_empty() || range.end > c {
        return shape_err(
            "slice_channels",
            format!("channels {range:?} of {:?}", x.shape()),
        );
    }
    let y = s.gpu().alloc(
        "slice_channels",
        &with_channels(x.shape(), range.len()),
        DType::F32,
    )?;
    copy_channels(s, x, range.start, &y, 0, range.len())?;
    Ok(y)
}

/// ShuffleNet shuffle: `[N, g*c, ...]` viewed as `[N, g, c, ...]`, transposed to `[N, c, g, ...]`.
pub fn channel_shuffle(s: &mut Stream, x: &Tensor, groups: usize) -> Result<Tensor> {
    let (_, c, sp) = ncs("channel_shuffle", x)?;
    if groups == 0 || c % groups != 0 {
        return shape_err(
            "channel_shuffle",
            format!("{groups} groups do not divide dim 1 of {:?}", x.shape()),
        );
    }
    let y = s.gpu().alloc("channel_shuffle", x.shape(), DType::F32)?;
    let (sp, shader) = elements(sp);
    let p = Params {
        a: groups as u32,
        b: (c / groups) as u32,
        c: sp as u32,
        ..Params::default()
    };
    let dims = (x.shape()[0], c, sp, 64);
    launch_per_image(s, "shuffle", p, (x, &y), dims, shader)?;
    Ok(y)
}

/// Nearest-neighbour upsampling of `[N, C, H, W]` by an integer factor.
pub fn upsample_nearest(s: &mut Stream, x: &Tensor, factor: usize) -> Result<Tensor> {
    let [n, c, h, w] = nchw("upsample_nearest", x)?;
    if factor == 0 {
        return shape_err(
            "upsample_nearest",
            format!("factor 0 for input {:?}", x.shape()),
        );
    }
    let y = s.gpu().alloc(
        "upsample_nearest",
        &[n, c, h * factor, w * factor],
        DType::F32,
    )?;
    let p = Params {
        total: (n * c * h * factor) as u32,
        a: h as u32,
        b: w as u32,
        c: factor as u32,
        ..Params::default()
    };
    launch(s, "upsample", p, x, &y)?;
    Ok(y)
}

/// The CIFAR-ResNet option-A shortcut: `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))`,
/// `[N, C, H, W] -> [N, C + 2 pad, ceil(H/2), ceil(W/2)]`.
pub fn shortcut_a(s: &mut Stream, x: &Tensor, pad: usize) -> Result<Tensor> {
    let [n, c, h, w] = nchw("shortcut_a", x)?;
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let y = s
        .gpu()
        .alloc("shortcut_a", &[n, c + 2 * pad, oh, ow], DType::F32)?;
    let p = Params {
        total: (n * (c + 2 * pad) * oh) as u32,
        a: c as u32,
        b: h as u32,
        c: w as u32,
        d: pad as u32,
        e: oh as u32,
        f: ow as u32,
        g: 0,
    };
    launch(s, "shortcut_a", p, x, &y)?;
    Ok(y)
}

/// dx `[N, C, H, W]` of nearest upsampling by `f` from dy `[N, C, H*f, W*f]`.
pub fn upsample_backward(s: &mut Stream, dy: &Tensor, f: usize) -> Result<Tensor> {
    let [n, c, h, w] = super::checks::nchw("upsample_backward", dy)?;
    if f == 0 || h % f != 0 || w % f != 0 {
        return shape_err(
            "upsample_backward",
            format!("dy {:?} is not a x{f} upsample", dy.shape()),
        );
    }
    let shape = [n, c, h / f, w / f];
    let total: usize = shape.iter().product();
    let p = GradParams {
        n: total as u32,
        h: (h / f) as u32,
        wd: (w / f) as u32,
        f: f as u32,
        ..Default::default()
    };
    let dx = s.gpu().alloc("upsample_backward", &shape, DType::F32)?;
    s.dispatch(
        GRAD,
        "upsample_backward",
        &[],
        bytes_of(&p),
        &[dy, &dx],
        grid_1d(total, 256),
    )?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::gpu::Gpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn up(g: &Gpu, a: &Array) -> Tensor {
        g.upload_f32(&a.shape, &a.data).unwrap()
    }

    /// Data movement must be exact.
    fn assert_same(g: &Gpu, t: &Tensor, want: &Array) {
        assert_eq!(t.shape(), &want.shape[..]);
        assert_eq!(g.read_f32(t).unwrap(), want.data, "{:?}", want.shape);
    }

    fn check_concat_split(shapes: &[Vec<usize>], seed: u64) {
        let g = gpu();
        let xs: Vec<Array> = shapes
            .iter()
            .enumerate()
            .map(|(i, sh)| Array::random(sh, seed + i as u64))
            .collect();
        let ts: Vec<Tensor> = xs.iter().map(|a| up(&g, a)).collect();
        let mut s = g.stream();
        let y = concat(&mut s, &ts.iter().collect::<Vec<_>>()).unwrap();
        let sizes: Vec<usize> = shapes.iter().map(|sh| sh[1]).collect();
        let parts = split(&mut s, &y, &sizes).unwrap();
        s.submit();
        assert_same(&g, &y, &cpu::layout::concat(&xs.iter().collect::<Vec<_>>()));
        for (part, x) in parts.iter().zip(&xs) {
            assert_same(&g, part, x);
        }
    }

    #[test]
    fn concat_and_split_roundtrip() {
        crate::ops::skip_without_gpu!();
        check_concat_split(&[vec![2, 3, 5, 5], vec![2, 1, 5, 5], vec![2, 4, 5, 5]], 1);
        check_concat_split(&[vec![3, 7], vec![3, 2]], 2);
        check_concat_split(&[vec![1, 3, 2, 3, 2]], 3);
    }

    #[test]
    fn slices_halves() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = Array::random(&[3, 6, 5, 3], 4);
        let xt = up(&g, &x);
        let mut s = g.stream();
        let (a, b) = (
            slice_channels(&mut s, &xt, 0..3).unwrap(),
            slice_channels(&mut s, &xt, 3..6).unwrap(),
        );
        let mid = slice_channels(&mut s, &xt, 1..4).unwrap();
        s.submit();
        assert_same(&g, &a, &cpu::layout::slice_channels(&x, 0..3));
        assert_same(&g, &b, &cpu::layout::slice_channels(&x, 3..6));
        assert_same(&g, &mid, &cpu::layout::slice_channels(&x, 1..4));
    }

    #[test]
    fn shuffles_channels() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        // [1, 6, 1, 1] with channel values 0..6, 2 groups of 3: -> [0, 3, 1, 4, 2, 5].
        let x = g
            .upload_f32(&[1, 6, 1, 1], &[0., 1., 2., 3., 4., 5.])
            .unwrap();
        let mut s = g.stream();
        let y = channel_shuffle(&mut s, &x, 2).unwrap();
        s.submit();
        assert_eq!(g.read_f32(&y).unwrap(), [0., 3., 1., 4., 2., 5.]);
        for (shape, groups) in [([2, 12, 3, 5], 3), ([3, 8, 4, 4], 4), ([2, 5, 3, 3], 1)] {
            let x = Array::random(&shape, 5);
            let mut s = g.stream();
            let y = channel_shuffle(&mut s, &up(&g, &x), groups).unwrap();
            s.submit();
            assert_same(&g, &y, &cpu::layout::channel_shuffle(&x, groups));
        }
    }

    /// More than 65,535 images (several dispatches), on the scalar and the vec4 kernels, and
    /// planes longer than 65,535 workgroups (each invocation loops; the vec4 kernels' loops
    /// need more than the 128 MiB a binding may hold here).
    #[test]
    fn large_batches_and_planes_take_several_passes() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        check_concat_split(&[vec![65_537, 1, 1, 2], vec![65_537, 2, 1, 2]], 7);
        check_concat_split(&[vec![65_537, 1, 2, 2], vec![65_537, 2, 2, 2]], 8);
        for (shape, groups) in [
            (vec![65_537, 4, 1, 1], 2),
            (vec![65_537, 4, 2, 2], 2),
            (vec![1, 2, 4_200_001], 2),
        ] {
            let x = Array::random(&shape, 8);
            let mut s = g.stream();
            let y = channel_shuffle(&mut s, &up(&g, &x), groups).unwrap();
            s.submit();
            assert_same(&g, &y, &cpu::layout::channel_shuffle(&x, groups));
        }
        let x = Array::random(&[1, 1, 16_800_001], 9);
        let mut s = g.stream();
        let y = slice_channels(&mut s, &up(&g, &x), 0..1).unwrap();
        s.submit();
        assert_same(&g, &y, &cpu::layout::slice_channels(&x, 0..1));
    }

    #[test]
    fn upsamples_and_shortcuts() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (shape, f, pad) in [
            ([2, 3, 4, 4], 2, 1),
            ([1, 5, 3, 7], 3, 2),
            ([3, 2, 1, 1], 1, 0),
            ([2, 4, 5, 6], 2, 4),
        ] {
            let x = Array::random(&shape, 6);
            let xt = up(&g, &x);
            let mut s = g.stream();
            let u = upsample_nearest(&mut s, &xt, f).unwrap();
            let sc = shortcut_a(&mut s, &xt, pad).unwrap();
            s.submit();
            assert_same(&g, &u, &cpu::layout::upsample_nearest(&x, f));
            assert_same(&g, &sc, &cpu::layout::shortcut_a(&x, pad));
        }
    }

    #[test]
    fn flatten_and_reshape_do_not_copy() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[2, 3, 4, 4], &[1.0; 96]).unwrap();
        let f = x.flatten().unwrap();
        assert_eq!(f.shape(), [2, 48]);
        assert!(f.same_storage(&x));
        assert!(f.reshape(&[2, 3, 16]).unwrap().same_storage(&x));
    }

    #[test]
    fn rejects_bad_shapes() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let a = g.upload_f32(&[2, 3, 4, 4], &[0.0; 96]).unwrap();
        let b = g.upload_f32(&[2, 3, 4, 5], &[0.0; 120]).unwrap();
        let mut s = g.stream();
        let err = concat(&mut s, &[&a, &b]).unwrap_err().to_string();
        assert!(
            err.contains("concat") && err.contains("[2, 3, 4, 5]"),
            "{err}"
        );
        assert!(concat(&mut s, &[]).is_err());
        let flat = g.upload_f32(&[2, 48], &[0.0; 96]).unwrap();
        assert!(concat(&mut s, &[&a, &flat]).is_err());
        let err = split(&mut s, &a, &[1, 1]).unwrap_err().to_string();
        assert!(err.contains("split") && err.contains("[1, 1]"), "{err}");
        assert!(split(&mut s, &a, &[3, 0]).is_err());
        assert!(slice_channels(&mut s, &a, 2..4).is_err());
        assert!(slice_channels(&mut s, &a, 1..1).is_err());
        assert!(channel_shuffle(&mut s, &a, 2).is_err());
        assert!(channel_shuffle(&mut s, &a, 0).is_err());
        let err = upsample_nearest(&mut s, &a, 0).unwrap_err().to_string();
        assert!(
            err.contains("upsample_nearest") && err.contains("factor 0"),
            "{err}"
        );
        assert!(upsample_nearest(&mut s, &flat, 2).is_err());
        assert!(shortcut_a(&mut s, &flat, 1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn random_shapes(n in 1usize..4, cs in proptest::collection::vec(1usize..6, 1..4),
                         h in 1usize..8, w in 1usize..8, f in 1usize..4, seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            let shapes: Vec<Vec<usize>> = cs.iter().map(|&c| vec![n, c, h, w]).collect();
            check_concat_split(&shapes, seed);
            let g = gpu();
            let c: usize = cs.iter().sum();
            let x = Array::random(&[n, c, h, w], seed);
            let xt = up(&g, &x);
            let mut s = g.stream();
            let u = upsample_nearest(&mut s, &xt, f).unwrap();
            let sc = shortcut_a(&mut s, &xt, f - 1).unwrap();
            let sh = channel_shuffle(&mut s, &xt, cs.len()).ok();
            s.submit();
            assert_same(&g, &u, &cpu::layout::upsample_nearest(&x, f));
            assert_same(&g, &sc, &cpu::layout::shortcut_a(&x, f - 1));
            if let Some(sh) = sh {
                assert_same(&g, &sh, &cpu::layout::channel_shuffle(&x, cs.len()));
            }
        }
    }
}
