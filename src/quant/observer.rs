//! Activation range estimation: from per-sample statistics, as POT aggregates them, or from a
//! histogram of all values (`histogram`).

use super::histogram::Histogram;

/// How per-sample statistics become one range.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum RangeEstimator {
    /// POT's default preset: min = min over samples of the per-sample min; max = mean over
    /// samples of the per-sample max (abs-max when the range is signed).
    Pot,
    /// Plain global min / max over every value seen.
    #[cfg_attr(feature = "cli", value(alias = "minmax"))]
    MinMax,
    /// Like `Pot`, but each sample contributes its 1e-4 / (1 - 1e-4) quantiles instead of its
    /// extremes (POT's quantile estimator with outlier probability 1e-4).
    Quantile,
    /// The 1 - 1e-4 quantile of |x| over all values of all samples.
    Percentile,
    /// The clip that minimizes the expected squared quantization error (rounding and clipping)
    /// at the format's bit width, on a histogram of all values.
    Mse,
    /// TensorRT's entropy calibration: the clip minimizing the KL divergence between the
    /// clipped and the quantized histogram (2048 bins).
    Kl,
}

impl RangeEstimator {
    /// Whether the estimator needs the values themselves (read back from the GPU), not only
    /// per-sample extremes.
    pub fn reads_values(self) -> bool {
        !matches!(self, RangeEstimator::Pot | RangeEstimator::MinMax)
    }

    /// Whether the range comes from a histogram of all values (per tensor only).
    pub fn uses_histogram(self) -> bool {
        matches!(
            self,
            RangeEstimator::Percentile | RangeEstimator::Mse | RangeEstimator::Kl
        )
    }
}

/// The share of values the quantile estimator treats as outliers (per tail).
pub const OUTLIER_PROB: f64 = 1e-4;

/// Per-sample (min, max, abs-max) of one quantized input (per channel for depthwise inputs).
#[derive(Clone, Debug, Default)]
pub struct Observer {
    /// Channels observed (1 for a per-tensor range).
    pub channels: usize,
    /// One entry per (sample, channel): (min, max, abs-max).
    pub samples: Vec<[f32; 3]>,
    /// |x| of all values (histogram estimators only).
    pub hist: Histogram,
}

impl Observer {
    /// An observer of `channels` channels with no statistics yet.
    pub fn new(channels: usize) -> Self {
        Observer {
            channels: channels.max(1),
            samples: Vec::new(),
            hist: Histogram::default(),
        }
    }

    /// `stats` is `[rows, STATS]` as `ops::stats::row_stats` returns it.
    pub fn push(&mut self, stats: &[f32]) {
        self.samples.extend(
            stats
                .chunks_exact(crate::ops::stats::STATS)
                .map(|c| [c[0], c[1], c[2]]),
        );
    }

    /// The per-tensor observer of the same samples: each sample's min, max and abs-max over
    /// all its channels.
    pub fn collapse(&self) -> Observer {
        let samples = self
            .samples
            .chunks(self.channels)
            .map(|ch| {
                ch.iter()
                    .fold([f32::INFINITY, f32::NEG_INFINITY, 0.0], |a, r| {
                        [a[0].min(r[0]), a[1].max(r[1]), a[2].max(r[2])]
                    })
            })
            .collect();
        Observer {
            channels: 1,
            samples,
            hist: self.hist.clone(),
        }
    }

    /// The per-tensor (min, max) of `bits`-bit values: a histogram estimator's symmetric clip
    /// (`(0, c)` when no value was negative), else the per-sample aggregate.
    pub fn range(&self, est: RangeEstimator, bits: u32) -> (f32, f32) {
        let o = self.collapse();
        if !est.uses_histogram() {
            return o.ranges(est)[0];
        }
        let lo = o.samples.iter().map(|r| r[0]).fold(f32::INFINITY, f32::min);
        let unsigned = lo >= 0.0;
        let b = bits.clamp(2, 8);
        let c = match est {
            RangeEstimator::Percentile => self.hist.percentile(1.0 - OUTLIER_PROB),
            RangeEstimator::Mse => self.hist.mse_clip(if unsigned {
                (1 << b) - 1
            } else {
                (1 << (b - 1)) - 1
            }),
            _ => self
                .hist
                .kl_clip(if unsigned { 1 << b } else { 1 << (b - 1) }),
        };
        if unsigned {
            (0.0, c)
        } else {
            (-c, c)
        }
    }

    /// (min, max) for each channel (one entry when per-tensor).
    pub fn ranges(&self, est: RangeEstimator) -> Vec<(f32, f32)> {
        (0..self.channels)
            .map(|c| {
                let rows = self.samples.iter().skip(c).step_by(self.channels);
                let lo = rows.clone().map(|r| r[0]).fold(f32::INFINITY, f32::min);
                match est {
                    RangeEstimator::MinMax => {
                        (lo, rows.map(|r| r[1]).fold(f32::NEG_INFINITY, f32::max))
                    }
                    // Histogram estimators are per tensor (`range`); per channel they fall back
                    // to POT's aggregation.
                    _ => {
                        // Signed ranges average the abs-max; unsigned ones the max.
                        let k = if lo < 0.0 { 2 } else { 1 };
                        let (sum, n) =
                            rows.fold((0f64, 0usize), |(s, n), r| (s + r[k] as f64, n + 1));
                        (lo, (sum / n.max(1) as f64) as f32)
                    }
                }
            })
            .collect()
    }
}

/// Like `ops::stats::row_stats`, on the host, but with the row's mean as the fourth value:
/// (min, max, abs-max, mean) per row.
pub fn host_row_stats(x: &[f32], rows: usize) -> Vec<f32> {
    let len = x.len() / rows.max(1);
    x.chunks(len.max(1))
        .flat_map(|r| {
            let (lo, hi, sum) = r
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY, 0f64), |a, &v| {
                    (a.0.min(v), a.1.max(v), a.2 + v as f64)
                });
            [lo, hi, lo.abs().max(hi.abs()), (sum / len as f64) as f32]
        })
        .collect()
}

/// The per-sample quantile statistics used by `RangeEstimator::Quantile`: for each row of
/// `x` (a sample, or a sample-channel pair), (q_low, q_high, max(|q_low|, |q_high|), 0) in the
/// layout of `ops::stats::row_stats`.
pub fn quantile_rows(x: &[f32], rows: usize) -> Vec<f32> {
    let len = x.len() / rows;
    x.chunks(len)
        .flat_map(|r| {
            let mut v = r.to_vec();
            v.sort_by(f32::total_cmp);
            let at = |q: f64| v[((q * (len - 1) as f64).round() as usize).min(len - 1)];
            let (lo, hi) = (at(OUTLIER_PROB), at(1.0 - OUTLIER_PROB));
            [lo, hi, lo.abs().max(hi.abs()), 0.0]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pot_aggregation() {
        let mut o = Observer::new(1);
        o.push(&[0.0, 2.0, 2.0, 0.0, 0.5, 4.0, 4.0, 0.0]);
        assert_eq!(o.ranges(RangeEstimator::Pot), vec![(0.0, 3.0)]);
        assert_eq!(o.ranges(RangeEstimator::MinMax), vec![(0.0, 4.0)]);
        let mut s = Observer::new(1);
        s.push(&[-1.0, 0.5, 1.0, 0.0, -3.0, 1.0, 3.0, 0.0]);
        assert_eq!(s.ranges(RangeEstimator::Pot), vec![(-3.0, 2.0)]);
    }

    #[test]
    fn per_channel_rows_interleave() {
        let mut o = Observer::new(2);
        // sample 0: ch0, ch1; sample 1: ch0, ch1
        o.push(&[
            0.0, 1.0, 1.0, 0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 20.0, 20.0, 0.0,
        ]);
        assert_eq!(o.ranges(RangeEstimator::Pot), vec![(0.0, 2.0), (0.0, 15.0)]);
    }

    #[test]
    fn collapse_gives_per_sample_extremes() {
        let mut o = Observer::new(2);
        o.push(&[
            0.0, 1.0, 1.0, 0.0, -1.0, 10.0, 10.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 20.0, 20.0, 0.0,
        ]);
        let c = o.collapse();
        assert_eq!(c.samples, vec![[-1.0, 10.0, 10.0], [0.0, 20.0, 20.0]]);
    }

    #[test]
    fn quantiles_drop_outliers() {
        let mut x: Vec<f32> = (0..100_000).map(|i| (i % 100) as f32 / 100.0).collect();
        x[5] = 1000.0;
        let q = quantile_rows(&x, 1);
        assert!(q[1] < 1.0 && q[0] >= 0.0, "{q:?}");
    }
}
