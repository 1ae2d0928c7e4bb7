//! `synthcal generate`: a class-folder dataset from a DiStyleGAN generator.

use crate::data;
use crate::error::Result;
use crate::gan::generate::{generate, save_generated};
use crate::gan::load_generator;
use crate::gpu::Gpu;
use std::path::PathBuf;
use std::sync::Arc;

/// `synthcal generate`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Generator file (default: assets/distylegan-cifar10.safetensors, committed with synthcal).
    #[arg(long)]
    pub generator: Option<PathBuf>,
    /// Images per class (1 to 10^8, within the available memory).
    #[arg(long, default_value_t = 500, value_parser = super::args::int(1, crate::limits::MAX_PER_CLASS))]
    pub per_class: usize,
    /// Seed of the noise (same seed, same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Truncation trick: redraw noise values beyond +-T (e.g. 0.7; more typical, less varied
    /// images), with T in [0.1, 10]. Default: plain N(0, 1) noise.
    #[arg(long, value_parser = super::args::real::<f32>(0.1..=10.0))]
    pub truncation: Option<f32>,
    /// Output folder (must be empty or new): one subfolder of PNGs per class plus
    /// noise.safetensors.
    #[arg(short, long)]
    pub output: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `synthcal generate`.
pub fn run(gpu: &Arc<Gpu>, args: &GenerateArgs) -> Result<()> {
    let path = args
        .generator
        .clone()
        .unwrap_or_else(super::defaults::default_generator);
    crate::io::check_output_dir(&args.output, &[&path])?;
    crate::io::output::check_new_or_empty(&args.output)?;
    let (g, _) = load_generator(gpu, &path)?;
    // Checked here too, to name the flag: noise, f32 and u8 pixels of every image.
    let flag = format!("--per-class {}", args.per_class);
    let each = 4 * g.cfg.z_dim + 5 * data::IMG_BYTES;
    crate::limits::check_alloc(&flag, &[args.per_class, g.cfg.classes, each])?;
    let hooks = super::bars::hooks(args.quiet);
    let (ds, noise) = generate(gpu, &g, args.per_class, args.seed, args.truncation, &hooks)?;
    save_generated(&ds, &noise, g.cfg.z_dim, &args.output)?;
    println!("{} images in {}", ds.len(), args.output.display());
    Ok(())
}
