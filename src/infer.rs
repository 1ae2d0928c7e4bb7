//! Running a classifier on images: batched logits on the GPU, and what to read from them.

use crate::data::{Dataset, Images};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::models::{Model, Normalization};
use crate::progress::Hooks;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Images per GPU submit in [`Predictor::predict`].
pub const PREDICT_BATCH: usize = 250;

/// A model resident on the GPU, made by [`Model::predictor`] or
/// [`crate::QuantizedModel::predictor`]: its weights are uploaded (and its kernels compiled)
/// once, so repeated predictions cost only the images' work.
pub struct Predictor {
    runner: Runner,
    name: String,
    norm: Normalization,
    input_shape: [usize; 3],
    class_names: Vec<String>,
}

impl Predictor {
    /// Wraps a runner with what predictions need to know of its model.
    pub(crate) fn new(
        runner: Runner,
        name: &str,
        norm: Normalization,
        input_shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Predictor {
        Predictor {
            runner,
            name: name.to_string(),
            norm,
            input_shape,
            class_names,
        }
    }

    /// The logits of `images` (which must have the model's input channels and size).
    pub fn predict(&self, images: &Images) -> Result<Logits> {
        check_input(images, self.input_shape, &self.name)?;
        let hooks = Hooks::default();
        let norm = self.norm.clone();
        let values = image_logits(&self.runner, norm, images, PREDICT_BATCH, &hooks)?;
        Logits::new(values, self.class_names.clone())
    }
}

/// A classifier's outputs for N images: one row of logits per image, one column per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    values: Vec<f32>,
    class_names: Vec<String>,
}

impl Logits {
    /// Rows of `class_names.len()` values, one per image.
    pub fn new(values: Vec<f32>, class_names: Vec<String>) -> Result<Logits> {
        let k = class_names.len();
        if k == 0 || !values.len().is_multiple_of(k) {
            return Err(Error::Invalid(format!(
                "{} logits are not rows of {k} classes",
                values.len()
            )));
        }
        Ok(Logits {
            values,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.values.len() / self.class_names.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The class names, in column order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// All values, row-major `[N, classes]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The logits of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        let k = self.class_names.len();
        &self.values[i * k..(i + 1) * k]
    }

    /// The predicted class (index) of every image.
    pub fn argmax(&self) -> Vec<usize> {
        argmax_rows(&self.values, self.class_names.len())
    }

    /// The `k` most likely classes of image `i`, best first, as (class name, probability)
    /// with the probabilities from a softmax of the row (all of them where `k` exceeds the
    /// classes). Panics if `i >= len()`, as [`Logits::row`] does.
    ///
    /// ```
    /// let names = vec!["cat".to_string(), "dog".to_string(), "ship".to_string()];
    /// let logits = synthcal::Logits::new(vec![0.5, 2.0, -1.0], names)?;
    /// let top = logits.top_k(0, 2);
    /// assert_eq!((top[0].0, top[1].0), ("dog", "cat"));
    /// assert!(top[0].1 > 0.7 && top[0].1 < 0.8); // softmax: e^2 / (e^0.5 + e^2 + e^-1)
    /// # Ok::<(), synthcal::Error>(())
    /// ```
    pub fn top_k(&self, i: usize, k: usize) -> Vec<(&str, f32)> {
        let p = softmax(self.row(i));
        let mut order: Vec<usize> = (0..p.len()).collect();
        // Ties keep the lower class index first, as argmax does.
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|c| (self.class_names[c].as_str(), p[c]))
            .collect()
    }
}

/// Probabilities from logits (max-subtracted, so large logits do not overflow).
fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = row.iter().map(|&v| ((v - m) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&v| (v / sum) as f32).collect()
}

/// Refuses images of another channel count or size than `shape` (`[channels, height,
/// width]`) a model takes.
pub fn check_input(images: &Images, [c, h, w]: [usize; 3], model: &str) -> Result<()> {
    if images.channels() != c {
        return Err(Error::Invalid(format!(
            "{model} takes {c}-channel images, these have {} channels{}",
            images.channels(),
            if c == 1 && images.channels() == 3 {
                ": convert them to gray first (Images::to_channels)"
            } else {
                ""
            }
        )));
    }
    check_input_size(images, [h, w], model)
}

/// Refuses images of another size than `size` (`[height, width]`) a model takes.
pub fn check_input_size(images: &Images, size: [usize; 2], model: &str) -> Result<()> {
    if [images.height(), images.width()] == size {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{model} takes {}x{} images (height x width), these are {}x{}: resize them first",
        size[0],
        size[1],
        images.height(),
        images.width()
    )))
}

impl Model {
    /// Loads a classifier: a `.safetensors` file (from [`Model::save`] or `synthcal
    /// import`), a PyTorch checkpoint (`.th` legacy or `.pt` zip; only tensor data is
    /// read, never code) or an ONNX file (its own graph). The architecture of a safetensors or
    /// PyTorch file comes from its metadata, else is detected from the tensors.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        crate::models::load_model(path.as_ref(), None)
    }

    /// [`Model::load`] as the zoo architecture `arch` (see [`crate::models::arch_names`]).
    pub fn load_as(path: impl AsRef<Path>, arch: &str) -> Result<Model> {
        crate::models::load_model(path.as_ref(), Some(arch))
    }

    /// The input size, `[height, width]`.
    pub fn input_size(&self) -> [usize; 2] {
        self.arch.input_size
    }

    /// The input image shape, `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        let [h, w] = self.arch.input_size;
        [self.arch.input_channels, h, w]
    }

    /// The logits of `images` (BatchNorm folded into the convolutions). This uploads the
    /// weights each call: for repeated predictions keep a [`Model::predictor`].
    pub fn predict(&self, gpu: &Arc<Gpu>, images: &Images) -> Result<Logits> {
        check_input(images, self.input_shape(), &self.arch.name)?;
        self.predictor(gpu)?.predict(images)
    }

    /// The model on the GPU, ready for any number of [`Predictor::predict`] calls.
    pub fn predictor(&self, gpu: &Arc<Gpu>) -> Result<Predictor> {
        Ok(Predictor::new(
            fp32_runner(gpu, self, false)?,
            &self.arch.name,
            self.arch.norm.clone(),
            self.input_shape(),
            self.class_names.clone(),
        ))
    }
}

/// Logits for every image of `ds` (row-major [N, classes]), `batch` images per submit.
pub fn logits(
    runner: &Runner,
    norm: Normalization,
    ds: &Dataset,
    batch: usize,
    hooks: &Hooks,
) -> Result<Vec<f32>> {
    image_logits(runner, norm, ds.images(), batch, hooks)
}

/// [`logits`] of unlabelled images.
pub fn image_logits(
    runner: &Runner,
    norm: Normalization,
    images: &Images,
    batch: usize,
    hooks: &Hooks,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut task = hooks.task("logits", images.len() as u64);
    let hw = [images.height(), images.width()];
    for_each_image_batch(images, norm, batch, |r, x| {
        out.extend(runner.logits(&x, r.len(), hw)?);
        task.inc(r.len() as u64)
    })?;
    task.complete();
    Ok(out)
}

/// Calls `f(range, images)` on `ds` in order, `batch` normalized images at a time.
pub fn for_each_batch(
    ds: &Dataset,
    norm: Normalization,
    batch: usize,
    f: impl FnMut(Range<usize>, Vec<f32>) -> Result<()>,
) -> Result<()> {
    for_each_image_batch(ds.images(), norm, batch, f)
}

/// [`for_each_batch`] over unlabelled images.
pub fn for_each_image_batch(
    images: &Images,
    norm: Normalization,
    batch: usize,
    mut f: impl FnMut(Range<usize>, Vec<f32>) -> Result<()>,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::Invalid("a batch must hold at least 1 image".into()));
    }
    crate::models::classes::check_norm_channels(&norm, images.channels())
        .map_err(|e| Error::Invalid(format!("{e} (of the images)")))?;
    let mut start = 0;
    while start < images.len() {
        let end = (start + batch).min(images.len());
        f(
            start..end,
            images.to_f32_normalized(start..end, &norm.mean, &norm.std),
        )?;
        start = end;
    }
    Ok(())
}

/// Refuses a dataset whose class list is not `classes` (a model's, in output order): its
/// labels would be read against the wrong logits. Map it first with [`Dataset::map_classes`].
pub fn check_classes(ds: &Dataset, classes: &[String]) -> Result<()> {
    if ds.class_names() == classes {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{}: its classes ({}) are not the model's ({})",
        ds.source(),
        ds.class_names().join(", "),
        classes.join(", ")
    )))
}

/// The index of each row's largest logit; `classes` is the row width, the model's output
/// count (never a dataset's class count). Rows of no width have no index: an empty result.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    if classes == 0 {
        return Vec::new();
    }
    logits.chunks(classes).map(argmax).collect()
}

/// The index of the first largest value in `row` (NaN never wins; 0 for an empty row).
pub fn argmax(row: &[f32]) -> usize {
    let first_largest = |best: (usize, f32), (i, &v): (usize, &f32)| {
        if v > best.1 {
            (i, v)
        } else {
            best
        }
    };
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), first_largest)
        .0
}

/// Checks that `len` logits are one row of `classes` per image, for `rows` images; `what`
/// names them in the error.
pub(crate) fn check_logits(what: &str, len: usize, rows: usize, classes: usize) -> Result<()> {
    if classes == 0 || rows.checked_mul(classes) != Some(len) {
        return Err(Error::Invalid(format!(
            "{what}: {len} logits for {rows} images of {classes} classes"
        )));
    }
    Ok(())
}

/// The GPU runner of an FP32 model (BatchNorm folded unless `no_fold`).
pub fn fp32_runner(gpu: &Arc<Gpu>, model: &Model, no_fold: bool) -> Result<Runner> {
    let mut params = model.params.clone();
    let graph = if no_fold {
        model.arch.graph.clone()
    } else {
        crate::graph::passes::optimize_for_inference(&model.arch.graph, &mut params)?
    };
    Runner::new(gpu.clone(), graph, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_by_probability_and_argmax_agrees() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let l = Logits::new(vec![1.0, 3.0, 2.0, 0.0, 0.0, 5.0], names.clone()).unwrap();
        assert_eq!((l.len(), l.argmax()), (2, vec![1, 2]));
        let top = l.top_k(0, 2);
        assert_eq!((top[0].0, top[1].0), ("b", "c"));
        // softmax([1, 3, 2]): e^3 / (e + e^3 + e^2).
        let e = std::f64::consts::E;
        let want = e.powi(3) / (e + e.powi(3) + e.powi(2));
        assert!((top[0].1 as f64 - want).abs() < 1e-6, "{top:?}");
        assert_eq!(l.top_k(1, 10).len(), 3);
        assert!(Logits::new(vec![0.0; 4], names).is_err());
        assert_eq!(argmax_rows(&[1.0, 3.0, 2.0, 0.0], 2), vec![1, 0]);
        assert!(argmax_rows(&[1.0, 2.0], 0).is_empty());
        // The first of equal largest values; NaN never wins; an empty row gives 0.
        assert_eq!(argmax(&[2.0, 5.0, 5.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn logits_are_whole_rows_for_every_image() {
        assert!(check_logits("x", 6, 2, 3).is_ok());
        let e = check_logits("x", 5, 2, 3).unwrap_err().to_string();
        assert!(e.contains("x: 5 logits for 2 images of 3 classes"), "{e}");
        assert!(check_logits("x", 0, 0, 0).is_err());
        assert!(check_logits("x", 0, usize::MAX, 2).is_err());
    }

    #[test]
    fn a_model_refuses_images_of_another_size() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let a = crate::models::arch("resnet20").unwrap();
        let model = Model::new(a.clone(), crate::models::random_params(&a, 1)).unwrap();
        let big = Images::new(vec![0; 3 * 40 * 32], 40, 32).unwrap();
        let e = model.predict(&gpu, &big).unwrap_err().to_string();
        assert!(e.contains("32x32") && e.contains("40x32"), "{e}");
        let ok = Images::new(vec![7; 2 * 3072], 32, 32).unwrap();
        let l = model.predict(&gpu, &ok).unwrap();
        assert_eq!((l.len(), l.class_names().len()), (2, 10));
        let p = model.predictor(&gpu).unwrap();
        assert_eq!(p.predict(&ok).unwrap(), l);
        let e = p.predict(&big).unwrap_err().to_string();
        assert!(e.contains("32x32") && e.contains("40x32"), "{e}");
    }
}
