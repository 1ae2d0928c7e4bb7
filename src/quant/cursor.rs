//! The calibration batches as one model holds them at a cut point of its graph
//! (`graph::blocks`). Learned rounding (AdaRound, BRECQ) gets each layer's or block's data by
//! running the model on from the last cut point instead of from the images, so the work per
//! layer stays constant instead of growing with its depth. `Runner::forward_from` runs the
//! same kernels on the same data as a whole forward, so the data are the same bits.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Stream, Tensor};
use crate::graph::exec::{Held, Runner};
use crate::graph::{Graph, Op, ValueId};
use crate::models::Model;
use crate::progress::Cancel;

/// Per batch, one model's value at cut point `at`.
#[derive(Clone)]
pub(super) struct Batches {
    at: ValueId,
    batches: Vec<Held>,
}

impl Batches {
    /// The normalized calibration images (the graph input), `batch` per tensor.
    pub fn images(
        gpu: &Gpu,
        graph: &Graph,
        calib: &Dataset,
        model: &Model,
        batch: usize,
    ) -> Result<Batches> {
        let at = graph
            .nodes
            .iter()
            .position(|n| matches!(n.op, Op::Input))
            .ok_or_else(|| Error::Invalid("the graph has no input".into()))?;
        let norm = &model.arch.norm;
        let (c, h, w) = (calib.channels(), calib.height(), calib.width());
        let mut batches = Vec::new();
        for start in (0..calib.len()).step_by(batch.max(1)) {
            let end = (start + batch).min(calib.len());
            let px = calib
                .images()
                .to_f32_normalized(start..end, &norm.mean, &norm.std);
            batches.push(Held::F32(gpu.upload_f32(&[end - start, c, h, w], &px)?));
        }
        if batches.is_empty() {
            return Err(Error::Invalid("the calibration set is empty".into()));
        }
        Ok(Batches { at, batches })
    }

    /// The cut point the values stand at.
    pub fn at(&self) -> ValueId {
        self.at
    }

    /// The values, per batch.
    #[cfg(test)]
    pub fn held(&self) -> &[Held] {
        &self.batches
    }

    /// Moves the values on to cut point `to` with `runner`. When `runner` no longer holds the
    /// current value in the format it is held in (learning changed that format), or `to` is
    /// not downstream of it, they are first recomputed from `images`; returns whether they
    /// were.
    pub fn advance(
        &mut self,
        runner: &Runner,
        to: ValueId,
        images: &Batches,
        cancel: &Cancel,
    ) -> Result<bool> {
        let fmt = runner.int8_format(self.at);
        let stale = self.batches.iter().any(|h| match h {
            Held::F32(_) => fmt.is_some(),
            Held::Int8(x) => fmt != Some(x.fmt),
        });
        let restart = stale || runner.graph.needed_from(self.at, to).is_err();
        if restart {
            *self = images.clone();
        }
        let gpu = &runner.gpu;
        for h in &mut self.batches {
            cancel.check()?;
            let mut s = gpu.stream();
            *h = runner.forward_from(&mut s, self.at, h, to)?;
            s.submit();
            gpu.wait()?;
        }
        self.at = to;
        Ok(restart)
    }

    /// Value `to` in f32 over all samples, one batch after the other, from running `runner`
    /// on from the held values; `map` may transform each batch's value first.
    pub fn collect(
        &self,
        runner: &Runner,
        to: ValueId,
        cancel: &Cancel,
        map: &mut dyn FnMut(&mut Stream, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let gpu = &runner.gpu;
        let total = self.batches.iter().map(|h| held_shape(h)[0]).sum();
        let (mut out, mut at) = (None, 0);
        for h in &self.batches {
            cancel.check()?;
            let mut s = gpu.stream();
            let y = runner.forward_from(&mut s, self.at, h, to)?;
            let y = runner.held_f32(&mut s, to, &y)?;
            let y = map(&mut s, y)?;
            append(&mut s, &mut out, &y, total, at)?;
            s.submit();
            gpu.wait()?;
            at += held_shape(h)[0];
        }
        out.ok_or_else(|| Error::Invalid("the calibration set is empty".into()))
    }
}

fn held_shape(h: &Held) -> &[usize] {
    match h {
        Held::F32(t) => t.shape(),
        Held::Int8(q) => &q.shape,
    }
}

/// Appends `src` (`[n, ...]`) to `dst` (`[N, ...]`) at sample `at`.
fn append(
    s: &mut Stream,
    dst: &mut Option<Tensor>,
    src: &Tensor,
    total: usize,
    at: usize,
) -> Result<()> {
    let n = src.shape()[0];
    let per = src.numel() / n;
    if dst.is_none() {
        let mut shape = src.shape().to_vec();
        shape[0] = total;
        *dst = Some(s.gpu().alloc("cursor", &shape, DType::F32)?);
    }
    let d = dst.as_ref().expect("allocated above");
    s.copy(src, 0, d, (at * per * 4) as u64, (n * per * 4) as u64);
    Ok(())
}
