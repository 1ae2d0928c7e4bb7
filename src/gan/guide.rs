//! A frozen pretrained classifier that guides the generator: G's images, mapped from [-1, 1]
//! to the classifier's normalized input, should be classified as their conditioning class
//! (a cross-entropy term in G's loss, as data-free quantization's generators use, e.g.
//! GDFQ). Not part of the reference DiStyleGAN, whose teacher's images carry the classes;
//! without a teacher, the hinge GAN alone learns them slowly at CPU widths (see README).

use crate::error::Result;
use crate::gpu::{Gpu, Stream};
use crate::graph::replay::{Frozen, Until};
use crate::graph::tape::{Tape, Var};
use crate::models::{Model, Normalization};
use crate::ops::conv2d::Conv2dParams;
use std::sync::Arc;

pub struct Guide {
    /// The classifier, which also keeps the guide's own constants (input mapping, shifts).
    frozen: Frozen,
    /// The classifier's input normalization.
    norm: Normalization,
}

impl Guide {
    /// The classifier in the checkpoint at `path`.
    pub fn load(gpu: &Arc<Gpu>, path: &std::path::Path) -> Result<Guide> {
        Guide::new(gpu, crate::models::load_model(path, None)?)
    }

    pub fn new(gpu: &Arc<Gpu>, model: Model) -> Result<Guide> {
        let Model { arch, params, .. } = model;
        // The generator makes RGB images.
        if arch.input_channels != 3 {
            return Err(crate::error::Error::Invalid(format!(
                "{}: a GAN guide must take RGB images; it takes {}-channel ones",
                arch.name, arch.input_channels
            )));
        }
        Ok(Guide {
            frozen: Frozen::new(gpu, &arch.name, arch.graph, params),
            norm: arch.norm.clone(),
        })
    }

    /// The classifier's logits `[N, classes]` for G's images `x` `[N, 3, H, W]` in [-1, 1],
    /// shifted by `shift` pixels (x, y; zeros enter at the border), and its BN-statistics
    /// losses when `stats`.
    pub fn logits(
        &mut self,
        t: &mut Tape,
        s: &mut Stream,
        x: Var,
        shift: (i32, i32),
        stats: bool,
    ) -> Result<(Var, Vec<Var>)> {
        let mut x = x;
        if shift != (0, 0) {
            // Output pixel i reads input i + shift: a one-hot kernel, padded by its radius.
            let r = shift.0.unsigned_abs().max(shift.1.unsigned_abs()) as usize;
            let k = 2 * r + 1;
            let key = format!("#guide-shift{},{}", shift.0, shift.1);
            let kernel = self.frozen.constant(t, &key, &[3, 1, k, k], || {
                let mut w = vec![0f32; 3 * k * k];
                let (u, v) = ((r as i32 + shift.1) as usize, (r as i32 + shift.0) as usize);
                for c in 0..3 {
                    w[c * k * k + u * k + v] = 1.0;
                }
                w
            })?;
            x = t.conv2d(s, x, kernel, None, Conv2dParams::new(1, r, 3))?;
        }
        // Per-channel affine from [-1, 1] to the normalized input: x01 = (x + 1) / 2, then
        // (x01 - mean) / std.
        let n = &self.norm;
        let scale = self.frozen.constant(t, "#guide-scale", &[3, 1, 1, 1], || {
            n.std.iter().map(|s| 0.5 / s).collect()
        })?;
        let bias = self.frozen.constant(t, "#guide-bias", &[3], || {
            (0..3).map(|c| (0.5 - n.mean[c]) / n.std[c]).collect()
        })?;
        let xn = t.conv2d(s, x, scale, Some(bias), Conv2dParams::new(1, 0, 3))?;
        let r = self.frozen.replay(t, s, xn, Until::Logits, stats)?;
        Ok((r.out, r.stat_losses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::models::{arch, random_params};
    use rand::{Rng, SeedableRng};

    /// G's [-1, 1] images reach the classifier as `synthcal eval` feeds it real ones:
    /// (v / 255 - mean) / std with v / 255 = (x + 1) / 2; a jitter shift moves them, with
    /// zeros (mid-grey) entering at the border.
    #[test]
    fn guide_logits_are_the_classifiers_on_the_mapped_images() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let a = arch("resnet20").unwrap();
        let model = Model::new(a, random_params(&arch("resnet20").unwrap(), 5)).unwrap();
        let norm = &model.arch.norm;
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let x: Vec<f32> = (0..2 * 3072).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bns = (model.arch.graph.nodes.iter())
            .filter(|n| matches!(n.op, crate::graph::Op::BatchNorm { .. }))
            .count();
        let mut guide = Guide::new(&gpu, model.clone()).unwrap();
        for shift in [(0, 0), (1, -2), (-2, 2)] {
            let mapped: Vec<f32> = (0..x.len())
                .map(|i| {
                    let (c, y, xx) = ((i / 1024) % 3, (i / 32) % 32, i % 32);
                    let (sy, sx) = (y as i32 + shift.1, xx as i32 + shift.0);
                    let inside = (0..32).contains(&sy) && (0..32).contains(&sx);
                    let v = if inside {
                        x[i - y * 32 - xx + sy as usize * 32 + sx as usize]
                    } else {
                        0.0
                    };
                    ((v + 1.0) / 2.0 - norm.mean[c]) / norm.std[c]
                })
                .collect();
            let input = Array::new(&[2, 3, 32, 32], mapped);
            let want =
                crate::graph::cpu::forward(&model.arch.graph, &model.params, &input).unwrap();
            let mut s = gpu.stream();
            let mut t = Tape::new();
            let xv = t.leaf(gpu.upload_f32(&[2, 3, 32, 32], &x).unwrap(), false);
            let (out, stats) = guide.logits(&mut t, &mut s, xv, shift, true).unwrap();
            s.submit();
            assert_eq!(stats.len(), bns, "one statistics loss per BatchNorm layer");
            let got = gpu.read_f32(t.value(out)).unwrap();
            let scale = want.data.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (g, r) in got.iter().zip(&want.data) {
                assert!((g - r).abs() <= 1e-4 * scale, "{shift:?}: {g} vs {r}");
            }
        }
    }
}
