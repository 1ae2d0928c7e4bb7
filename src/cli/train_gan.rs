//! `synthcal train-gan`.

use super::defaults::{default_data, model_path};
use crate::data;
use crate::error::{Error, Result};
use crate::gan::train::{self, load_teacher, TrainOptions, Trainer};
use crate::gan::GanConfig;
use crate::gpu::Gpu;
use crate::ops::adam::AdamConfig;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the discriminator sees the class.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Conditioning {
    /// `concat` with a teacher, `projection` without one.
    Auto,
    /// The reference discriminator: one-hot class concatenated before the last layer.
    Concat,
    /// Adds a projection term <embed(c), h> to D's output (needed without a teacher).
    Projection,
}

/// The most training iterations (and the largest --adv-every) one run takes.
const MAX_STEPS: u64 = 100_000_000;

/// Learning rates: (0, 1].
const POSITIVE_TO_ONE: (std::ops::Bound<f64>, std::ops::Bound<f64>) = (
    std::ops::Bound::Excluded(0.0),
    std::ops::Bound::Included(1.0),
);

/// `synthcal train-gan`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainGanArgs {
    /// CIFAR-10 binary folder with the real training images (default: $SYNTHCAL_DATA, else
    /// data/cifar-10-batches-bin under $SYNTHCAL_SHARED or ../shared).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Teacher set for black-box distillation: a class-folder PNG dataset with a
    /// noise.safetensors of its noise vectors (as `synthcal generate` writes). Without it,
    /// training is a conditional hinge GAN on the real images alone.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Output folder: checkpoint.safetensors, generator.safetensors and sample grids.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Generator channels at 4x4 (halved by each up-block; a multiple of 8 up to 2,048); 256 is
    /// the reference.
    #[arg(long, default_value_t = 256, value_parser = super::args::int(8usize, 2048))]
    pub ngf: usize,
    /// Discriminator channels of the first blocks (then x2, x4; 1 to 2,048); 128 is the
    /// reference.
    #[arg(long, default_value_t = 128, value_parser = super::args::int(1usize, 2048))]
    pub ndf: usize,
    /// Noise dimensions (1 to 4,096).
    #[arg(long, default_value_t = 512, value_parser = super::args::int(1usize, 4096))]
    pub z_dim: usize,
    /// Discriminator class conditioning.
    #[arg(long, value_enum, default_value_t = Conditioning::Auto)]
    pub cond: Conditioning,
    /// Auxiliary classifier weight (AC-GAN; 0 = none): D also classifies real images, and G
    /// is pushed to make its images classified as their class. The cross-entropy terms weigh
    /// W times the adversarial ones (D's real-image hinge term, G's adversarial term); W in
    /// [0, 1000].
    #[arg(long, default_value_t = 0.0, value_name = "W", value_parser = super::args::real::<f32>(0.0..=1000.0))]
    pub aux_classifier: f32,
    /// Class-conditional shifts after each generator up-block's batch norm (conditional
    /// BN's beta). The reference generator sees the class only once, at its input.
    #[arg(long)]
    pub class_shift: bool,
    /// A frozen pretrained classifier that guides the generator: its cross-entropy on G's
    /// images against their classes joins G's loss. A checkpoint path or a model name as
    /// `synthcal reproduce --models` takes (e.g. resnet20: chenyaofo's, found under
    /// $SYNTHCAL_SHARED, else ../shared). Not in the reference DiStyleGAN, whose teacher's
    /// images carry the classes.
    #[arg(long, value_name = "MODEL")]
    pub guide: Option<String>,
    /// Weight of --guide's cross-entropy, as a multiple of G's adversarial term (0 to 1000).
    #[arg(long, default_value_t = 1.0, value_name = "W", value_parser = super::args::real::<f32>(0.0..=1000.0))]
    pub guide_weight: f32,
    /// Weight of --guide's BatchNorm-statistics loss (its layers' batch mean and std against
    /// their running ones, as GDFQ and ZeroQ use), as a multiple of G's adversarial term (0 to
    /// 1000).
    #[arg(long, default_value_t = 0.0, value_name = "W", value_parser = super::args::real::<f32>(0.0..=1000.0))]
    pub guide_bn_stats: f32,
    /// --guide sees G's images shifted by a random offset of up to PX pixels per step (as
    /// DeepInversion jitters), so that G cannot rely on pixel-exact patterns (PX up to 16).
    #[arg(long, default_value_t = 0, value_name = "PX", value_parser = super::args::int(0usize, 16))]
    pub guide_jitter: usize,
    /// Training iterations (one D step and one G step each; 1 to 10^8) [default: 10000]. With
    /// --resume: a new target for the run (above its current step); without, the run's own target.
    #[arg(long, value_parser = super::args::int(1, MAX_STEPS))]
    pub steps: Option<u64>,
    /// Images per step (2 to 4,096).
    #[arg(long, default_value_t = 128, value_parser = super::args::int(2usize, 4096))]
    pub batch: usize,
    /// Adam learning rate of the generator, in (0, 1].
    #[arg(long, default_value_t = 2e-4, value_parser = super::args::real::<f32>(POSITIVE_TO_ONE))]
    pub lr_g: f32,
    /// Adam learning rate of the discriminator, in (0, 1].
    #[arg(long, default_value_t = 2e-4, value_parser = super::args::real::<f32>(POSITIVE_TO_ONE))]
    pub lr_d: f32,
    /// Adam beta1 (both networks), in [0, 1).
    #[arg(long, default_value_t = 0.5, value_parser = super::args::real::<f32>(0.0..1.0))]
    pub beta1: f32,
    /// Adam beta2 (both networks), in [0, 1).
    #[arg(long, default_value_t = 0.999, value_parser = super::args::real::<f32>(0.0..1.0))]
    pub beta2: f32,
    /// Generator adversarial terms every N-th iteration (default: 10 with a teacher, else 1).
    #[arg(long, value_parser = super::args::int(1, MAX_STEPS))]
    pub adv_every: Option<u64>,
    /// Use only N real training images (a seeded draw; 0 = all 50,000).
    #[arg(long, default_value_t = 0)]
    pub real_images: usize,
    /// Seed of initialization, noise and data order (same seed, same run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every N steps (also on Ctrl-C and at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Write a 10x10 sample grid (one row per class) every N steps (0 = only at the end).
    #[arg(long, default_value_t = 500)]
    pub sample_every: u64,
    /// Continue from OUTPUT/checkpoint.safetensors (its options win; --steps sets a new target).
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainGanArgs {
    fn options(&self) -> TrainOptions {
        let mut o = TrainOptions::faithful(self.teacher.clone());
        let projection = match self.cond {
            Conditioning::Auto => self.teacher.is_none(),
            Conditioning::Concat => false,
            Conditioning::Projection => true,
        };
        o.config = GanConfig {
            z_dim: self.z_dim,
            ngf: self.ngf,
            ndf: self.ndf,
            classes: 10,
            projection,
            aux_classifier: self.aux_classifier > 0.0,
            class_shift: self.class_shift,
        };
        o.cls_d = 0.2 * self.aux_classifier;
        o.cls_g = o.l3 * self.aux_classifier;
        // A name is resolved here, so the recipe records the file the run used.
        o.guide = self
            .guide
            .as_deref()
            .map(|g| model_path(g).display().to_string());
        if self.guide.is_some() {
            o.guide_weight = o.l3 * self.guide_weight;
            o.guide_bn_stats = o.l3 * self.guide_bn_stats;
            o.guide_jitter = self.guide_jitter;
        }
        if let Some(steps) = self.steps {
            o.steps = steps;
        }
        o.batch = self.batch;
        o.seed = self.seed;
        let adam = |lr| AdamConfig {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            ..AdamConfig::default()
        };
        o.adam_g = adam(self.lr_g);
        o.adam_d = adam(self.lr_d);
        if let Some(a) = self.adv_every {
            o.adv_every = a;
        }
        o.real_images = self.real_images;
        o
    }
}

fn real_images(args_data: Option<&Path>, n: usize, seed: u64) -> Result<data::Dataset> {
    let dir = args_data.map(PathBuf::from).unwrap_or_else(default_data);
    let ds = data::load_cifar10_bin(&dir, data::Split::Train)?;
    if n == 0 || n >= ds.len() {
        return Ok(ds);
    }
    let mut idx: Vec<usize> = (0..ds.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 3));
    idx.truncate(n);
    idx.sort_unstable();
    Ok(ds.subset(&idx)?)
}

/// `synthcal train-gan`.
pub fn run(gpu: &Arc<Gpu>, args: &TrainGanArgs) -> Result<()> {
    let data = args.data.clone().unwrap_or_else(default_data);
    let guide = args.guide.as_deref().map(model_path);
    let inputs = [Some(&data), args.teacher.as_ref(), guide.as_ref()];
    let inputs: Vec<&Path> = inputs.into_iter().flatten().map(|p| p.as_path()).collect();
    crate::io::check_output_dir(&args.output, &inputs)?;
    std::fs::create_dir_all(&args.output).map_err(|e| Error::File {
        path: args.output.clone(),
        msg: e.to_string(),
    })?;
    // Held until this function returns: one run per folder at a time.
    let _lock = crate::io::DirLock::acquire(&args.output)?;
    let teacher = args.teacher.as_deref().map(load_teacher).transpose()?;
    let ckpt = args.output.join("checkpoint.safetensors");
    let mut tr = if args.resume {
        if !ckpt.exists() {
            return Err(Error::File {
                path: ckpt,
                msg: "--resume: no checkpoint here".into(),
            });
        }
        let real = |o: &TrainOptions| real_images(args.data.as_deref(), o.real_images, o.seed);
        let mut tr = Trainer::resume(gpu.clone(), &ckpt, real, teacher)?;
        // `run` never saves past the target (library users may step further).
        if tr.step > tr.opts.steps {
            return Err(Error::File {
                path: ckpt,
                msg: format!(
                    "step {} is past the run's target of {} steps: not a checkpoint of train-gan",
                    tr.step, tr.opts.steps
                ),
            });
        }
        if let Some(n) = args.steps {
            if n <= tr.step {
                return Err(Error::File {
                    path: ckpt,
                    msg: format!(
                        "--resume --steps {n}: the run is at step {}; a new target must be above it (without --steps the run continues to its own {})",
                        tr.step, tr.opts.steps
                    ),
                });
            }
            tr.opts.steps = n;
        }
        eprintln!("resuming at step {} of {}", tr.step, tr.opts.steps);
        tr
    } else {
        if ckpt.exists() {
            return Err(Error::File {
                path: ckpt,
                msg:
                    "a checkpoint exists: pass --resume to continue it, or choose another --output"
                        .into(),
            });
        }
        let opts = args.options();
        let real = real_images(args.data.as_deref(), opts.real_images, opts.seed)?;
        Trainer::new(gpu.clone(), opts, real, teacher)?
    };
    let (g, d) = (tr.g.params.count(), tr.d.params.count());
    eprintln!(
        "DiStyleGAN: generator {g} parameters, discriminator {d}; {} real images{}",
        tr.real_len(),
        if tr.opts.teacher.is_some() {
            ", with a teacher"
        } else {
            ", no teacher"
        }
    );
    let hooks = super::bars::hooks_with_ctrl_c(args.quiet);
    let report = train::run(
        &mut tr,
        &args.output,
        args.checkpoint_every,
        args.sample_every,
        &hooks,
    )?;
    println!(
        "{} at step {} ({:.1} s, {:.1} samples/s, {:.2} s/iteration); D loss {:.4}, G loss {:.4}",
        if report.interrupted {
            "interrupted; saved"
        } else {
            "done"
        },
        report.steps,
        report.seconds,
        report.samples_per_sec,
        tr.opts.batch as f64 / report.samples_per_sec.max(1e-9),
        report.last.d,
        report.last.g
    );
    if let Some(r) = report.steady_samples_per_sec {
        println!(
            "after the first step: {r:.1} samples/s, {:.2} s/iteration (saves and sample grids not counted)",
            tr.opts.batch as f64 / r.max(1e-9)
        );
    }
    println!(
        "generator: {}",
        args.output.join("generator.safetensors").display()
    );
    Ok(())
}
