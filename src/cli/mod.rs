//! The `synthcal` command line, a client of the library: flags, defaults, printing,
//! progress bars and Ctrl-C. Nothing in the library imports this module (built only with the
//! `cli` feature).

pub mod args;
pub mod bars;
pub mod calib_data;
pub mod defaults;
pub mod diagnose;
pub mod eval;
pub mod export;
pub mod generate;
pub mod quantize;
pub mod reproduce;
pub mod score;
pub mod train_gan;
pub mod zoo;

use crate::gpu::{AdapterChoice, Gpu};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "synthcal",
    version,
    about = "INT8 post-training quantization of CIFAR-10 classifiers, calibrated with real or synthetic images, on any GPU through wgpu (or on a CPU through Mesa's lavapipe)."
)]
struct Cli {
    /// GPU adapter to use: a backend (`vulkan`, `metal`, `dx12`, `gl`), a case-insensitive
    /// substring of the adapter name (`llvmpipe`, `nvidia`), or both as `backend:name`.
    /// Default: `$SYNTHCAL_ADAPTER`, else the best Vulkan, Metal or DX12 adapter (discrete, then
    /// integrated, then CPU); OpenGL is used only when asked for (`gl`).
    #[arg(long, global = true)]
    adapter: Option<String>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the selected GPU adapter, its compute limits and integer dot-product support.
    Info,
    /// Measure kernel throughput (GFLOP/s, GOP/s), ResNet-20 images/s (FP32 and INT8) and
    /// DiStyleGAN training samples/s on the selected adapter.
    Bench {
        /// Fewer repetitions, and the GAN at CPU-scale widths (ngf 64, ndf 32) instead of the
        /// reference ones (a rough figure in seconds on a GPU, a minute or two on a CPU adapter).
        #[arg(long)]
        quick: bool,
        /// Profile this model (FP32 or INT8 file) layer by layer instead of the kernel table.
        /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
        #[arg(long, value_parser = defaults::model_arg)]
        model: Option<PathBuf>,
        /// An INT8 model to profile next to --model.
        #[arg(long, requires = "model")]
        int8: Option<PathBuf>,
        /// Images per pass for the profile and the throughput.
        #[arg(long, default_value_t = 64, value_parser = args::int(1, crate::limits::MAX_BATCH))]
        batch: usize,
        /// Timed passes per figure (median per layer).
        #[arg(long, default_value_t = 10, value_parser = args::int(1usize, 1000))]
        reps: usize,
        /// Time each GPU kernel of one DiStyleGAN training iteration (batch 128, the reference
        /// widths; with --quick the CPU-scale ones) and list them by share of the iteration,
        /// instead of the kernel table. Needs GPU timestamps.
        #[arg(long, conflicts_with = "model")]
        gan_kernels: bool,
    },
    /// List the architectures of the model zoo.
    Models,
    /// Convert a PyTorch checkpoint (.th legacy or .pt zip format) or an ONNX file to
    /// safetensors.
    Import {
        /// The checkpoint to read (never executed: only tensor data is accepted).
        ckpt: PathBuf,
        /// Output .safetensors file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Architecture name (see `synthcal models`); detected from the tensors when omitted.
        #[arg(long)]
        arch: Option<String>,
        /// The input normalization's mean, one value per input channel: R,G,B for an RGB
        /// model (e.g. 0.485,0.456,0.406), one for a grayscale one, C for C channels;
        /// default: the file's metadata, else the architecture's. Stored in the output.
        #[arg(long, value_delimiter = ',', num_args = 1)]
        mean: Option<Vec<f32>>,
        /// The normalization's standard deviation, one value per input channel as for
        /// --mean (e.g. 0.229,0.224,0.225); default as for --mean. Stored in the output.
        #[arg(long, value_delimiter = ',', num_args = 1)]
        std: Option<Vec<f32>>,
        /// A text file of class names, one per line in output order; default: the file's
        /// metadata, else the CIFAR-10 names (10 outputs) or class0, class1, ... Stored in
        /// the output.
        #[arg(long)]
        classes: Option<PathBuf>,
    },
    /// Export a classifier as ONNX (opset 13; normalization and class names in its metadata):
    /// an FP32 model as plain ONNX, an INT8 model in the QDQ format.
    Export {
        /// The model: any weights file `--model` accepts, or an INT8 model file.
        /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
        #[arg(value_parser = defaults::model_arg)]
        model: PathBuf,
        /// Output .onnx file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Evaluate a classifier's (FP32 or INT8) top-1 accuracy on a CIFAR-10 split or an image
    /// folder; with --fp32, compare an INT8 model with its FP32 source.
    Eval(eval::EvalArgs),
    /// Quantize an FP32 classifier to INT8 (POT DefaultQuantization) with a calibration set.
    Quantize(quantize::QuantizeArgs),
    /// Per-layer diagnosis of an INT8 model against its FP32 source: output and weight SQNR,
    /// ranges and clipping, and the layers whose reversion to FP32 helps most.
    Diagnose(diagnose::DiagnoseArgs),
    /// Reproduce the study's Table 1: every model x calibration source x algorithm, with
    /// fidelity columns, as report.md/.json/.csv plus charts (resumable).
    Reproduce(reproduce::ReproduceArgs),
    /// Train a DiStyleGAN generator on real CIFAR-10 (optionally distilling a teacher's
    /// noise/class/image triples); checkpoints, sample grids, Ctrl-C safe, resumable.
    TrainGan(train_gan::TrainGanArgs),
    /// Write a class-balanced image folder (plus its noise vectors) from a DiStyleGAN generator.
    Generate(generate::GenerateArgs),
    /// Write a calibration source (real, gan, fractal, noise, ...) as a class-folder dataset.
    CalibData(calib_data::CalibDataArgs),
    /// Judge a calibration set with a CIFAR-10 classifier: classifier score (Inception-Score
    /// formula), classifier FID against the real test set, and class agreement.
    Score(score::ScoreArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    quiet_device_select();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let gpu = || Gpu::new(&AdapterChoice::from_flag_or_env(cli.adapter.as_deref()));
    match &cli.cmd {
        Cmd::Info => println!("{}", gpu()?.describe()),
        Cmd::Bench {
            quick,
            model,
            int8,
            batch,
            reps,
            gan_kernels,
        } => match model {
            Some(m) => zoo::print_profile(&gpu()?, m, int8.as_deref(), *batch, *reps)?,
            None if *gan_kernels => zoo::print_gan_kernels(&gpu()?, *quick)?,
            None => zoo::print_bench(&gpu()?, *quick)?,
        },
        Cmd::Models => zoo::print_zoo(),
        Cmd::Import {
            ckpt,
            output,
            arch,
            mean,
            std,
            classes,
        } => zoo::import(ckpt, output, arch.as_deref(), mean, std, classes)?,
        Cmd::Export { model, output } => export::run(model, output)?,
        Cmd::Eval(args) => eval::run(&gpu()?, args)?,
        Cmd::Quantize(args) => quantize::run(&gpu()?, args)?,
        Cmd::Diagnose(args) => diagnose::run(&gpu()?, args)?,
        Cmd::Reproduce(args) => reproduce::run(&gpu()?, args)?,
        Cmd::TrainGan(args) => train_gan::run(&gpu()?, args)?,
        Cmd::Generate(args) => generate::run(&gpu()?, args)?,
        Cmd::CalibData(args) => calib_data::run(&gpu()?, args)?,
        Cmd::Score(args) => score::run(&gpu()?, args)?,
    }
    Ok(())
}

/// An error as the command line prints it: `error: ` and the message, then each cause that
/// the message does not already quote (file errors carry their I/O or parse error both in the
/// text and as the source, which anyhow's default form would print twice).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(&format!("\n  caused by: {c}"));
        }
    }
    text
}

/// Mesa's Vulkan device-select layer looks for a Wayland session and, on a headless box,
/// prints "XDG_RUNTIME_DIR is invalid or not set" twice; without a session it has nothing
/// to select by, so it is turned off (unless the user set the variable). Runs first, before
/// any other thread exists, as `set_var` requires.
fn quiet_device_select() {
    let headless = std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none();
    if headless && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` is for users: no rustdoc link syntax leaks in from a library doc comment that
    /// clap took as a help text (the algorithms' did).
    #[test]
    fn long_help_has_no_rustdoc_links() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands_mut() {
            let text = sub.render_long_help().to_string();
            assert!(
                !text.contains("[`") && !text.contains("`]"),
                "{}:\n{text}",
                sub.get_name()
            );
        }
    }

    /// `--help` explains every flag and positional argument of every subcommand.
    #[test]
    fn every_argument_has_a_help_text() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        for sub in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for a in sub.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let text = a.get_long_help().or(a.get_help()).map(|h| h.to_string());
                if text.is_none_or(|t| t.trim().is_empty()) {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn an_error_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let file = crate::io::Error::Io {
            path: "m.th".into(),
            source: io,
        };
        assert_eq!(error_text(&anyhow::Error::new(file)), "error: m.th: gone");
        let wrapped = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&wrapped), "error: outer\n  caused by: inner");
    }

    /// Every subcommand parses with only its required arguments, so each default goes through
    /// its value parser: a parser typed differently from its field (`i32` for `usize`) panics
    /// here instead of in a user's run.
    #[test]
    fn every_subcommand_parses_with_its_defaults() {
        let cases: &[&[&str]] = &[
            &["info"],
            &["bench"],
            &["bench", "--model", "m", "--int8", "q"],
            &["models"],
            &["import", "c.pt", "-o", "m.safetensors"],
            &["export", "m.safetensors", "-o", "m.onnx"],
            &["eval", "--model", "m", "--data", "d"],
            &["quantize", "--model", "m", "--calib", "noise", "-o", "q"],
            &["diagnose", "--model", "m", "--int8", "q", "--data", "d"],
            &["reproduce"],
            &["train-gan", "-o", "run"],
            &["generate", "-o", "out"],
            &["calib-data", "fractal", "-o", "out"],
            &["score", "noise", "--model", "m"],
        ];
        for args in cases {
            let argv = std::iter::once("synthcal").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
