//! Value histograms of |x| and the clipping ranges found on them: percentile, MSE-optimal and
//! KL-divergence (TensorRT's entropy calibration). Ranges are symmetric around zero, as the
//! formats are (zero point 0), so the magnitude alone decides the error.

/// Bins of a histogram (TensorRT's entropy calibration uses 2048).
pub const BINS: usize = 2048;

/// A histogram of |x| over `[0, BINS * width)`; exact zeros are counted apart (after ReLU they
/// are most values, and they quantize without error at any scale).
#[derive(Clone, Debug)]
pub struct Histogram {
    /// Counts per bin.
    pub bins: Vec<f64>,
    /// Bin width (0 until a non-zero value is seen).
    pub width: f64,
    /// Exact zeros.
    pub zeros: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bins: vec![0.0; BINS],
            width: 0.0,
            zeros: 0.0,
        }
    }
}

impl Histogram {
    /// Adds `x`. When a value exceeds the range, the range doubles (pairs of bins merge), so
    /// memory stays bounded and earlier values keep their (coarser) place.
    pub fn add(&mut self, x: &[f32]) {
        let top = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        if top == 0.0 {
            self.zeros += x.len() as f64;
            return;
        }
        if self.width == 0.0 {
            self.width = top / BINS as f64 * (1.0 + 1e-6);
        }
        while top >= self.width * BINS as f64 {
            for i in 0..BINS / 2 {
                self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
            }
            self.bins[BINS / 2..].fill(0.0);
            self.width *= 2.0;
        }
        let inv = 1.0 / self.width;
        for &v in x {
            if v == 0.0 {
                self.zeros += 1.0;
            } else {
                let b = ((v.abs() as f64 * inv) as usize).min(BINS - 1);
                self.bins[b] += 1.0;
            }
        }
    }

    fn total(&self) -> f64 {
        self.zeros + self.bins.iter().sum::<f64>()
    }

    /// The upper edge of the bin where the share `p` of all |x| (zeros included) is reached.
    pub fn percentile(&self, p: f64) -> f32 {
        let want = p * self.total();
        let mut seen = self.zeros;
        for (i, c) in self.bins.iter().enumerate() {
            seen += c;
            if seen >= want {
                return ((i + 1) as f64 * self.width) as f32;
            }
        }
        (BINS as f64 * self.width) as f32
    }

    /// The clip `c` minimizing the expected squared error of quantizing |x| to `levels` steps of
    /// `c / levels` (values above `c` clip to it), with values uniform within each bin.
    /// Candidates are the bin edges.
    pub fn mse_clip(&self, levels: u32) -> f32 {
        let mut best = (f64::INFINITY, BINS);
        for k in 1..=BINS {
            let e = self.error(k as f64 * self.width, levels);
            if e < best.0 {
                best = (e, k);
            }
        }
        (best.1 as f64 * self.width) as f32
    }

    /// The expected total squared error at clip `c` (see [`Histogram::mse_clip`]).
    pub fn error(&self, c: f64, levels: u32) -> f64 {
        let s = c / levels as f64;
        let w = self.width;
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0.0)
            .map(|(i, &n)| {
                let (a, b) = (i as f64 * w, (i + 1) as f64 * w);
                // Rounding error below c, clipping error above.
                let (ra, rb) = (a.min(c), b.min(c));
                let round = sawtooth_sq(rb, s) - sawtooth_sq(ra, s);
                let (ca, cb) = (a.max(c) - c, b.max(c) - c);
                let clip = (cb.powi(3) - ca.powi(3)) / 3.0;
                n * (round + clip) / w
            })
            .sum()
    }

    /// TensorRT's entropy calibration: the threshold whose clipped distribution P (outliers
    /// added to the last bin) is closest in KL divergence to its quantization Q into `levels`
    /// bins (each spread over the bins of its group that were non-empty).
    pub fn kl_clip(&self, levels: usize) -> f32 {
        let mut hist = self.bins.clone();
        hist[0] += self.zeros;
        let mut best = (f64::INFINITY, BINS);
        for i in levels.min(BINS)..=BINS {
            let d = kl_at(&hist, i, levels);
            if d < best.0 {
                best = (d, i);
            }
        }
        (best.1 as f64 * self.width) as f32
    }
}

/// KL(P || Q) for the threshold at bin edge `i` (see [`Histogram::kl_clip`]).
pub fn kl_at(hist: &[f64], i: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = hist[..i].to_vec();
    p[i - 1] += hist[i..].iter().sum::<f64>();
    let mut q = vec![0.0; i];
    for j in 0..levels {
        // Group j holds bins [lo, hi) of the first i (the last group takes the remainder).
        let lo = j * i / levels;
        let hi = if j + 1 == levels {
            i
        } else {
            (j + 1) * i / levels
        };
        let sum: f64 = hist[lo..hi].iter().sum();
        let nonzero = hist[lo..hi].iter().filter(|&&v| v > 0.0).count();
        for k in lo..hi {
            if hist[k] > 0.0 {
                q[k] = sum / nonzero as f64;
            }
        }
    }
    let (ps, qs) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if ps == 0.0 || qs == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(&q)
        .filter(|(&pv, _)| pv > 0.0)
        .map(|(&pv, &qv)| {
            let (pv, qv) = (pv / ps, qv / qs);
            // Q is zero only where P's outliers landed in an empty last bin: TensorRT smooths.
            pv * (pv / qv.max(1e-12)).ln()
        })
        .sum()
}

/// `\int_0^x (t - s * round(t / s))^2 dt`: each full step contributes `s^3 / 12`.
fn sawtooth_sq(x: f64, s: f64) -> f64 {
    let n = (x / s).floor();
    let u = x - n * s;
    let part = if u <= s / 2.0 {
        u.powi(3) / 3.0
    } else {
        s.powi(3) / 12.0 + (u - s).powi(3) / 3.0
    };
    n * s.powi(3) / 12.0 + part
}

/// Per-channel MSE clipping of weights for a symmetric grid of `levels` positive steps: the
/// clip among `max|w| * k / 100` (k = 10..=100) with the least exact squared error.
pub fn weight_mse_clip(row: &[f32], levels: u32) -> f32 {
    let m = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if m == 0.0 {
        return 0.0;
    }
    let mut best = (f64::INFINITY, m);
    for k in (10..=100).rev() {
        let c = m * k as f32 / 100.0;
        let e = weight_error(row, c, levels);
        if e < best.0 {
            best = (e, c);
        }
    }
    best.1
}

/// The exact squared error of quantizing `row` with clip `c` (scale `c / levels`), as
/// `QWeights` (in `int8`) rounds.
pub fn weight_error(row: &[f32], c: f32, levels: u32) -> f64 {
    let s = c / levels as f32;
    let (inv, l) = (1.0 / s, levels as f32);
    row.iter()
        .map(|&v| {
            let q = (v * inv).round_ties_even().clamp(-l, l) * s;
            ((v - q) as f64).powi(2)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Laplace-like values with a few large outliers, the shape of real activations.
    fn sample(n: usize, seed: u64, relu: bool) -> Vec<f32> {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let u: f32 = r.random_range(1e-6..1.0);
                let mut v = -u.ln() * if r.random_bool(0.5) { 1.0 } else { -1.0 };
                if i % 997 == 0 {
                    v *= 8.0;
                }
                if relu {
                    v.max(0.0)
                } else {
                    v
                }
            })
            .collect()
    }

    /// The exact quantization error of the values themselves at clip `c`.
    fn exact_error(x: &[f32], c: f64, levels: u32) -> f64 {
        let s = c / levels as f64;
        x.iter()
            .map(|&v| {
                let a = v.abs() as f64;
                let q = (a / s).round().min(levels as f64) * s;
                (a - q).powi(2)
            })
            .sum()
    }

    #[test]
    fn percentile_matches_sorted_values() {
        let x = sample(20_000, 1, true);
        let mut h = Histogram::default();
        for c in x.chunks(3000) {
            h.add(c);
        }
        let mut a: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        a.sort_by(f32::total_cmp);
        for p in [0.5, 0.99, 0.999] {
            let want = a[(p * a.len() as f64).ceil() as usize - 1];
            let got = h.percentile(p);
            assert!(
                got >= want && got - want <= h.width as f32 * 1.001,
                "p {p}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn growing_range_keeps_every_value() {
        let mut h = Histogram::default();
        h.add(&[0.0, 0.1, -0.2]);
        h.add(&[100.0, 0.0]);
        assert_eq!(h.zeros, 2.0);
        assert_eq!(h.bins.iter().sum::<f64>(), 3.0);
        assert!(h.width * BINS as f64 > 100.0);
    }

    #[test]
    fn mse_clip_matches_brute_force_search() {
        for (bits, relu, seed) in [(4, true, 2), (8, false, 3), (3, false, 4)] {
            let x = sample(5000, seed, relu);
            let levels = if relu {
                (1 << bits) - 1
            } else {
                (1 << (bits - 1)) - 1
            };
            let mut h = Histogram::default();
            h.add(&x);
            let got = h.mse_clip(levels) as f64;
            // Brute force: the exact error of the values on a fine grid of clips.
            let top = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let best = (1..=4000)
                .map(|k| exact_error(&x, top * k as f64 / 4000.0, levels))
                .fold(f64::INFINITY, f64::min);
            let at_max = exact_error(&x, top, levels);
            let mine = exact_error(&x, got, levels);
            assert!(mine <= best * 1.03, "bits {bits}: {mine} vs best {best}");
            assert!(mine <= at_max, "bits {bits}: worse than min-max");
            if bits <= 4 {
                assert!(mine < at_max * 0.9, "bits {bits}: no gain over min-max");
            }
        }
    }

    #[test]
    fn histogram_error_is_exact_for_uniform_bins() {
        // One bin's worth of uniform values: the closed form against a fine sum.
        let mut h = Histogram::default();
        let x: Vec<f32> = (0..200_000).map(|i| (i as f32 + 0.5) / 200_000.0).collect();
        h.add(&x);
        for c in [0.3, 0.77, 1.0] {
            let want = exact_error(&x, c, 7);
            let got = h.error(c, 7);
            assert!((got - want).abs() / want < 1e-3, "c {c}: {got} vs {want}");
        }
    }

    /// KL(P||Q) the slow way: the definition, each bin's group found by search.
    fn kl_naive(hist: &[f64], i: usize, levels: usize) -> f64 {
        let mut p = hist[..i].to_vec();
        for v in &hist[i..] {
            p[i - 1] += v;
        }
        let group = |k: usize| (0..levels).find(|&j| k < (j + 1) * i / levels || j + 1 == levels);
        let g: Vec<usize> = (0..i).map(|k| group(k).unwrap()).collect();
        let (mut sum, mut nz) = (vec![0.0; levels], vec![0.0; levels]);
        for k in 0..i {
            sum[g[k]] += hist[k];
            nz[g[k]] += (hist[k] > 0.0) as u8 as f64;
        }
        let q: Vec<f64> = (0..i)
            .map(|k| {
                if hist[k] > 0.0 {
                    sum[g[k]] / nz[g[k]]
                } else {
                    0.0
                }
            })
            .collect();
        let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
        (0..i)
            .filter(|&k| p[k] > 0.0)
            .map(|k| p[k] / ps * ((p[k] / ps) / (q[k] / qs).max(1e-12)).ln())
            .sum()
    }

    #[test]
    fn kl_clip_matches_brute_force_search() {
        let x = sample(50_000, 5, true);
        let mut h = Histogram::default();
        h.add(&x);
        let mut hist = h.bins.clone();
        hist[0] += h.zeros;
        let levels = 128;
        let best = (levels..=BINS)
            .step_by(8)
            .map(|i| (kl_naive(&hist, i, levels), i))
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
        // The fast form agrees with the definition where both are evaluated...
        for i in [levels, 300, 1000, BINS] {
            let (a, b) = (kl_at(&hist, i, levels), kl_naive(&hist, i, levels));
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "i {i}: {a} vs {b}"
            );
        }
        // ...and its search finds a divergence no worse than the coarse brute force.
        let got = (h.kl_clip(levels) as f64 / h.width).round() as usize;
        assert!(kl_at(&hist, got, levels) <= best.0 + 1e-12);
        // The outliers (x8) are clipped.
        assert!(got < BINS);
    }

    #[test]
    fn weight_clip_matches_brute_force_search() {
        let mut r = rand::rngs::StdRng::seed_from_u64(7);
        for levels in [7u32, 1, 127, 3] {
            let row: Vec<f32> = (0..288)
                .map(|_| r.random_range(-1.0..1.0f32).powi(3))
                .collect();
            let c = weight_mse_clip(&row, levels);
            let m = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let best = (1..=2000)
                .map(|k| weight_error(&row, m * k as f32 / 2000.0, levels))
                .fold(f64::INFINITY, f64::min);
            let mine = weight_error(&row, c, levels);
            assert!(mine <= best * 1.05, "levels {levels}: {mine} vs {best}");
            assert!(mine <= weight_error(&row, m, levels));
        }
    }
}
