//! DiStyleGAN training: one discriminator step, then one generator step, per iteration.
//!
//! Losses (hinge), as the reference:
//! - D: relu(1 - D(x_t)) + relu(1 + D(x_s)) + 0.2 [relu(1 - D(x_real)) + relu(1 + D(x_rand))]
//! - G: L_feat + l1 |x_s - x_t| + l2 (-D(x_s)) + l3 (-D(G(z ~ N(0, 1), c))), the adversarial
//!   terms every `adv_every`-th iteration.
//!
//! x_t is a teacher image for (noise, class), x_s = G(noise, class). Without a teacher the
//! distillation terms drop out, leaving a conditional hinge GAN on real images; its only
//! generator term is then adversarial, so it runs every iteration.
//!
//! One spectral-norm power iteration per network per step (PyTorch runs one per D call):
//! D's normalized weights are computed once per step and shared by all its calls.

use super::generate::{normal_noise, one_hot};
use super::guide::Guide;
use super::model::{DWeights, Discriminator, GanConfig, Generator};
use super::{
    check_format, meta_json, read_arrays, save_generator, write_arrays, CHECKPOINT_FORMAT,
};
use crate::array::Array;
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream};
use crate::graph::tape::{Tape, Var};
use crate::ops::{adam::AdamConfig, loss::Loss};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Instant;

/// Everything that defines a run (saved as the generator's recipe).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub config: GanConfig,
    pub steps: u64,
    pub batch: usize,
    pub seed: u64,
    pub adam_g: AdamConfig,
    pub adam_d: AdamConfig,
    pub l1: f32,
    pub l1_decay: f32,
    pub l2: f32,
    pub l3: f32,
    pub adv_every: u64,
    /// Real training images used (the first N of a seeded shuffle; 0 = all).
    pub real_images: usize,
    pub teacher: Option<PathBuf>,
    /// Weights of the auxiliary classifier's cross-entropy (with `config.aux_classifier`):
    /// in D's loss (real images) and in G's.
    #[serde(default)]
    pub cls_d: f32,
    #[serde(default)]
    pub cls_g: f32,
    /// A frozen pretrained classifier (model name or path) whose cross-entropy on G's images
    /// against their classes joins G's loss with weight `guide_weight` (see `gan::guide`).
    #[serde(default)]
    pub guide: Option<String>,
    #[serde(default)]
    pub guide_weight: f32,
    /// Weight of the guide's BN-statistics losses (GDFQ's BNS term; 0 = none).
    #[serde(default)]
    pub guide_bn_stats: f32,
    /// The guide sees G's images shifted by up to this many pixels (random per step).
    #[serde(default)]
    pub guide_jitter: usize,
}

impl TrainOptions {
    pub fn faithful(teacher: Option<PathBuf>) -> TrainOptions {
        let has_teacher = teacher.is_some();
        TrainOptions {
            config: GanConfig {
                projection: !has_teacher,
                ..GanConfig::default()
            },
            steps: 10_000,
            batch: 128,
            seed: 0,
            adam_g: AdamConfig::default(),
            adam_d: AdamConfig::default(),
            l1: 0.2,
            l1_decay: 0.01,
            l2: 0.01,
            l3: 0.002,
            adv_every: if has_teacher { 10 } else { 1 },
            real_images: 0,
            teacher,
            cls_d: 0.0,
            cls_g: 0.0,
            guide: None,
            guide_weight: 0.0,
            guide_bn_stats: 0.0,
            guide_jitter: 0,
        }
    }
}

/// A teacher's (noise, class, image) triples.
pub struct Teacher {
    pub images: Dataset,
    pub noise: Vec<f32>,
    pub z_dim: usize,
}

/// Loads a teacher set: a class-folder dataset plus `noise.safetensors` (see the module docs).
pub fn load_teacher(dir: &Path) -> Result<Teacher> {
    let images = data::load_image_folder(dir, data::ResizePolicy::Reject)?;
    let path = dir.join("noise.safetensors");
    let (arrays, _) = read_arrays(&path)?;
    let get = |name: &str| {
        arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| Error::File {
                path: path.clone(),
                msg: format!("missing tensor `{name}`"),
            })
    };
    let (noise, labels) = (get("noise")?, get("labels")?);
    let bad = |msg: String| Error::File {
        path: path.clone(),
        msg,
    };
    if noise.shape.len() != 2 || noise.shape[0] != images.len() {
        return Err(bad(format!(
            "noise {:?} for {} images",
            noise.shape,
            images.len()
        )));
    }
    if labels.data.len() != images.len()
        || labels
            .data
            .iter()
            .zip(images.labels())
            .any(|(&a, &b)| a != b as f32)
    {
        return Err(bad("labels do not match the class folders' order".into()));
    }
    Ok(Teacher {
        z_dim: noise.shape[1],
        images,
        noise: noise.data,
    })
}

/// Seeded order of `n` items, epoch after epoch: item `k` of the stream.
struct IndexStream {
    n: usize,
    seed: u64,
    epoch: u64,
    perm: Vec<usize>,
}

impl IndexStream {
    fn new(n: usize, seed: u64) -> IndexStream {
        IndexStream {
            n,
            seed,
            epoch: u64::MAX,
            perm: Vec::new(),
        }
    }
    fn batch(&mut self, step: u64, b: usize) -> Vec<usize> {
        (0..b)
            .map(|i| {
                let k = step * b as u64 + i as u64;
                let epoch = k / self.n as u64;
                if epoch != self.epoch {
                    self.perm = (0..self.n).collect();
                    self.perm.shuffle(&mut StdRng::seed_from_u64(
                        self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ));
                    self.epoch = epoch;
                }
                self.perm[(k % self.n as u64) as usize]
            })
            .collect()
    }
}

/// Images of `ds` at `idx` as f32 in [-1, 1], `[N, 3, 32, 32]`.
fn images(ds: &Dataset, idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| ds.image(i).iter().map(|&p| p as f32 / 127.5 - 1.0))
        .collect()
}

/// The losses of one iteration.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepLosses {
    pub d: f32,
    pub g: f32,
}

pub struct Trainer {
    pub gpu: Arc<Gpu>,
    pub opts: TrainOptions,
    pub g: Generator,
    pub d: Discriminator,
    pub step: u64,
    real: Dataset,
    real_stream: IndexStream,
    teacher: Option<Teacher>,
    teacher_stream: IndexStream,
    /// Classes of the last `random_inputs` draw.
    last_labels: Vec<data::Label>,
    guide: Option<Guide>,
}

impl Trainer {
    pub fn new(
        gpu: Arc<Gpu>,
        opts: TrainOptions,
        real: Dataset,
        teacher: Option<Teacher>,
    ) -> Result<Trainer> {
        opts.config.check()?;
        if opts.batch < 2 {
            return Err(Error::Invalid(
                "batch must be at least 2 (batch norm needs it)".into(),
            ));
        }
        if real.num_classes() != opts.config.classes {
            return Err(Error::Invalid(format!(
                "{} classes in the real data, {} in the config",
                real.num_classes(),
                opts.config.classes
            )));
        }
        if let Some(t) = &teacher {
            if t.z_dim != opts.config.z_dim || t.images.num_classes() != opts.config.classes {
                return Err(Error::Invalid(format!(
                    "teacher noise has {} dims and {} classes; the generator takes {} and {}",
                    t.z_dim,
                    t.images.num_classes(),
                    opts.config.z_dim,
                    opts.config.classes
                )));
            }
        }
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let g = Generator::new(&gpu, opts.config, &mut rng)?;
        let d = Discriminator::new(&gpu, opts.config, &mut rng)?;
        let guide = match &opts.guide {
            Some(path) => Some(Guide::load(&gpu, path.as_ref())?),
            None => None,
        };
        let real_stream = IndexStream::new(real.len(), opts.seed ^ 1);
        let teacher_stream = IndexStream::new(
            teacher.as_ref().map_or(1, |t| t.images.len()),
            opts.seed ^ 2,
        );
        Ok(Trainer {
            gpu,
            opts,
            g,
            d,
            step: 0,
            real,
            real_stream,
            teacher,
            teacher_stream,
            last_labels: Vec::new(),
            guide,
        })
    }

    fn rng(&self, salt: u64) -> StdRng {
        StdRng::seed_from_u64(
            self.opts.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (self.step << 4) ^ salt,
        )
    }

    fn upload(&self, t: &mut Tape, shape: &[usize], v: &[f32]) -> Result<Var> {
        Ok(t.leaf(self.gpu.upload_f32(shape, v)?, false))
    }

    /// Random noise and classes on the tape: (z, one-hot).
    fn random_inputs(&mut self, t: &mut Tape, rng: &mut StdRng) -> Result<(Var, Var)> {
        let (b, cfg) = (self.opts.batch, &self.opts.config);
        let z = normal_noise(b * cfg.z_dim, rng);
        let labels: Vec<data::Label> = (0..b)
            .map(|_| rand::Rng::random_range(rng, 0..cfg.classes) as data::Label)
            .collect();
        let oh = self.upload(t, &[b, cfg.classes], &one_hot(&labels, cfg.classes))?;
        self.last_labels = labels;
        Ok((self.upload(t, &[b, cfg.z_dim], &z)?, oh))
    }

    /// Teacher triples for this step: (noise, one-hot, image, labels).
    fn teacher_inputs(&mut self, t: &mut Tape) -> Result<Option<TeacherBatch>> {
        let Some(teacher) = &self.teacher else {
            return Ok(None);
        };
        let idx = self.teacher_stream.batch(self.step, self.opts.batch);
        let (b, zd, c) = (idx.len(), teacher.z_dim, self.opts.config.classes);
        let z: Vec<f32> = idx
            .iter()
            .flat_map(|&i| teacher.noise[i * zd..(i + 1) * zd].to_vec())
            .collect();
        let labels: Vec<data::Label> = idx.iter().map(|&i| teacher.images.labels()[i]).collect();
        let x = images(&teacher.images, &idx);
        Ok(Some((
            self.upload(t, &[b, zd], &z)?,
            self.upload(t, &[b, c], &one_hot(&labels, c))?,
            self.upload(t, &[b, 3, 32, 32], &x)?,
            labels,
        )))
    }

    fn d_step(&mut self, s: &mut Stream) -> Result<StepTape> {
        let mut t = Tape::new();
        let gp = self.g.params.on_tape(&mut t, false);
        let dw = self.d.weights(&mut t, s, true)?;
        let idx = self.real_stream.batch(self.step, self.opts.batch);
        let mut labels: Vec<data::Label> = idx.iter().map(|&i| self.real.labels()[i]).collect();
        let (b, c) = (idx.len(), self.opts.config.classes);
        let real = self
            .gpu
            .upload_f32(&[b, 3, 32, 32], &images(&self.real, &idx))?;
        let mut rng = self.rng(1);
        let (z, cz) = self.random_inputs(&mut t, &mut rng)?;
        let x_rand = self.g.forward(&mut t, s, &gp, z, cz, true)?;
        labels.extend(self.last_labels.iter().copied());
        // D sees one concatenated batch: [real; G(z)] (plus [x_t; x_s] with a teacher); the
        // hinge terms' signs and weights ride along per row.
        let mut parts = vec![real, t.value(x_rand).clone()];
        let mut signs = vec![0.2f32; b];
        signs.extend(std::iter::repeat_n(-0.2, b));
        if let Some((zt, ct, xt, tl)) = self.teacher_inputs(&mut t)? {
            let xs = self.g.forward(&mut t, s, &gp, zt, ct, true)?;
            parts.push(t.value(xt).clone());
            parts.push(t.value(xs).clone());
            labels.extend(tl.iter().chain(&tl).copied());
            signs.extend(std::iter::repeat_n(1.0, b).chain(std::iter::repeat_n(-1.0, b)));
        }
        let rows = signs.len();
        // Weights are per term means: scale by the number of terms' rows.
        let signs: Vec<f32> = signs.iter().map(|w| w * (rows / b) as f32).collect();
        let x = self
            .gpu
            .alloc("d_batch", &[rows, 3, 32, 32], crate::gpu::DType::F32)?;
        let img = (3 * 32 * 32 * 4 * b) as u64;
        for (k, part) in parts.iter().enumerate() {
            s.copy(part, 0, &x, k as u64 * img, img);
        }
        let x = t.leaf(x, false);
        let oh = self.upload(&mut t, &[rows, c], &one_hot(&labels, c))?;
        let target = self.upload(&mut t, &[rows, 1], &signs)?;
        let out = self.d.forward(&mut t, s, &dw, x, oh)?;
        let mut terms = vec![(
            t.loss(s, out.logit, Some(target), Loss::WeightedHinge)?,
            1.0,
        )];
        if let Some(cls) = out.classes {
            // Only the real rows (the first b) name their class; the loss is a mean over all
            // rows, so rescale it to a mean over the real ones.
            let mut want = one_hot(&labels, c);
            want[b * c..].fill(0.0);
            let want = self.upload(&mut t, &[rows, c], &want)?;
            let w = self.opts.cls_d * rows as f32 / b as f32;
            terms.push((t.loss(s, cls, Some(want), Loss::CrossEntropy)?, w));
        }
        let grads = t.backward(s, &terms)?;
        self.d
            .params
            .adam_step(s, &grads, dw.params(), &self.opts.adam_d)?;
        Ok(StepTape { tape: t, terms })
    }

    fn g_step(&mut self, s: &mut Stream) -> Result<StepTape> {
        let mut t = Tape::new();
        let gp = self.g.params.on_tape(&mut t, true);
        let dw: DWeights = self.d.weights(&mut t, s, false)?;
        let adversarial = self.step.is_multiple_of(self.opts.adv_every.max(1));
        let mut terms = Vec::new();
        if let Some((zt, ct, xt, _)) = self.teacher_inputs(&mut t)? {
            let xs = self.g.forward(&mut t, s, &gp, zt, ct, true)?;
            let out_s = self.d.forward(&mut t, s, &dw, xs, ct)?;
            let out_t = self.d.forward(&mut t, s, &dw, xt, ct)?;
            for (k, (fs, ft)) in out_s.feats.iter().zip(&out_t.feats).enumerate() {
                let w = [1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0][k];
                terms.push((t.loss(s, *fs, Some(*ft), Loss::L1)?, w));
            }
            let l1 = (self.opts.l1 - self.opts.l1_decay * self.g.params.step as f32).max(0.0);
            if l1 > 0.0 {
                terms.push((t.loss(s, xs, Some(xt), Loss::L1)?, l1));
            }
            if adversarial {
                terms.push((
                    t.loss(s, out_s.logit, None, Loss::Linear { sign: -1.0 })?,
                    self.opts.l2,
                ));
            }
        }
        if adversarial || self.teacher.is_none() {
            let mut rng = self.rng(2);
            let (z, cz) = self.random_inputs(&mut t, &mut rng)?;
            let x = self.g.forward(&mut t, s, &gp, z, cz, true)?;
            let out = self.d.forward(&mut t, s, &dw, x, cz)?;
            terms.push((
                t.loss(s, out.logit, None, Loss::Linear { sign: -1.0 })?,
                self.opts.l3,
            ));
            if let Some(cls) = out.classes {
                terms.push((
                    t.loss(s, cls, Some(cz), Loss::CrossEntropy)?,
                    self.opts.cls_g,
                ));
            }
            if let Some(guide) = &mut self.guide {
                let j = self.opts.guide_jitter as i32;
                let mut draw = || rand::Rng::random_range(&mut rng, -j..=j);
                let shift = (draw(), draw());
                let bns = self.opts.guide_bn_stats;
                let (logits, stats) = guide.logits(&mut t, s, x, shift, bns > 0.0)?;
                terms.push((
                    t.loss(s, logits, Some(cz), Loss::CrossEntropy)?,
                    self.opts.guide_weight,
                ));
                terms.extend(stats.into_iter().map(|l| (l, bns)));
            }
        }
        let grads = t.backward(s, &terms)?;
        self.g.params.adam_step(s, &grads, &gp, &self.opts.adam_g)?;
        Ok(StepTape { tape: t, terms })
    }

    /// One iteration (D step, G step, one submit); returns the weighted losses.
    pub fn step(&mut self) -> Result<StepLosses> {
        let gpu = self.gpu.clone();
        let mut s = gpu.stream();
        let d = self.d_step(&mut s)?;
        let g = self.g_step(&mut s)?;
        let tensors: Vec<_> = d
            .terms
            .iter()
            .map(|(v, _)| d.tape.value(*v).clone())
            .chain(g.terms.iter().map(|(v, _)| g.tape.value(*v).clone()))
            .collect();
        let refs: Vec<_> = tensors.iter().collect();
        let bytes = s.submit_and_read(&refs)?;
        let vals: Vec<f32> = bytes
            .iter()
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let weights: Vec<f32> = d.terms.iter().chain(&g.terms).map(|(_, w)| *w).collect();
        let nd = d.terms.len();
        let sum = |r: std::ops::Range<usize>| r.map(|i| vals[i] * weights[i]).sum::<f32>();
        self.step += 1;
        Ok(StepLosses {
            d: sum(0..nd),
            g: sum(nd..vals.len()),
        })
    }

    /// Images from G in inference mode for fixed noise: `per_class` per class, class-major.
    pub fn samples(&self, per_class: usize, seed: u64) -> Result<Dataset> {
        super::generate::generate(
            &self.gpu,
            &self.g,
            per_class,
            seed,
            None,
            &Default::default(),
        )
        .map(|(ds, _)| ds)
    }

    /// Writes `checkpoint.safetensors` and `generator.safetensors` into `dir` (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let gpu = &self.gpu;
        let mut arrays: Vec<(String, Array)> = Vec::new();
        arrays.extend(
            self.g
                .read(gpu)?
                .into_iter()
                .map(|(n, a)| (format!("g.{n}"), a)),
        );
        arrays.extend(
            self.d
                .read(gpu)?
                .into_iter()
                .map(|(n, a)| (format!("d.{n}"), a)),
        );
        for (k, p) in [("g", &self.g.params), ("d", &self.d.params)] {
            let (m, v) = p.read_moments(gpu)?;
            arrays.push((format!("opt.{k}.m"), Array::new(&[m.len()], m)));
            arrays.push((format!("opt.{k}.v"), Array::new(&[v.len()], v)));
        }
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), CHECKPOINT_FORMAT.into());
        meta.insert(
            "options".into(),
            serde_json::to_string(&self.opts).unwrap_or_default(),
        );
        meta.insert("step".into(), self.step.to_string());
        meta.insert(
            "adam_steps".into(),
            format!("{} {}", self.g.params.step, self.d.params.step),
        );
        meta.insert(CHECKSUM_KEY.into(), checksum(&arrays, &meta));
        write_arrays(&dir.join("checkpoint.safetensors"), &arrays, &meta)?;
        let recipe = serde_json::to_value(&self.opts).unwrap_or_default();
        save_generator(
            gpu,
            &self.g,
            &recipe,
            self.step,
            &dir.join("generator.safetensors"),
        )
    }

    pub fn real_len(&self) -> usize {
        self.real.len()
    }

    /// Restores a checkpoint written by [`Trainer::save`]. `real` loads the real images for
    /// the checkpoint's options (their count and seed pick them).
    pub fn resume(
        gpu: Arc<Gpu>,
        path: &Path,
        real: impl FnOnce(&TrainOptions) -> Result<Dataset>,
        teacher: Option<Teacher>,
    ) -> Result<Trainer> {
        let (arrays, meta) = read_arrays(path)?;
        check_format(path, &meta, CHECKPOINT_FORMAT)?;
        verify_checksum(path, &arrays, &meta)?;
        let opts: TrainOptions = meta_json(path, &meta, "options")?;
        let step: u64 = meta_json(path, &meta, "step")?;
        let real = real(&opts)?;
        let file_err = |e: Error| Error::File {
            path: path.into(),
            msg: e.to_string(),
        };
        let mut tr = Trainer::new(gpu.clone(), opts, real, teacher).map_err(file_err)?;
        let pick = |prefix: &str| -> Vec<(String, Array)> {
            arrays
                .iter()
                .filter_map(|(n, a)| n.strip_prefix(prefix).map(|k| (k.to_string(), a.clone())))
                .collect()
        };
        let (g_all, d_all) = (pick("g."), pick("d."));
        let (g_stats, g_params): (Vec<_>, Vec<_>) = g_all
            .into_iter()
            .partition(|(n, _)| n.contains(".running_"));
        let (d_u, d_params): (Vec<_>, Vec<_>) =
            d_all.into_iter().partition(|(n, _)| n.ends_with("_u"));
        let cfg = tr.opts.config;
        tr.g = Generator::from_params(&gpu, cfg, &g_params, &g_stats).map_err(file_err)?;
        tr.d = Discriminator::from_params(&gpu, cfg, &d_params, &d_u).map_err(file_err)?;
        let steps: Vec<u64> = meta
            .get("adam_steps")
            .map(|s| s.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let opt = pick("opt.");
        let get = |n: &str| {
            opt.iter()
                .find(|(k, _)| k == n)
                .map(|(_, a)| a.data.clone())
                .ok_or_else(|| file_err(Error::Invalid(format!("missing opt.{n}"))))
        };
        if steps.len() != 2 {
            return Err(file_err(Error::Invalid(
                "metadata adam_steps is missing".into(),
            )));
        }
        // One Adam step per network per iteration.
        if steps.iter().any(|&s| s > step) {
            return Err(file_err(Error::Invalid(format!(
                "metadata adam_steps {steps:?} exceed the step {step}"
            ))));
        }
        tr.g.params
            .load_moments(&gpu, &get("g.m")?, &get("g.v")?, steps[0])
            .map_err(file_err)?;
        tr.d.params
            .load_moments(&gpu, &get("d.m")?, &get("d.v")?, steps[1])
            .map_err(file_err)?;
        tr.step = step;
        Ok(tr)
    }
}

/// The checkpoint metadata field holding [`checksum`].
pub const CHECKSUM_KEY: &str = "checksum";

/// CRC-32 over a checkpoint's tensors (by name: name, shape, f32 bytes) and its metadata
/// (sorted, all but the checksum itself), as `crc32:` and 8 hex digits. It catches a
/// corrupted checkpoint that still parses (a flipped data byte, an edited counter).
pub fn checksum(arrays: &[(String, Array)], meta: &BTreeMap<String, String>) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for (k, v) in meta.iter().filter(|(k, _)| *k != CHECKSUM_KEY) {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut sorted: Vec<&(String, Array)> = arrays.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, a) in sorted {
        field(name.as_bytes());
        let shape: Vec<u8> = a
            .shape
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&shape);
        let data: Vec<u8> = a.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        field(&data);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// Checks a checkpoint's stored [`checksum`]; one without (an older synthcal's) only warns.
fn verify_checksum(
    path: &Path,
    arrays: &[(String, Array)],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(stored) = meta.get(CHECKSUM_KEY) else {
        log::warn!(
            "{}: no checksum (an older checkpoint); not verified",
            path.display()
        );
        return Ok(());
    };
    let actual = checksum(arrays, meta);
    if *stored != actual {
        return Err(Error::File {
            path: path.into(),
            msg: format!(
                "checksum mismatch (stored {stored}, contents {actual}): the checkpoint is corrupt"
            ),
        });
    }
    Ok(())
}

/// Teacher noise, one-hot classes and images on the tape, with the classes.
type TeacherBatch = (Var, Var, Var, Vec<data::Label>);

/// A step's tape with its loss terms (kept until the losses are read).
struct StepTape {
    tape: Tape,
    terms: Vec<(Var, f32)>,
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub steps: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    /// Samples/s of the steps after the first (which compiles the pipelines), saves and sample
    /// grids not counted; None with fewer than two steps.
    pub steady_samples_per_sec: Option<f64>,
    pub last: StepLosses,
    pub interrupted: bool,
}

/// Runs `tr` to `tr.opts.steps`, checkpointing into `out` every `ckpt_every` steps, when
/// `hooks.cancel` is cancelled (then stopping) and at the end, and writing a 10x10 sample grid every `sample_every` steps.
/// A non-finite loss stops the run with an error; the last checkpoint stays as it was.
pub fn run(
    tr: &mut Trainer,
    out: &Path,
    ckpt_every: u64,
    sample_every: u64,
    hooks: &crate::progress::Hooks,
) -> Result<TrainReport> {
    std::fs::create_dir_all(out).map_err(|e| Error::File {
        path: out.into(),
        msg: e.to_string(),
    })?;
    let total = tr.opts.steps;
    let mut bar = hooks.task("train-gan", total);
    bar.set(tr.step);
    let start = Instant::now();
    let first = tr.step;
    let mut last = StepLosses::default();
    let mut interrupted = false;
    // Time in steps after the first, and how many.
    let (mut steady, mut steady_steps) = (std::time::Duration::ZERO, 0u64);
    let grid = |tr: &Trainer, name: &str| -> Result<()> {
        let ds = tr.samples(10, tr.opts.seed ^ 0xA11CE)?;
        data::sample_grid_png(&ds, 1, 10, out.join(name))?;
        Ok(())
    };
    while tr.step < total {
        if hooks.cancel.is_cancelled() {
            interrupted = true;
            break;
        }
        let step_start = Instant::now();
        let l = tr.step()?;
        if tr.step > first + 1 {
            steady += step_start.elapsed();
            steady_steps += 1;
        }
        if !l.d.is_finite() || !l.g.is_finite() {
            return Err(Error::Invalid(format!(
                "a loss became non-finite at step {} (D {}, G {}); stopped without saving: the last good checkpoint is {}",
                tr.step,
                l.d,
                l.g,
                out.join("checkpoint.safetensors").display()
            )));
        }
        last = l;
        let rate = (tr.step - first) as f64 * tr.opts.batch as f64 / start.elapsed().as_secs_f64();
        bar.set(tr.step);
        bar.message(&format!("D {:.3} G {:.4} | {rate:.1} samples/s", l.d, l.g));
        if sample_every > 0 && tr.step.is_multiple_of(sample_every) {
            grid(tr, &format!("samples_{:06}.png", tr.step))?;
        }
        if ckpt_every > 0 && tr.step.is_multiple_of(ckpt_every) {
            tr.save(out)?;
        }
    }
    tr.save(out)?;
    grid(tr, "samples_latest.png")?;
    if !interrupted {
        bar.complete();
    }
    let seconds = start.elapsed().as_secs_f64();
    let done = tr.step - first;
    Ok(TrainReport {
        steps: tr.step,
        seconds,
        samples_per_sec: done as f64 * tr.opts.batch as f64 / seconds.max(1e-9),
        steady_samples_per_sec: (steady_steps > 0)
            .then(|| steady_steps as f64 * tr.opts.batch as f64 / steady.as_secs_f64().max(1e-9)),
        last,
        interrupted,
    })
}
