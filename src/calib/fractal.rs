//! Fractal calibration images, like Datumaro's generator (arXiv 2103.13023), without its
//! colourization model so that it runs offline.
//!
//! - A category is an iterated function system of 2-7 affine maps with parameters U(-1, 1),
//!   each map drawn with probability proportional to |det|, accepted when its points (after
//!   normalization to their bounding box) cover at least 20% of a 32x32 grid.
//! - Each category has 25 variants: the system itself, then 24 with one parameter perturbed
//!   by +-0.4 or +-0.8.
//! - Each image is rendered on the GPU (`shaders/fractal.wgsl`) at any size with ~200k
//!   chaos-game points per 32x32 pixels of image (the same density at every size) and a
//!   random 3x3 patch per point, then randomly flipped, rotated within +-30 degrees, put on a
//!   random background colour and, half the time, blurred.
//! - **Colour without a model:** every map gets a random colour, and a point's colour is the
//!   running average `c = (c + colour[map]) / 2` of the maps that produced it (as fractal
//!   flames do), so colour follows the fractal's self-similar parts. A pixel's colour is
//!   the mean of its points', blended over the background by log density.
//!
//! Image j of class l belongs to category `(j / 25) * 10 + l`, variant `j % 25`, so classes
//! are balanced and each holds whole categories. Everything is derived from the seed.

use crate::data::{Dataset, CIFAR10_CLASSES};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Shader};
use crate::ops::bytes_of;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHADER: Shader = crate::shader!("fractal");
/// Fractal systems drawn per class (each image picks one).
pub const VARIANTS: usize = 25;
const MAX_MAPS: usize = 7;
const BURN: usize = 16;
const CHAINS: usize = 256;
/// Largest image side rendered: the canvas (twice as wide and high) of one image must fit a
/// GPU buffer binding.
const MAX_SIDE: usize = 1024;
/// Floats per image record (offsets as in the shader).
const REC: usize = 84;
const O_PROB: usize = 42;
const O_NMAPS: usize = 49;
const O_NORM: usize = 50;
const O_ROT: usize = 54;
const O_BG: usize = 56;
const O_PAL: usize = 59;
const O_BLUR: usize = 80;
const O_MASK: usize = 81;
const O_SEED: usize = 82;
/// At most this many images per GPU batch.
const CHUNK: usize = 256;
/// Histogram bytes per GPU batch at most (one 32x32 image's takes 64 KiB).
const CHUNK_BYTES: usize = 16 << 20;

/// Chaos-game points per 32x32 pixels of image by default.
pub const DEFAULT_POINTS: usize = 200_000;

type Map = [f32; 6];

fn det(m: &Map) -> f32 {
    (m[0] * m[3] - m[1] * m[2]).abs()
}

/// Cumulative map probabilities (proportional to |det|).
fn cumulative(maps: &[Map]) -> Vec<f32> {
    let w: Vec<f32> = maps.iter().map(|m| det(m).max(1e-6)).collect();
    let total: f32 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

/// Bounding box (min x, min y, max x, max y) of a chaos game's points, and the share of a
/// 32x32 grid over that box that they cover; None when the system diverges.
fn extent(maps: &[Map], rng: &mut StdRng) -> Option<([f32; 4], f32)> {
    let cum = cumulative(maps);
    let (mut x, mut y) = (0f32, 0f32);
    let mut pts = Vec::with_capacity(20_000);
    for it in 0..20_000 + BURN {
        let u: f32 = rng.random();
        let k = cum.iter().position(|&c| u < c).unwrap_or(maps.len() - 1);
        let m = &maps[k];
        (x, y) = (m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]);
        if !(x.abs() < 1e4 && y.abs() < 1e4) {
            return None;
        }
        if it >= BURN {
            pts.push((x, y));
        }
    }
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for &(x, y) in &pts {
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    if !(w > 1e-6 && h > 1e-6) {
        return None;
    }
    let mut grid = [false; 32 * 32];
    for &(x, y) in &pts {
        let gx = (((x - b[0]) / w * 32.0) as usize).min(31);
        let gy = (((y - b[1]) / h * 32.0) as usize).min(31);
        grid[gy * 32 + gx] = true;
    }
    Some((b, grid.iter().filter(|&&v| v).count() as f32 / 1024.0))
}

/// A category's system: the first of a seeded sequence of random systems that converges
/// and covers at least 20% of the grid.
fn category(seed: u64, cat: usize) -> (Vec<Map>, [f32; 4]) {
    let mut rng = StdRng::seed_from_u64(seed ^ (cat as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    loop {
        let n = rng.random_range(2..=MAX_MAPS);
        let maps: Vec<Map> = (0..n)
            .map(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0)))
            .collect();
        if let Some((b, cover)) = extent(&maps, &mut rng) {
            if cover >= 0.2 {
                return (maps, b);
            }
        }
    }
}

/// Variant `v` of a system: v = 0 is the system; otherwise one parameter moves by +-0.4 or
/// +-0.8 (retried while the result diverges; the system itself after 20 tries).
fn variant(maps: &[Map], b: [f32; 4], seed: u64, cat: usize, v: usize) -> (Vec<Map>, [f32; 4]) {
    if v == 0 {
        return (maps.to_vec(), b);
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF2AC ^ ((cat * VARIANTS + v) as u64) << 20);
    for _ in 0..20 {
        let mut m = maps.to_vec();
        let k = rng.random_range(0..m.len() * 6);
        let step = [-0.8, -0.4, 0.4, 0.8][rng.random_range(0..4)];
        m[k / 6][k % 6] += step;
        if let Some((b, cover)) = extent(&m, &mut rng) {
            if cover >= 0.05 {
                return (m, b);
            }
        }
    }
    (maps.to_vec(), b)
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let f = |n: f32| {
        let k = (n + h * 6.0) % 6.0;
        v - v * s * k.min(4.0 - k).clamp(0.0, 1.0)
    };
    [f(5.0), f(3.0), f(1.0)]
}

/// The GPU record of one image (system, normalization and augmentation).
fn record(maps: &[Map], b: [f32; 4], rng: &mut StdRng) -> [f32; REC] {
    let mut r = [0f32; REC];
    for (k, m) in maps.iter().enumerate() {
        r[k * 6..k * 6 + 6].copy_from_slice(m);
    }
    for (k, c) in cumulative(maps).into_iter().enumerate() {
        r[O_PROB + k] = c;
    }
    r[O_NMAPS] = maps.len() as f32;
    // Bounding box to [-0.85, 0.85] (room for the rotation), flips folded into the scale.
    let flip = |rng: &mut StdRng| if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let (fx, fy) = (flip(rng), flip(rng));
    let (sx, sy) = (1.7 / (b[2] - b[0]), 1.7 / (b[3] - b[1]));
    r[O_NORM] = fx * sx;
    r[O_NORM + 1] = fy * sy;
    r[O_NORM + 2] = fx * (-0.85 - b[0] * sx);
    r[O_NORM + 3] = fy * (-0.85 - b[1] * sy);
    let angle: f32 = rng.random_range(-30f32..30.0).to_radians();
    r[O_ROT] = angle.cos();
    r[O_ROT + 1] = angle.sin();
    let bg = hsv(
        rng.random(),
        rng.random_range(0.0..0.6),
        rng.random_range(0.05..0.95),
    );
    r[O_BG..O_BG + 3].copy_from_slice(&bg);
    let hue0: f32 = rng.random();
    for k in 0..MAX_MAPS {
        let h = (hue0 + rng.random_range(0.0..0.5)) % 1.0;
        let c = hsv(h, rng.random_range(0.4..1.0), rng.random_range(0.5..1.0));
        r[O_PAL + 3 * k..O_PAL + 3 * k + 3].copy_from_slice(&c);
    }
    r[O_BLUR] = if rng.random_bool(0.5) { 1.0 } else { 0.0 };
    // A random 3x3 patch, its centre always on.
    r[O_MASK] = (rng.random_range(0u32..512) | 16) as f32;
    r[O_SEED] = f32::from_bits(rng.random::<u32>());
    r
}

/// The records of `per_class` images per class, class-major.
fn records(per_class: usize, classes: usize, seed: u64) -> Vec<[f32; REC]> {
    let mut systems: Vec<Option<(Vec<Map>, [f32; 4])>> = Vec::new();
    let mut out = Vec::with_capacity(per_class * classes);
    for l in 0..classes {
        for j in 0..per_class {
            let cat = (j / VARIANTS) * classes + l;
            if systems.len() <= cat {
                systems.resize(cat + 1, None);
            }
            let (maps, b) = systems[cat]
                .get_or_insert_with(|| category(seed, cat))
                .clone();
            let (m, b) = variant(&maps, b, seed, cat, j % VARIANTS);
            let mut rng = StdRng::seed_from_u64(seed ^ 0xA5A5 ^ ((l * per_class + j) as u64) << 24);
            out.push(record(&m, b, &mut rng));
        }
    }
    out
}

fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (w >> 22) ^ w
}

/// CPU reference of the `render` kernel for one record: CHW in [0, 1] of `[h, w]` pixels.
pub fn render_cpu(r: &[f32], iters: usize, [h, w]: [usize; 2]) -> Vec<f32> {
    let (cw, ch) = (2 * w, 2 * h);
    let mut hist = vec![[0u32; 4]; cw * ch];
    let n = r[O_NMAPS] as usize;
    for lid in 0..CHAINS as u32 {
        let mut st = pcg(r[O_SEED].to_bits() ^ pcg(lid + 1));
        let (mut x, mut y) = (0f32, 0f32);
        let mut col = [0.5f32; 3];
        for it in 0..iters + BURN {
            st = pcg(st);
            let u = (st >> 8) as f32 * (1.0 / 16777216.0);
            let mut k = 0;
            while k + 1 < n && u >= r[O_PROB + k] {
                k += 1;
            }
            let m = &r[k * 6..k * 6 + 6];
            (x, y) = (m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]);
            for (c, ch) in col.iter_mut().enumerate() {
                *ch = 0.5 * (*ch + r[O_PAL + k * 3 + c]);
            }
            if it < BURN {
                continue;
            }
            let qx = x * r[O_NORM] + r[O_NORM + 2];
            let qy = y * r[O_NORM + 1] + r[O_NORM + 3];
            let (c, s) = (r[O_ROT], r[O_ROT + 1]);
            let (rx, ry) = (c * qx - s * qy, s * qx + c * qy);
            if rx.abs() < 1.0 && ry.abs() < 1.0 {
                let px = (((rx + 1.0) * 0.5 * cw as f32) as usize).min(cw - 1);
                let py = (((ry + 1.0) * 0.5 * ch as f32) as usize).min(ch - 1);
                let cell = &mut hist[py * cw + px];
                cell[0] += 1;
                for c in 0..3 {
                    cell[c + 1] += (col[c] * 255.0 + 0.5) as u32;
                }
            }
        }
    }
    let mask = r[O_MASK] as u32;
    let patch = |x: i32, y: i32| -> [f32; 4] {
        let mut acc = [0f32; 4];
        for k in 0..9 {
            if mask & (1 << k) == 0 {
                continue;
            }
            let (px, py) = (x + (k % 3) - 1, y + (k / 3) - 1);
            if px < 0 || py < 0 || px >= cw as i32 || py >= ch as i32 {
                continue;
            }
            let cell = hist[py as usize * cw + px as usize];
            for c in 0..4 {
                acc[c] += cell[c] as f32;
            }
        }
        acc
    };
    let mut mx = 0u32;
    for i in 0..cw * ch {
        mx = mx.max(patch((i % cw) as i32, (i / cw) as i32)[0] as u32);
    }
    let lmax = (1.0 + mx as f32).ln();
    let bg = &r[O_BG..O_BG + 3];
    let (lo, hi) = if r[O_BLUR] > 0.5 { (-1, 3) } else { (0, 2) };
    let plane = h * w;
    let mut out = vec![0f32; 3 * plane];
    for o in 0..plane {
        let (ox, oy) = ((o % w) as i32 * 2, (o / w) as i32 * 2);
        let (mut acc, mut cnt) = ([0f32; 3], 0f32);
        for dy in lo..hi {
            for dx in lo..hi {
                let d = patch(ox + dx, oy + dy);
                let a = if lmax > 0.0 {
                    (1.0 + d[0]).ln() / lmax
                } else {
                    0.0
                };
                for c in 0..3 {
                    let col = d[c + 1] / (d[0].max(1.0) * 255.0);
                    acc[c] += bg[c] + (col - bg[c]) * a;
                }
                cnt += 1.0;
            }
        }
        for c in 0..3 {
            out[c * plane + o] = acc[c] / cnt;
        }
    }
    out
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    images: u32,
    stride: u32,
    iters: u32,
    height: u32,
    width: u32,
    _pad: [u32; 3],
}

/// Points per chain for `points` per 32x32 pixels of an image of `[h, w]`.
fn chains_iters(points: usize, [h, w]: [usize; 2]) -> usize {
    let total = (points as u128 * (h * w) as u128).div_ceil(1024);
    (total.div_ceil(CHAINS as u128).max(1)).min(u32::MAX as u128) as usize
}

/// Renders records on the GPU: `[N, 3, h, w]` in [0, 1].
fn render_gpu(
    gpu: &Gpu,
    recs: &[[f32; REC]],
    points: usize,
    [h, w]: [usize; 2],
) -> Result<Vec<f32>> {
    let flat: Vec<f32> = recs.iter().flatten().copied().collect();
    let n = recs.len();
    let rec = gpu.upload_f32(&[n, REC], &flat)?;
    let hist = gpu.alloc("fractal_hist", &[n * 4 * h * w * 4], DType::I32)?;
    let out = gpu.alloc("fractal", &[n, 3, h, w], DType::F32)?;
    let p = Params {
        images: n as u32,
        stride: REC as u32,
        iters: chains_iters(points, [h, w]) as u32,
        height: h as u32,
        width: w as u32,
        _pad: [0; 3],
    };
    let mut s = gpu.stream();
    s.dispatch(
        SHADER,
        "render",
        &[],
        bytes_of(&p),
        &[&rec, &hist, &out],
        [n as u32, 1, 1],
    )?;
    s.submit();
    gpu.read_f32(&out)
}

/// `per_class` fractal images per class (see the module docs) of `size` (`[height,
/// width]`), `points` chaos-game points per 32x32 pixels each.
pub fn fractal_images(
    gpu: &Gpu,
    per_class: usize,
    seed: u64,
    points: usize,
    size: [usize; 2],
    hooks: &crate::progress::Hooks,
) -> Result<Dataset> {
    let classes = CIFAR10_CLASSES.len();
    if per_class == 0 {
        return Err(Error::Invalid(
            "fractal: per-class count must be > 0".into(),
        ));
    }
    // One dispatch draws every point, and a dispatch cannot be stopped midway.
    if !(1..=100 * DEFAULT_POINTS).contains(&points) {
        return Err(Error::Invalid(format!(
            "fractal: {points} points per image; 1 to {} are accepted",
            100 * DEFAULT_POINTS
        )));
    }
    let [h, w] = size;
    if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
        return Err(Error::Invalid(format!(
            "fractal: images of {w}x{h}; each side must be 1 to {MAX_SIDE} pixels"
        )));
    }
    // Per image: its record, its pixels and its label.
    let each = REC * 4 + 3 * h * w + 1;
    crate::limits::check_alloc(
        &format!("{per_class} images per class"),
        &[per_class, classes, each],
    )?;
    let recs = records(per_class, classes, seed);
    let mut bar = hooks.task("fractals", recs.len() as u64);
    let mut pixels = Vec::with_capacity(recs.len() * 3 * h * w);
    let chunk = (CHUNK_BYTES / (64 * h * w)).clamp(1, CHUNK);
    for chunk in recs.chunks(chunk) {
        let img = render_gpu(gpu, chunk, points, size)?;
        pixels.extend(
            img.iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8),
        );
        bar.inc(chunk.len() as u64)?;
    }
    bar.complete();
    let labels = (0..classes)
        .flat_map(|l| std::iter::repeat_n(l as crate::data::Label, per_class))
        .collect();
    let names = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let images = crate::data::Images::new(pixels, h, w)?;
    Ok(Dataset::from_images(
        images,
        labels,
        names,
        format!("fractals (seed {seed}, {points} points per 32x32 pixels)"),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_cover_a_fifth_and_are_deterministic() {
        for cat in 0..6 {
            let (maps, b) = category(7, cat);
            assert!((2..=MAX_MAPS).contains(&maps.len()));
            let (_, cover) = extent(&maps, &mut StdRng::seed_from_u64(1)).expect("converges");
            assert!(cover >= 0.15, "category {cat} covers {cover}");
            assert_eq!(category(7, cat), (maps, b));
        }
        assert_eq!(records(3, 10, 5), records(3, 10, 5));
        assert_ne!(records(3, 10, 5), records(3, 10, 6));
    }

    #[test]
    fn variants_change_one_parameter() {
        let (maps, b) = category(3, 0);
        for v in 1..VARIANTS {
            let (m, _) = variant(&maps, b, 3, 0, v);
            let changed: Vec<f32> = m
                .iter()
                .flatten()
                .zip(maps.iter().flatten())
                .map(|(a, b)| a - b)
                .filter(|d| *d != 0.0)
                .collect();
            assert!(changed.len() <= 1, "variant {v}: {changed:?}");
            assert!(changed
                .iter()
                .all(|d| [0.4f32, 0.8].iter().any(|s| (d.abs() - s).abs() < 1e-5)));
        }
    }

    /// At CIFAR's size and at a non-square one (rows and columns must not be swapped).
    #[test]
    fn gpu_render_matches_the_cpu_reference() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let recs = records(2, 10, 11);
        let points = 20_000;
        for (size, recs) in [([32, 32], &recs[..]), ([24, 40], &recs[..4])] {
            let got = render_gpu(&gpu, recs, points, size).unwrap();
            let each = 3 * size[0] * size[1];
            assert_eq!(got.len(), recs.len() * each);
            for (i, r) in recs.iter().enumerate() {
                let want = render_cpu(r, chains_iters(points, size), size);
                let g = &got[i * each..(i + 1) * each];
                // Chaotic chains: an FMA on the GPU may move a point to a neighbouring pixel,
                // so compare the images, not bits.
                let mad: f32 =
                    g.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f32>() / each as f32;
                let worst = g
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    mad < 2e-3 && worst < 0.1,
                    "{size:?} image {i}: mean |diff| {mad}, max {worst}"
                );
            }
        }
    }

    #[test]
    fn points_scale_with_the_image_area() {
        assert_eq!(chains_iters(DEFAULT_POINTS, [32, 32]), 782);
        assert_eq!(chains_iters(DEFAULT_POINTS, [64, 64]), 3125);
        assert_eq!(chains_iters(1, [1, 1]), 1);
    }
}
