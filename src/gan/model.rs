//! DiStyleGAN's generator and discriminator (ThanosM97/gsoc2022-openvino), as tape programs.

use super::init::{bn_weight, orthogonal, unit_normal};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream, Tensor};
use crate::graph::tape::{Tape, Var};
use crate::graph::trainable::{ParamSet, TapeParams};
use crate::ops::{self, conv2d::Conv2dParams, Act};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Widths and conditioning. The defaults are the reference implementation's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GanConfig {
    pub z_dim: usize,
    /// Generator channels at 4x4 (halved by each of the three up-blocks).
    pub ngf: usize,
    /// Discriminator channels of the first two blocks (then 2x, 4x).
    pub ndf: usize,
    pub classes: usize,
    /// Adds a projection term <embed(c), h> to D's output (Miyato & Koyama 2018). The
    /// reference D only concatenates the one-hot class before its final linear layer, which
    /// adds a per-class constant that does not depend on the image, so without a teacher
    /// the generator would get no class signal at all.
    pub projection: bool,
    /// Adds an auxiliary classifier head (AC-GAN, Odena et al. 2017): class logits from D's
    /// 128-d head, trained on real images; G is trained to make them name its class.
    #[serde(default)]
    pub aux_classifier: bool,
    /// Class-conditional shifts after each up-block's batch norm (conditional BN's beta, as
    /// in SNGAN/BigGAN generators). The reference conditions G once, at its input; through
    /// the GLU gates a per-class shift also scales channels per class at every resolution.
    #[serde(default)]
    pub class_shift: bool,
}

impl Default for GanConfig {
    fn default() -> Self {
        GanConfig {
            z_dim: 512,
            ngf: 256,
            ndf: 128,
            classes: 10,
            projection: false,
            aux_classifier: false,
            class_shift: false,
        }
    }
}

impl GanConfig {
    pub fn check(&self) -> Result<()> {
        if self.ngf < 8
            || !self.ngf.is_multiple_of(8)
            || self.ndf == 0
            || self.z_dim == 0
            || self.classes < 2
        {
            return Err(Error::Invalid(format!(
                "bad GAN widths {self:?}: ngf must be a multiple of 8, ndf, z_dim > 0, classes >= 2"
            )));
        }
        Ok(())
    }
}

/// Hidden width of both networks' GLU heads (256 -> 128), as in the reference.
const HEAD: usize = 256;

pub struct Generator {
    pub cfg: GanConfig,
    pub params: ParamSet,
    /// BatchNorm running (mean, var) by layer prefix.
    pub running: Vec<(String, Tensor, Tensor)>,
}

/// Named weight shapes.
type Shapes = Vec<(String, Vec<usize>)>;

/// G's weights and its batch norms (prefix, channels).
fn gen_layers(cfg: &GanConfig) -> (Shapes, Vec<(String, usize)>) {
    let c0 = cfg.ngf;
    let mut w = vec![
        ("fc1.weight".to_string(), vec![HEAD, cfg.z_dim]),
        (
            "fc2.weight".to_string(),
            vec![2 * c0 * 16, HEAD / 2 + cfg.classes],
        ),
    ];
    let mut bn = vec![("bn1".to_string(), HEAD), ("bn2".to_string(), 2 * c0 * 16)];
    let mut c = c0;
    for k in 0..3 {
        w.push((format!("up{k}.conv.weight"), vec![c, c, 3, 3]));
        if cfg.class_shift {
            w.push((format!("up{k}.shift.weight"), vec![c, cfg.classes]));
        }
        bn.push((format!("up{k}.bn"), c));
        c /= 2;
    }
    w.push(("out.weight".to_string(), vec![3, c, 3, 3]));
    (w, bn)
}

/// Orthogonal weights and N(1, 0.02) BN scales (zero shifts), as the reference initializes.
fn init_params(
    weights: &[(String, Vec<usize>)],
    bns: &[(String, usize)],
    rng: &mut StdRng,
) -> Vec<(String, Array)> {
    // Class shifts start at zero: G starts as the reference one.
    let mut out: Vec<(String, Array)> = weights
        .iter()
        .map(|(n, s)| {
            let a = if n.contains(".shift.") {
                Array::zeros(s)
            } else {
                orthogonal(s, rng)
            };
            (n.clone(), a)
        })
        .collect();
    for (n, c) in bns {
        out.push((format!("{n}.weight"), bn_weight(*c, rng)));
        out.push((format!("{n}.bias"), Array::zeros(&[*c])));
    }
    out
}

impl Generator {
    pub fn new(gpu: &Gpu, cfg: GanConfig, rng: &mut StdRng) -> Result<Generator> {
        cfg.check()?;
        let (w, bn) = gen_layers(&cfg);
        Generator::from_params(gpu, cfg, &init_params(&w, &bn, rng), &[])
    }

    /// From named parameters and running statistics (`<bn>.running_mean/var`; defaults 0/1).
    pub fn from_params(
        gpu: &Gpu,
        cfg: GanConfig,
        params: &[(String, Array)],
        stats: &[(String, Array)],
    ) -> Result<Generator> {
        cfg.check()?;
        let (w, bn) = gen_layers(&cfg);
        let mut expected: Vec<(String, Vec<usize>)> = w;
        for (n, c) in &bn {
            expected.push((format!("{n}.weight"), vec![*c]));
            expected.push((format!("{n}.bias"), vec![*c]));
        }
        let ordered = order_params("generator", &expected, params)?;
        let mut running = Vec::new();
        for (n, c) in &bn {
            let find = |suffix: &str, default: f32| -> Result<Tensor> {
                let name = format!("{n}.{suffix}");
                match stats.iter().find(|(k, _)| *k == name) {
                    Some((_, a)) if a.shape == [*c] => gpu.upload_f32(&[*c], &a.data),
                    Some((_, a)) => Err(Error::Invalid(format!(
                        "generator: {name} has shape {:?}, expected [{c}]",
                        a.shape
                    ))),
                    None => gpu.upload_f32(&[*c], &vec![default; *c]),
                }
            };
            running.push((
                n.clone(),
                find("running_mean", 0.0)?,
                find("running_var", 1.0)?,
            ));
        }
        Ok(Generator {
            cfg,
            params: ParamSet::new(gpu, &ordered)?,
            running,
        })
    }

    fn bn(
        &self,
        t: &mut Tape,
        s: &mut Stream,
        p: &TapeParams,
        x: Var,
        name: &str,
        train: bool,
    ) -> Result<Var> {
        let (_, rm, rv) = self
            .running
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| Error::Invalid(format!("no batch norm {name}")))?;
        let (g, b) = (
            p.get(&format!("{name}.weight"))?,
            p.get(&format!("{name}.bias"))?,
        );
        if train {
            return t.batch_norm(s, x, g, b, (rm, rv));
        }
        let bn = ops::batchnorm::BatchNorm::new(
            t.value(g).clone(),
            t.value(b).clone(),
            rm.clone(),
            rv.clone(),
        );
        let y = ops::batchnorm::batch_norm(s, t.value(x), &bn, Act::Identity)?;
        Ok(t.leaf(y, false))
    }

    /// Images `[N, 3, 32, 32]` in [-1, 1] from noise `[N, z_dim]` and one-hot classes `[N, classes]`.
    /// `train` uses batch statistics (and updates the running ones); otherwise running ones.
    pub fn forward(
        &self,
        t: &mut Tape,
        s: &mut Stream,
        p: &TapeParams,
        z: Var,
        onehot: Var,
        train: bool,
    ) -> Result<Var> {
        let n = t.value(z).shape()[0];
        let h = t.linear(s, z, p.get("fc1.weight")?)?;
        let h = self.bn(t, s, p, h, "bn1", train)?;
        let h = t.glu(s, h)?;
        let h = t.concat(s, &[h, onehot])?;
        let h = t.linear(s, h, p.get("fc2.weight")?)?;
        let h = self.bn(t, s, p, h, "bn2", train)?;
        let h = t.glu(s, h)?;
        let mut h = t.reshape(h, &[n, self.cfg.ngf, 4, 4])?;
        for k in 0..3 {
            h = t.upsample(s, h, 2)?;
            h = t.conv2d(
                s,
                h,
                p.get(&format!("up{k}.conv.weight"))?,
                None,
                Conv2dParams::new(1, 1, 1),
            )?;
            h = self.bn(t, s, p, h, &format!("up{k}.bn"), train)?;
            if self.cfg.class_shift {
                h = self.class_shift(t, s, p, h, onehot, k)?;
            }
            h = t.glu(s, h)?;
        }
        let h = t.conv2d(s, h, p.get("out.weight")?, None, Conv2dParams::new(1, 1, 1))?;
        t.act(s, h, Act::Tanh)
    }

    /// `h + shift[class]` per channel: the one-hot times the shift table, broadcast over
    /// the map by a nearest upsample of the 1x1 map.
    fn class_shift(
        &self,
        t: &mut Tape,
        s: &mut Stream,
        p: &TapeParams,
        h: Var,
        onehot: Var,
        k: usize,
    ) -> Result<Var> {
        let shape = t.value(h).shape().to_vec();
        let shift = t.linear(s, onehot, p.get(&format!("up{k}.shift.weight"))?)?;
        let shift = t.reshape(shift, &[shape[0], shape[1], 1, 1])?;
        let shift = t.upsample(s, shift, shape[2])?;
        t.add(s, h, shift)
    }

    /// Parameters and running statistics, read back (for checkpoints and export).
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<(String, Array)>> {
        let mut out = self.params.read(gpu)?;
        for (n, rm, rv) in &self.running {
            out.push((
                format!("{n}.running_mean"),
                Array::new(rm.shape(), gpu.read_f32(rm)?),
            ));
            out.push((
                format!("{n}.running_var"),
                Array::new(rv.shape(), gpu.read_f32(rv)?),
            ));
        }
        Ok(out)
    }
}

pub struct Discriminator {
    pub cfg: GanConfig,
    pub params: ParamSet,
    /// Spectral-norm power-iteration vectors `u` by weight name.
    pub u: Vec<(String, Tensor)>,
    ones: Tensor,
}

/// The four conv blocks: (in, out) channels.
fn d_blocks(cfg: &GanConfig) -> [(usize, usize); 4] {
    let d = cfg.ndf;
    [(3, d), (d, d), (d, 2 * d), (2 * d, 4 * d)]
}

fn disc_layers(cfg: &GanConfig) -> Vec<(String, Vec<usize>)> {
    let mut w = Vec::new();
    for (k, (ci, co)) in d_blocks(cfg).into_iter().enumerate() {
        w.push((format!("block{k}.weight"), vec![co, ci, 4, 4]));
        w.push((format!("block{k}.bias"), vec![co]));
    }
    w.push(("fc.weight".to_string(), vec![HEAD, 4 * cfg.ndf * 4]));
    w.push(("out.weight".to_string(), vec![1, HEAD / 2 + cfg.classes]));
    if cfg.projection {
        w.push(("embed.weight".to_string(), vec![HEAD / 2, cfg.classes]));
    }
    if cfg.aux_classifier {
        w.push(("aux.weight".to_string(), vec![cfg.classes, HEAD / 2]));
    }
    w
}

/// The spectral-normalized weights.
fn sn_names() -> Vec<String> {
    let mut v: Vec<String> = (0..4).map(|k| format!("block{k}.weight")).collect();
    v.push("fc.weight".into());
    v
}

/// D's weights for one step: spectral-normalized once, shared by every D call of the step.
pub struct DWeights {
    p: TapeParams,
    sn: Vec<(String, Var)>,
    ones: Var,
}

impl DWeights {
    fn get(&self, name: &str) -> Result<Var> {
        match self.sn.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(*v),
            None => self.p.get(name),
        }
    }
    pub fn params(&self) -> &TapeParams {
        &self.p
    }
}

/// D's output `[N, 1]`, its four block outputs and (with the auxiliary classifier) its class
/// logits `[N, classes]`.
pub struct DOut {
    pub logit: Var,
    pub feats: Vec<Var>,
    pub classes: Option<Var>,
}

impl Discriminator {
    pub fn new(gpu: &Gpu, cfg: GanConfig, rng: &mut StdRng) -> Result<Discriminator> {
        cfg.check()?;
        let params: Vec<(String, Array)> = disc_layers(&cfg)
            .into_iter()
            .map(|(n, s)| {
                let a = if n.ends_with(".bias") {
                    Array::zeros(&s)
                } else {
                    orthogonal(&s, rng)
                };
                (n, a)
            })
            .collect();
        let u: Vec<(String, Array)> = sn_names()
            .into_iter()
            .map(|n| {
                let rows = params
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, a)| a.shape[0])
                    .unwrap_or(1);
                (format!("{n}_u"), unit_normal(rows, rng))
            })
            .collect();
        Discriminator::from_params(gpu, cfg, &params, &u)
    }

    /// From named parameters and the `<weight>_u` vectors.
    pub fn from_params(
        gpu: &Gpu,
        cfg: GanConfig,
        params: &[(String, Array)],
        u: &[(String, Array)],
    ) -> Result<Discriminator> {
        cfg.check()?;
        let ordered = order_params("discriminator", &disc_layers(&cfg), params)?;
        let mut us = Vec::new();
        for n in sn_names() {
            let rows = ordered
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, a)| a.shape[0])
                .unwrap_or(1);
            let name = format!("{n}_u");
            let a = u
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, a)| a)
                .ok_or_else(|| Error::Invalid(format!("discriminator: missing {name}")))?;
            if a.shape != [rows] {
                return Err(Error::Invalid(format!(
                    "discriminator: {name} has shape {:?}, expected [{rows}]",
                    a.shape
                )));
            }
            us.push((n, gpu.upload_f32(&[rows], &a.data)?));
        }
        Ok(Discriminator {
            cfg,
            params: ParamSet::new(gpu, &ordered)?,
            u: us,
            ones: gpu.upload_f32(&[1, HEAD / 2], &[1.0; HEAD / 2])?,
        })
    }

    /// Puts D on the tape for one step: one power iteration per spectral-normed weight.
    pub fn weights(&self, t: &mut Tape, s: &mut Stream, trainable: bool) -> Result<DWeights> {
        let p = self.params.on_tape(t, trainable);
        let mut sn = Vec::new();
        for (n, u) in &self.u {
            let w = p.get(n)?;
            sn.push((n.clone(), t.spectral_norm(s, w, u)?));
        }
        let ones = t.leaf(self.ones.clone(), false);
        Ok(DWeights { p, sn, ones })
    }

    pub fn forward(
        &self,
        t: &mut Tape,
        s: &mut Stream,
        w: &DWeights,
        x: Var,
        onehot: Var,
    ) -> Result<DOut> {
        let n = t.value(x).shape()[0];
        let mut h = x;
        let mut feats = Vec::new();
        for k in 0..4 {
            let (wk, bk) = (
                w.get(&format!("block{k}.weight"))?,
                w.get(&format!("block{k}.bias"))?,
            );
            h = t.conv2d(s, h, wk, Some(bk), Conv2dParams::new(2, 1, 1))?;
            h = t.act(s, h, Act::LeakyRelu(0.2))?;
            feats.push(h);
        }
        let h = t.reshape(h, &[n, 4 * self.cfg.ndf * 4])?;
        let h = t.linear(s, h, w.get("fc.weight")?)?;
        let h = t.glu(s, h)?;
        let hc = t.concat(s, &[h, onehot])?;
        let mut logit = t.linear(s, hc, w.get("out.weight")?)?;
        if self.cfg.projection {
            let e = t.linear(s, onehot, w.get("embed.weight")?)?;
            let prod = t.mul(s, h, e)?;
            let proj = t.linear(s, prod, w.ones)?;
            logit = t.add(s, logit, proj)?;
        }
        let classes = if self.cfg.aux_classifier {
            Some(t.linear(s, h, w.get("aux.weight")?)?)
        } else {
            None
        };
        Ok(DOut {
            logit,
            feats,
            classes,
        })
    }

    pub fn read(&self, gpu: &Gpu) -> Result<Vec<(String, Array)>> {
        let mut out = self.params.read(gpu)?;
        for (n, u) in &self.u {
            out.push((format!("{n}_u"), Array::new(u.shape(), gpu.read_f32(u)?)));
        }
        Ok(out)
    }
}

/// Picks `expected` (name, shape) out of `given`, in order; a clear error for a missing or
/// misshaped tensor.
fn order_params(
    what: &str,
    expected: &[(String, Vec<usize>)],
    given: &[(String, Array)],
) -> Result<Vec<(String, Array)>> {
    expected
        .iter()
        .map(|(n, shape)| match given.iter().find(|(k, _)| k == n) {
            Some((_, a)) if a.shape == *shape => Ok((n.clone(), a.clone())),
            Some((_, a)) => Err(Error::Invalid(format!(
                "{what}: {n} has shape {:?}, expected {shape:?}",
                a.shape
            ))),
            None => Err(Error::Invalid(format!("{what}: missing tensor {n}"))),
        })
        .collect()
}
