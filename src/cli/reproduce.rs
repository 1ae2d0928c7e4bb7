//! `synthcal reproduce`: every (model, calibration source, algorithm) cell of the study's
//! Table 1, with fidelity columns, optionally across bit widths and range estimators, written as report.md / .json / .csv, a bar chart of the
//! drops and a sample grid per source. Each finished cell is saved as it completes
//! (`cells/*.json`, atomically) and never recomputed, so an interrupted run resumes.

use super::defaults::{check_models, missing, model_path};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::eval::chart::BarChart;
use crate::eval::score::{self, Quality};
use crate::eval::{fidelity, Classifier, Fidelity};
use crate::gpu::Gpu;
use crate::infer::logits;
use crate::quant::{quantize_with_set, Algorithm, QuantOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// Models: checkpoint paths, or the names akamaster_resnet20, akamaster_resnet56,
    /// resnet20, resnet56, shufflenetv2_x0_5 (found under $SYNTHCAL_SHARED, else ../shared,
    /// /models).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "akamaster_resnet20,resnet20"
    )]
    pub models: Vec<String>,
    /// Calibration sources, as `quantize --calib` takes them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "real,gan,fractal,noise,distill",
        value_parser = super::calib_data::parse_source
    )]
    pub sources: Vec<String>,
    /// Algorithms: default, accuracy-aware, adaround (learned rounding; `--iters` steps per
    /// layer), brecq (learned rounding and activation steps; `--iters` steps per block).
    #[arg(long, value_delimiter = ',', default_value = "default", value_parser = ["default", "accuracy-aware", "adaround", "brecq"])]
    pub algorithms: Vec<String>,
    /// Bit widths, each `8` (W8A8) or `wNaM` (N-bit weights, M-bit activations, 2 to 8), e.g.
    /// `8,w4a8,w4a4`: a dimension of the table beside sources and algorithms.
    #[arg(long, value_delimiter = ',', default_value = "8", value_parser = parse_bits)]
    pub bits: Vec<Bits>,
    /// Range estimators: `pot` is the study's recipe (POT's estimator, max|w| weights,
    /// FastBiasCorrection, the mixed INT8 scheme); any other (min-max, mse, percentile, kl,
    /// quantile) runs `quantize`'s defaults with that activation estimator.
    #[arg(long, value_delimiter = ',', default_value = "pot", value_parser = ["pot", "min-max", "mse", "percentile", "kl", "quantile"])]
    pub estimators: Vec<String>,
    /// Keep the first and last quantized layers at W8A8 in the cells below 8 bits.
    #[arg(long)]
    pub first_last_8bit: bool,
    /// Bits of the inputs of residual adds and concats in the cells below 8 bits, as
    /// `quantize --add-bits` [default: the cell's activation bits]; such cells are named
    /// `wNaM+addK`.
    #[arg(long, value_parser = super::quantize::bits(&[8, 6, 4]))]
    pub add_bits: Option<u32>,
    /// AdaRound's steps per layer, BRECQ's per block (default: the library's).
    #[arg(long, value_parser = super::args::int(1, usize::MAX))]
    pub iters: Option<usize>,
    #[command(flatten)]
    pub set: super::calib_data::CalibSetArgs,
    /// AccuracyAware's largest acceptable drop on the calibration set.
    #[arg(long, default_value_t = 0.01, value_parser = super::args::real::<f64>(0.0..1.0))]
    pub max_drop: f64,
    /// Evaluate on the first N test images only (default: all 10,000).
    #[arg(long, value_parser = super::args::int(1, usize::MAX))]
    pub limit: Option<usize>,
    /// Report folder (created; finished cells in it are reused).
    #[arg(short, long, default_value = "report")]
    pub output: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Weight and activation bits of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits {
    pub weights: u32,
    pub activations: u32,
}

impl std::fmt::Display for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}a{}", self.weights, self.activations)
    }
}

/// `8` or `wNaM`.
pub fn parse_bits(s: &str) -> std::result::Result<Bits, String> {
    let bad =
        || format!("`{s}` is not a bit width: write 8 or wNaM with N and M in 2..=8, e.g. w4a8");
    let (w, a) = match s {
        "8" => (8, 8),
        _ => {
            let rest = s.strip_prefix('w').ok_or_else(bad)?;
            let (w, a) = rest.split_once('a').ok_or_else(bad)?;
            (w.parse().map_err(|_| bad())?, a.parse().map_err(|_| bad())?)
        }
    };
    if !(2..=8).contains(&w) || !(2..=8).contains(&a) {
        return Err(bad());
    }
    Ok(Bits {
        weights: w,
        activations: a,
    })
}

fn w8a8() -> String {
    "w8a8".into()
}

fn pot() -> String {
    "pot".into()
}

/// One table cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub model: String,
    pub source: String,
    pub algorithm: String,
    /// `wNaM` (cells written before bit widths were a dimension are W8A8).
    #[serde(default = "w8a8")]
    pub bits: String,
    /// The activation range estimator, `pot` for the study's recipe.
    #[serde(default = "pot")]
    pub estimator: String,
    pub calibration: String,
    pub fp32_layers: Vec<String>,
    pub fidelity: Fidelity,
    /// The calibration set judged by this row's FP32 model (see `eval::score`).
    #[serde(default)]
    pub quality: Option<Quality>,
    pub seconds: f64,
    /// What changes the cell but not its file name (`cell_settings`); cells written before
    /// it was recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
}

/// A cell's file name (without `.json`) and its adds' bits.
fn cell_name(
    args: &ReproduceArgs,
    (m, src): (&str, &str),
    (bits, est, alg): (Bits, &str, &str),
) -> (String, Option<u32>) {
    // The study's cells keep their file names, so old reports resume.
    let mut name = format!("{}__{}__{}", slug(m), slug(src), slug(alg));
    if est != "pot" {
        name += &format!("__{}", slug(est));
    }
    if bits.weights != 8 || bits.activations != 8 {
        name += &format!("__{bits}");
    }
    let add_bits = cell_add_bits(args, bits, est);
    if let Some(k) = add_bits {
        name += &format!("__add{k}");
    }
    (name, add_bits)
}

/// The settings that change a cell's result but not its file name: the test images, the
/// calibration set's size and seed, and the algorithm's own options.
fn cell_settings(
    args: &ReproduceArgs,
    test_images: usize,
    (bits, est, alg): (Bits, &str, &str),
) -> Result<String> {
    let o = recipe(args, bits, est, alg)?;
    let mut s = format!(
        "test images {test_images}, per-class {}, seed {}",
        args.set.per_class, args.set.seed
    );
    if o.ends_at_8bit {
        s += ", first/last layers 8-bit";
    }
    match o.algorithm {
        Algorithm::AdaRound | Algorithm::Brecq => s += &format!(", iters {}", o.adaround.iters),
        Algorithm::AccuracyAware => s += &format!(", max-drop {}", o.max_drop),
        Algorithm::Default => {}
    }
    Ok(s)
}

/// One cell of this run: where its result lives and what computes it.
struct Planned<'a> {
    model: &'a str,
    source: &'a str,
    recipe: (Bits, &'a str, &'a str),
    name: String,
    add_bits: Option<u32>,
}

/// This run's cells, model by model, then source by source, then bits x estimator x
/// algorithm: the order of the report.
fn plan(args: &ReproduceArgs) -> Vec<Planned<'_>> {
    let mut out = Vec::new();
    for m in &args.models {
        for src in &args.sources {
            for &bits in &args.bits {
                for est in &args.estimators {
                    for alg in &args.algorithms {
                        let recipe = (bits, est.as_str(), alg.as_str());
                        let (name, add_bits) = cell_name(args, (m, src), recipe);
                        out.push(Planned {
                            model: m,
                            source: src,
                            recipe,
                            name,
                            add_bits,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The planned cells already finished in `cells_dir` (`None` where one is still to run, or
/// its file does not parse), and how many of them predate recorded settings. Refuses a
/// folder whose finished cells were computed with other settings than this run's (reusing
/// them would mix results silently); cells from before settings were recorded are checked
/// on their test-image count only.
fn finished(
    args: &ReproduceArgs,
    plan: &[Planned],
    cells_dir: &Path,
    test_images: usize,
) -> Result<(Vec<Option<Cell>>, usize)> {
    let (mut done, mut legacy, mut clashes) = (Vec::new(), 0, Vec::new());
    for p in plan {
        let old = std::fs::read(cells_dir.join(format!("{}.json", p.name)))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Cell>(&bytes).ok());
        if let Some(old) = &old {
            let want = cell_settings(args, test_images, p.recipe)?;
            match &old.settings {
                Some(have) if *have != want => clashes.push(format!("{}: {have}", p.name)),
                Some(_) => {}
                None if old.fidelity.images == test_images => legacy += 1,
                None => clashes.push(format!("{}: test images {}", p.name, old.fidelity.images)),
            }
        }
        done.push(old);
    }
    if clashes.is_empty() {
        return Ok((done, legacy));
    }
    let shown = clashes.len().min(5);
    Err(Error::Invalid(format!(
        "{} holds {} finished cell(s) computed with other settings than this run's, e.g.\n  {}\n\
         Use another --output, or remove those cells to recompute them",
        cells_dir.display(),
        clashes.len(),
        clashes[..shown].join("\n  ")
    )))
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `synthcal reproduce`.
pub fn run(gpu: &Arc<Gpu>, args: &ReproduceArgs) -> Result<()> {
    let data_dir = args.set.data_dir();
    // Not the output folder's own cells: those are this command's resumable state.
    let mut inputs: Vec<PathBuf> = args.models.iter().map(|m| model_path(m)).collect();
    check_models(inputs.iter().map(|p| p.as_path()))?;
    for src in &args.sources {
        inputs.extend(args.set.inputs(src)?);
    }
    inputs.push(data_dir.clone());
    let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    crate::io::check_output_dir(&args.output, &inputs)?;
    if !data_dir.join("test_batch.bin").exists() {
        return Err(missing("CIFAR-10 (test_batch.bin)", &data_dir));
    }
    let mut test = data::load_cifar10_bin(&data_dir, data::Split::Test)?;
    if let Some(n) = args.limit {
        test = test.subset(&(0..n.min(test.len())).collect::<Vec<_>>())?;
    }
    let cells_dir = args.output.join("cells");
    std::fs::create_dir_all(&cells_dir).map_err(|e| Error::File {
        path: cells_dir.clone(),
        msg: e.to_string(),
    })?;
    let plan = plan(args);
    let (done, legacy) = finished(args, &plan, &cells_dir, test.len())?;
    if legacy > 0 && !args.quiet {
        eprintln!(
            "reusing {legacy} cell(s) written before cells recorded their settings (checked on \
             their test-image count only)"
        );
    }
    let start = std::time::Instant::now();
    let hooks = super::bars::hooks(args.quiet);
    let mut sets: Vec<(String, Dataset)> = Vec::new();
    let mut cells = Vec::new();
    // The model of the cells being computed; loaded only when one of its cells is to run.
    let mut row: Option<Row> = None;
    for (p, reused) in plan.iter().zip(done) {
        if let Some(c) = reused {
            cells.push(c);
            continue;
        }
        let row = match &mut row {
            Some(r) if r.name == p.model => r,
            _ => row.insert(Row::new(p.model, &test)?),
        };
        cells.push(row.compute(gpu, args, p, &mut sets, &hooks, &cells_dir)?);
    }
    for (src, ds) in &sets {
        let grid = args.output.join(format!("samples_{}.png", slug(src)));
        // The first ten of each class; a class with fewer (distilled labels are the model's
        // own predictions) leaves blanks.
        data::sample_grid_png(ds, 1, 10, grid)?;
    }
    write_report(
        &args.output,
        &cells,
        test.len(),
        &gpu.info.name,
        start.elapsed().as_secs_f64(),
    )?;
    println!("report: {}", args.output.join("report.md").display());
    Ok(())
}

/// One model's row of the table and what its cells share: the FP32 logits on the test
/// images and the judge of calibration sets, both made at first need.
struct Row<'a> {
    name: &'a str,
    model: crate::models::Model,
    test: Dataset,
    fp32_logits: Option<Vec<f32>>,
    judge: Option<(crate::graph::exec::Runner, usize, score::Gaussian)>,
    qualities: Vec<(String, Quality)>,
}

impl<'a> Row<'a> {
    fn new(name: &'a str, test: &Dataset) -> Result<Self> {
        let model = crate::models::load_model(&model_path(name), None)?;
        // Labels as this model's class indices.
        let test = test.clone().map_classes(&model.class_names)?;
        Ok(Row {
            name,
            model,
            test,
            fp32_logits: None,
            judge: None,
            qualities: Vec::new(),
        })
    }

    /// Computes one cell and saves it in `cells_dir`.
    fn compute(
        &mut self,
        gpu: &Arc<Gpu>,
        args: &ReproduceArgs,
        p: &Planned,
        sets: &mut Vec<(String, Dataset)>,
        hooks: &crate::progress::Hooks,
        cells_dir: &Path,
    ) -> Result<Cell> {
        let (m, src, (bits, est, alg)) = (self.name, p.source, p.recipe);
        let (model, test) = (&self.model, &self.test);
        let t = std::time::Instant::now();
        if self.fp32_logits.is_none() {
            let fp = Classifier::Fp32(crate::models::load_model(&model_path(m), None)?);
            let r = fp.runner(gpu, false)?;
            self.fp32_logits = Some(logits(&r, fp.norm(), test, 250, &Default::default())?);
        }
        // One set per source, shared by the models; distilled sets are per model.
        let key = if src == "distill" {
            format!("distill_{}", slug(m))
        } else {
            src.to_string()
        };
        if !sets.iter().any(|(s, _)| *s == key) {
            let ds = args.set.load(gpu, src, Some(model), hooks)?;
            sets.push((key.clone(), ds));
        }
        let calib = &sets.iter().find(|(s, _)| *s == key).expect("cached set").1;
        let opts = QuantOptions {
            hooks: hooks.clone(),
            ..recipe(args, bits, est, alg)?
        };
        let q = quantize_with_set(gpu, model, calib, &opts)?;
        let quality = match self.qualities.iter().find(|(k, _)| *k == key) {
            Some((_, q)) => *q,
            None => {
                if self.judge.is_none() {
                    let (r, feat) = score::feature_runner(gpu, model)?;
                    let refg = score::reference(&r, feat, model, test)?;
                    self.judge = Some((r, feat, refg));
                }
                let (r, feat, refg) = self.judge.as_ref().expect("set above");
                let q = score::quality(r, *feat, model, calib, refg)?;
                self.qualities.push((key.clone(), q));
                q
            }
        };
        let l = logits(
            &q.runner(gpu)?,
            q.norm.clone(),
            test,
            250,
            &Default::default(),
        )?;
        let fp = self.fp32_logits.as_ref().expect("computed above");
        let f = fidelity(fp, &l, test.labels(), model.num_classes())?;
        let cell = Cell {
            model: m.to_string(),
            source: src.to_string(),
            algorithm: alg.to_string(),
            bits: match p.add_bits {
                Some(k) => format!("{bits}+add{k}"),
                None => bits.to_string(),
            },
            estimator: est.to_string(),
            calibration: format!(
                "{} ({} images, seed {})",
                calib.source(),
                calib.len(),
                args.set.seed
            ),
            fp32_layers: q.fp32_layers(),
            fidelity: f,
            quality: Some(quality),
            seconds: t.elapsed().as_secs_f64(),
            settings: Some(cell_settings(args, test.len(), p.recipe)?),
        };
        let j = serde_json::to_vec_pretty(&cell).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::io::write_atomic(cells_dir.join(format!("{}.json", p.name)), &j)?;
        if !args.quiet {
            eprintln!(
                "{m} / {src} / {alg} / {est} / {bits}: FP32 {:.2}%  INT8 {:.2}%  drop {:.2} pp  RMSE {:.3}",
                cell.fidelity.fp32_top1,
                cell.fidelity.int8_top1,
                cell.fidelity.drop,
                cell.fidelity.logit_rmse
            );
        }
        Ok(cell)
    }
}

/// The add inputs' bits of a cell where they differ from its activations' (never in the
/// study's recipe, whose adds run in f32).
fn cell_add_bits(args: &ReproduceArgs, bits: Bits, est: &str) -> Option<u32> {
    args.add_bits
        .filter(|&k| est != "pot" && k != bits.activations)
}

/// The quantization options of one cell: `pot` is the study's recipe, so that its table
/// keeps its numbers; another estimator runs `quantize`'s defaults with it.
fn recipe(args: &ReproduceArgs, bits: Bits, est: &str, alg: &str) -> Result<QuantOptions> {
    use crate::quant::RangeEstimator as E;
    let algorithm = match alg {
        "default" => Algorithm::Default,
        "accuracy-aware" => Algorithm::AccuracyAware,
        "adaround" => Algorithm::AdaRound,
        "brecq" => Algorithm::Brecq,
        other => {
            return Err(Error::Invalid(format!(
                "unknown algorithm `{other}` (default, accuracy-aware, adaround, brecq)"
            )))
        }
    };
    let base = match est {
        "pot" => QuantOptions::pot(),
        e => QuantOptions {
            estimator: match e {
                "min-max" => E::MinMax,
                "mse" => E::Mse,
                "percentile" => E::Percentile,
                "kl" => E::Kl,
                "quantile" => E::Quantile,
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown estimator `{other}` (pot, min-max, mse, percentile, kl, quantile)"
                    )))
                }
            },
            ..QuantOptions::default()
        },
    };
    let mut adaround = match algorithm {
        Algorithm::Brecq => crate::quant::AdaRoundOptions::brecq(),
        _ => base.adaround,
    };
    if let Some(n) = args.iters {
        adaround.iters = n;
    }
    Ok(QuantOptions {
        algorithm,
        max_drop: args.max_drop,
        wbits: bits.weights,
        abits: bits.activations,
        ends_at_8bit: args.first_last_8bit && bits.weights.min(bits.activations) < 8,
        add_bits: cell_add_bits(args, bits, est),
        adaround,
        ..base
    })
}

/// report.md (Table 1 layout plus fidelity), report.json, report.csv and the drops chart
/// (drops.png and drops.svg).
pub fn write_report(
    dir: &Path,
    cells: &[Cell],
    images: usize,
    adapter: &str,
    seconds: f64,
) -> Result<()> {
    let mut md = format!(
        "# synthcal reproduction\n\nTop-1 on {images} CIFAR-10 test images; adapter {adapter}; this run {seconds:.0} s \
         (cells reused from an earlier run take no time).\n\n\
         | model | source | algorithm | bits | estimator | FP32 % | INT8 % | drop pp | agreement % | flips -/+ | McNemar p | logit RMSE | KL | FP32 layers | cls score | cls FID | class match % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut csv = String::from("model,source,algorithm,bits,estimator,fp32_top1,int8_top1,drop,agreement,fp32_right_int8_wrong,fp32_wrong_int8_right,mcnemar_p,logit_rmse,kl,classifier_score,classifier_fid,class_match\n");
    for c in cells {
        let f = &c.fidelity;
        let (qs, qf, qm) = match &c.quality {
            Some(q) => (
                format!("{:.2}", q.classifier_score),
                format!("{:.2}", q.classifier_fid),
                format!("{:.1}", q.agreement),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        md += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {}/{} | {:.3} | {:.4} | {:.5} | {} | {qs} | {qf} | {qm} |\n",
            c.model, c.source, c.algorithm, c.bits, c.estimator, f.fp32_top1, f.int8_top1, f.drop, f.agreement,
            f.fp32_right_int8_wrong, f.fp32_wrong_int8_right, f.mcnemar_p, f.logit_rmse, f.kl,
            if c.fp32_layers.is_empty() { "-".into() } else { c.fp32_layers.join(" ") }
        );
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{qs},{qf},{qm}\n",
            c.model,
            c.source,
            c.algorithm,
            c.bits,
            c.estimator,
            f.fp32_top1,
            f.int8_top1,
            f.drop,
            f.agreement,
            f.fp32_right_int8_wrong,
            f.fp32_wrong_int8_right,
            f.mcnemar_p,
            f.logit_rmse,
            f.kl
        );
    }
    md +=
        "\nflips -/+: test images FP32 gets right and INT8 wrong / the reverse. McNemar p > 0.05: \
           the drop is within flip noise. Logit RMSE and KL measure how far INT8 moved from FP32 \
           even where predictions held; compare calibration sources with them. The last three \
           columns judge the calibration set itself with the row's FP32 model: classifier score \
           (the Inception Score formula with this classifier; 10 = confident and balanced), \
           classifier FID (Frechet distance of its penultimate features to the test set's; 0 = \
           same statistics) and class match (images predicted as their intended class; \
           noise and fractal labels are arbitrary, distilled ones are the model's own).\n\n\
           ![drops](drops.png)\n";
    crate::io::write_atomic(dir.join("report.md"), md.as_bytes())?;
    crate::io::write_atomic(dir.join("report.csv"), csv.as_bytes())?;
    let j = serde_json::to_vec_pretty(cells).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::io::write_atomic(dir.join("report.json"), &j)?;
    let chart = drops(cells);
    chart.write(&dir.join("drops.svg"))?;
    chart.write(&dir.join("drops.png"))
}

/// The `reproduce` drops chart: one group per model, one series per calibration source (and
/// algorithm, when the cells have more than one), bar = the top-1 drop in percentage points.
pub fn drops(cells: &[Cell]) -> BarChart {
    fn unique<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for s in it {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
    let models = unique(cells.iter().map(|c| c.model.as_str()));
    let algorithms = unique(cells.iter().map(|c| c.algorithm.as_str()));
    let estimators = unique(cells.iter().map(|c| c.estimator.as_str()));
    let bits = unique(cells.iter().map(|c| c.bits.as_str()));
    // The legend names only the dimensions that vary.
    let name = |c: &Cell| {
        let mut n = c.source.clone();
        for (varies, part) in [
            (algorithms.len() > 1, &c.algorithm),
            (estimators.len() > 1, &c.estimator),
            (bits.len() > 1, &c.bits),
        ] {
            if varies {
                n += &format!(" / {part}");
            }
        }
        n
    };
    let mut names: Vec<String> = Vec::new();
    for c in cells {
        if !names.contains(&name(c)) {
            names.push(name(c));
        }
    }
    let mut chart = BarChart::new(
        &match algorithms[..] {
            [a] => format!("Top-1 drop of INT8 against FP32 ({a} quantization)"),
            _ => "Top-1 drop of INT8 against FP32".into(),
        },
        "model",
        "drop (pp, FP32 - INT8; below 0: INT8 better)",
        models.iter().map(|m| m.to_string()).collect(),
    );
    for s in names {
        let values = models
            .iter()
            .map(|m| {
                let cell = cells.iter().rev().find(|c| c.model == *m && name(c) == s);
                cell.map(|c| c.fidelity.drop)
            })
            .collect();
        chart = chart.series(&s, values);
    }
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(model: &str, source: &str, algorithm: &str, drop: f64) -> Cell {
        Cell {
            model: model.into(),
            source: source.into(),
            algorithm: algorithm.into(),
            bits: w8a8(),
            estimator: pot(),
            calibration: String::new(),
            fp32_layers: Vec::new(),
            fidelity: crate::eval::fidelity::example(drop),
            quality: None,
            seconds: 1.0,
            settings: None,
        }
    }

    /// A folder's finished cells are reused only with this run's settings: one computed on
    /// other test images, with another seed or other BRECQ steps, or with first/last layers
    /// at 8 bits when this run has not, is refused before any work (it was reused silently,
    /// mixing results); a cell from before settings were recorded is checked on its images.
    #[test]
    fn cells_with_other_settings_are_refused_not_reused() {
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            args: ReproduceArgs,
        }
        let parse = |extra: &[&str]| {
            let base = [
                "reproduce",
                "--models",
                "m",
                "--sources",
                "gan",
                "--bits",
                "w4a4",
                "--estimators",
                "mse",
                "--algorithms",
                "brecq",
                "--per-class",
                "100",
            ];
            let all: Vec<&str> = base.iter().chain(extra).copied().collect();
            <Cmd as clap::Parser>::try_parse_from(all).unwrap().args
        };
        let dir = std::env::temp_dir().join(format!("synthcal-cells-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = parse(&["--iters", "1000"]);
        let w4a4 = parse_bits("w4a4").unwrap();
        let key = (w4a4, "mse", "brecq");
        let (name, _) = cell_name(&args, ("m", "gan"), key);
        let mut c = cell("m", "gan", "brecq", 1.0);
        let images = c.fidelity.images;
        let write = |c: &Cell| {
            let bytes = serde_json::to_vec(c).unwrap();
            std::fs::write(dir.join(format!("{name}.json")), bytes).unwrap();
        };
        c.settings = Some(cell_settings(&args, images, key).unwrap());
        write(&c);
        // Reused cells, and how many predate recorded settings.
        let check = |args: &ReproduceArgs, images| {
            let (done, legacy) = finished(args, &plan(args), &dir, images)?;
            Ok::<_, Error>((done.iter().flatten().count(), legacy))
        };
        assert_eq!(check(&args, images).unwrap(), (1, 0));
        for other in [
            parse(&["--iters", "500"]),
            parse(&["--iters", "1000", "--seed", "1"]),
            parse(&["--iters", "1000", "--first-last-8bit"]),
        ] {
            let e = check(&other, images).unwrap_err().to_string();
            assert!(e.contains(&name) && e.contains("iters 1000"), "{e}");
        }
        assert!(check(&args, images + 1).is_err());
        c.settings = None;
        write(&c);
        assert_eq!(check(&args, images).unwrap(), (1, 1));
        let e = check(&args, images + 1).unwrap_err().to_string();
        assert!(e.contains(&format!("test images {images}")), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Models are the groups and sources the legend, in report order; a cell that was not
    /// run is a missing bar, not a zero.
    #[test]
    fn drops_chart_groups_models_and_names_sources() {
        let cells = [
            cell("resnet20", "real", "default", 0.4),
            cell("resnet20", "gan", "default", 1.5),
            cell("resnet56", "real", "default", -0.2),
        ];
        let c = drops(&cells);
        assert_eq!(c.groups, ["resnet20", "resnet56"]);
        assert_eq!(c.series[0], ("real".into(), vec![Some(0.4), Some(-0.2)]));
        assert_eq!(c.series[1], ("gan".into(), vec![Some(1.5), None]));
        assert!(c.title.contains("default"), "{}", c.title);
        let two = [
            cell("resnet20", "real", "default", 0.4),
            cell("resnet20", "real", "accuracy-aware", 0.1),
        ];
        let names: Vec<_> = drops(&two).series.into_iter().map(|s| s.0).collect();
        assert_eq!(names, ["real / default", "real / accuracy-aware"]);
        let mut low = cell("resnet20", "real", "default", 9.0);
        low.bits = "w4a4".into();
        let names: Vec<_> = drops(&[two[0].clone(), low])
            .series
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(names, ["real / w8a8", "real / w4a4"]);
        let texts = crate::eval::chart::svg_texts(&drops(&cells).render_svg().unwrap());
        assert!(texts.iter().any(|t| t == "-0.20"), "{texts:?}");
    }

    #[test]
    fn bit_widths_parse_or_say_what_is_accepted() {
        let b = |w, a| Bits {
            weights: w,
            activations: a,
        };
        assert_eq!(parse_bits("8"), Ok(b(8, 8)));
        assert_eq!(parse_bits("w4a8"), Ok(b(4, 8)));
        assert_eq!(parse_bits("w2a4").unwrap().to_string(), "w2a4");
        for bad in ["4", "w4", "w9a8", "w4a1", "a4w4", "w4a4x", ""] {
            let e = parse_bits(bad).unwrap_err();
            assert!(e.contains("wNaM") && e.contains(bad), "{e}");
        }
    }

    /// `pot` is the study's recipe whatever the bits; another estimator is `quantize`'s
    /// defaults with it; first/last at 8 bits only applies below 8 bits.
    #[test]
    fn recipes_keep_the_study_and_follow_the_dimensions() {
        use crate::quant::RangeEstimator as E;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            args: ReproduceArgs,
        }
        let cmd = [
            "reproduce",
            "--first-last-8bit",
            "--iters",
            "7",
            "--add-bits",
            "8",
        ];
        let args = <Cmd as clap::Parser>::try_parse_from(cmd).unwrap().args;
        let w88 = parse_bits("8").unwrap();
        let study = recipe(&args, w88, "pot", "default").unwrap();
        assert_eq!(study.estimator, E::Pot);
        assert_eq!(study.int8_ops, QuantOptions::pot().int8_ops);
        assert_eq!(study.add_bits, None);
        let w8 = recipe(&args, w88, "mse", "default").unwrap();
        assert_eq!(w8.add_bits, None, "8 is already the activations' width");
        assert!(!study.ends_at_8bit);
        let low = recipe(&args, parse_bits("w4a4").unwrap(), "mse", "adaround").unwrap();
        assert_eq!((low.wbits, low.abits, low.estimator), (4, 4, E::Mse));
        assert_eq!(low.algorithm, Algorithm::AdaRound);
        assert_eq!(low.adaround.iters, 7);
        assert_eq!(low.add_bits, Some(8));
        let b = recipe(&args, parse_bits("w4a4").unwrap(), "mse", "brecq").unwrap();
        assert_eq!((b.algorithm, b.adaround.iters), (Algorithm::Brecq, 7));
        assert!(low.ends_at_8bit);
        assert_eq!(low.int8_ops, QuantOptions::default().int8_ops);
    }
}
