//! Per-layer timing of a `Runner`: where a forward pass spends its time, node by node.
//! GPU timestamps between the nodes of one submit where the device offers them; otherwise
//! each node is submitted and waited for on its own (wall clock, which adds a submit round
//! trip to every node and is reported as such).

use super::exec::Runner;
use super::{Op, ValueId};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use std::time::Instant;

/// How the layer times were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GPU timestamps written between nodes, the whole pass in one submit.
    GpuTimestamps,
    /// Host clock around a submit + wait per node (includes each node's recording and a
    /// submit round trip).
    WallClock,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::GpuTimestamps => "GPU timestamps",
            Method::WallClock => "wall clock, one submit + wait per layer",
        })
    }
}

/// One node that dispatches GPU work.
#[derive(Clone, Debug)]
pub struct LayerTime {
    /// The node's index in the graph.
    pub node: ValueId,
    /// The node's name (PyTorch module path).
    pub name: String,
    /// Op kind (`conv`, `linear int8`, `add`, ...).
    pub op: &'static str,
    /// Median time over the repetitions, in milliseconds.
    pub ms: f64,
    /// Arithmetic operations per pass: 2 x multiply-adds for conv/linear (integer ops for
    /// INT8 layers), 0 for every other op (not counted).
    pub ops: f64,
}

/// A forward pass broken down by node.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Dispatching nodes in graph order.
    pub layers: Vec<LayerTime>,
    /// How the times were taken.
    pub method: Method,
    /// Images per pass.
    pub batch: usize,
}

impl Profile {
    /// Sum of the layer times (ms per pass).
    pub fn total_ms(&self) -> f64 {
        self.layers.iter().map(|l| l.ms).sum()
    }

    /// Sum of the layers' operation counts.
    pub fn total_ops(&self) -> f64 {
        self.layers.iter().map(|l| l.ops).sum()
    }

    /// A layer's share of the total time, in percent.
    pub fn share(&self, l: &LayerTime) -> f64 {
        let t = self.total_ms();
        if t > 0.0 {
            100.0 * l.ms / t
        } else {
            0.0
        }
    }
}

/// Operations of a conv or linear layer: 2 x multiply-adds, each output element summing over
/// `weight[1..]` (`[co, ci/groups, kh, kw]` for conv, `[out, in]` for linear).
pub fn layer_ops(weight: &[usize], out: &[usize]) -> f64 {
    let per_output: usize = weight.iter().skip(1).product();
    2.0 * (out.iter().product::<usize>() * per_output) as f64
}

/// Short op name for the table.
fn op_kind(op: &Op, residual: bool, int8: bool) -> &'static str {
    match (op, residual, int8) {
        (Op::Conv2d { .. }, true, true) => "conv+add int8",
        (Op::Conv2d { .. }, _, true) => "conv int8",
        (Op::Linear { .. }, _, true) => "linear int8",
        (Op::Conv2d { .. }, true, _) => "conv+add",
        (Op::Conv2d { .. }, false, _) => "conv",
        (Op::Linear { .. }, ..) => "linear",
        (Op::Input, ..) => "input",
        (Op::BatchNorm { .. }, ..) => "batchnorm",
        (Op::Act(_), ..) => "act",
        (Op::Add { .. }, ..) => "add",
        (Op::ShortcutA { .. }, ..) => "shortcut",
        (Op::Concat, ..) => "concat",
        (Op::SliceChannels { .. }, ..) => "slice",
        (Op::ChannelShuffle { .. }, ..) => "shuffle",
        (Op::MaxPool { .. }, ..) => "maxpool",
        (Op::GlobalAvgPool, ..) => "avgpool",
        (Op::Flatten, ..) => "flatten",
        (Op::Softmax, ..) => "softmax",
        (Op::Lrn { .. }, ..) => "lrn",
        (Op::AvgPool { .. }, ..) => "avgpool",
        (Op::Pad { .. }, ..) => "pad",
    }
}

/// One timed pass: per node, ms, whether it dispatched, and its output shape.
struct Pass {
    ms: Vec<f64>,
    dispatched: Vec<bool>,
    shapes: Vec<Vec<usize>>,
}

impl Pass {
    fn new(n: usize) -> Pass {
        Pass {
            ms: vec![0.0; n],
            dispatched: vec![false; n],
            shapes: vec![Vec::new(); n],
        }
    }
}

/// Queries in one wgpu query set.
const MAX_QUERIES: usize = 4096;

impl Runner {
    /// Times each node of the forward pass on `x` (`[n, C, hw]`, normalized), median over
    /// `reps` passes after one warm-up; GPU timestamps where the device has them.
    pub fn profile(&self, x: &[f32], n: usize, hw: [usize; 2], reps: usize) -> Result<Profile> {
        let method = if self.gpu.has_timestamps() && self.graph.nodes.len() < MAX_QUERIES {
            Method::GpuTimestamps
        } else {
            Method::WallClock
        };
        self.profile_with(x, n, hw, reps, method)
    }

    /// [`Runner::profile`] with the method chosen by the caller.
    pub fn profile_with(
        &self,
        x: &[f32],
        n: usize,
        hw: [usize; 2],
        reps: usize,
        method: Method,
    ) -> Result<Profile> {
        if method == Method::GpuTimestamps && !self.gpu.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries between passes",
                self.gpu.info.name
            )));
        }
        let c = super::exec::channels_of(x.len(), n, hw)?;
        let input = self.gpu.upload_f32(&[n, c, hw[0], hw[1]], x)?;
        let mut passes = Vec::new();
        for rep in 0..=reps.max(1) {
            let pass = match method {
                Method::GpuTimestamps => self.pass_timestamps(&input)?,
                Method::WallClock => self.pass_wall_clock(&input)?,
            };
            // The first pass compiles pipelines and fills the buffer pool.
            if rep > 0 {
                passes.push(pass);
            }
        }
        let last = &passes[passes.len() - 1];
        let mut layers = Vec::new();
        for (i, node) in self.graph.nodes.iter().enumerate() {
            if !last.dispatched[i] {
                continue;
            }
            let mut times: Vec<f64> = passes.iter().map(|p| p.ms[i]).collect();
            times.sort_by(f64::total_cmp);
            let ops = self
                .layer_weight_shape(i)
                .map_or(0.0, |w| layer_ops(&w, &last.shapes[i]));
            layers.push(LayerTime {
                node: i,
                name: node.name.clone(),
                op: op_kind(
                    &node.op,
                    node.inputs.len() > 1 || self.fused_add(i).is_some_and(|j| !last.dispatched[j]),
                    self.is_quantized(i),
                ),
                ms: times[times.len() / 2],
                ops,
            });
        }
        Ok(Profile {
            layers,
            method,
            batch: n,
        })
    }

    /// The median wall-clock milliseconds of `reps` whole passes on `x` (one submit each, read
    /// back), after a warm-up: a latency that one pass slowed by the rest of the machine does not
    /// move, as it moves a mean.
    pub fn median_pass_ms(&self, x: &[f32], n: usize, hw: [usize; 2], reps: usize) -> Result<f64> {
        self.logits(x, n, hw)?;
        let mut ms = (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                self.logits(x, n, hw)?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<Vec<f64>>>()?;
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    }

    /// Images per second of whole passes on `x` (one submit each, read back), after a warm-up.
    pub fn images_per_s(&self, x: &[f32], n: usize, hw: [usize; 2], reps: usize) -> Result<f64> {
        self.logits(x, n, hw)?;
        let t = Instant::now();
        for _ in 0..reps.max(1) {
            self.logits(x, n, hw)?;
        }
        Ok((n * reps.max(1)) as f64 / t.elapsed().as_secs_f64())
    }

    fn pass_wall_clock(&self, input: &Tensor) -> Result<Pass> {
        let gpu: &Gpu = &self.gpu;
        let mut pass = Pass::new(self.graph.nodes.len());
        let mut s = gpu.stream();
        let mut t0 = Instant::now();
        self.forward_hooked(&mut s, input, &[], &mut |s, i, shape| {
            pass.dispatched[i] = s.dispatches() > 0;
            pass.shapes[i] = shape.to_vec();
            std::mem::replace(s, gpu.stream()).submit();
            gpu.wait()?;
            let now = Instant::now();
            pass.ms[i] = (now - t0).as_secs_f64() * 1e3;
            t0 = now;
            Ok(())
        })?;
        Ok(pass)
    }

    fn pass_timestamps(&self, input: &Tensor) -> Result<Pass> {
        let gpu: &Gpu = &self.gpu;
        let nodes = self.graph.nodes.len();
        let count = nodes as u32 + 1;
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let mut pass = Pass::new(nodes);
        let mut s = gpu.stream();
        s.write_timestamp(&set, 0);
        let mut before = 0;
        // The nodes in the order they ran (a fused pass may run a shortcut early).
        let mut ran = Vec::with_capacity(nodes);
        self.forward_hooked(&mut s, input, &[], &mut |s, i, shape| {
            pass.dispatched[i] = s.dispatches() > before;
            before = s.dispatches();
            pass.shapes[i] = shape.to_vec();
            ran.push(i);
            s.write_timestamp(&set, ran.len() as u32);
            Ok(())
        })?;
        s.submit();
        let ticks = crate::gpu::read_timestamps(gpu, &set, count)?;
        let ns_per_tick = f64::from(gpu.queue.get_timestamp_period());
        for (k, &i) in ran.iter().enumerate() {
            pass.ms[i] = ticks[k + 1].saturating_sub(ticks[k]) as f64 * ns_per_tick / 1e6;
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_linear_ops_are_twice_the_multiply_adds() {
        // conv 3x3, 16 -> 32 channels, batch 2, 8x8 output: 2*32*8*8 outputs x 16*9 each.
        let conv = layer_ops(&[32, 16, 3, 3], &[2, 32, 8, 8]);
        assert_eq!(conv, 2.0 * (2 * 32 * 8 * 8) as f64 * (16 * 9) as f64);
        // Depthwise (groups = channels): one input channel per output.
        assert_eq!(layer_ops(&[32, 1, 3, 3], &[1, 32, 4, 4]), 2.0 * 512.0 * 9.0);
        // linear 64 -> 10, batch 4.
        assert_eq!(layer_ops(&[10, 64], &[4, 10]), 2.0 * 4.0 * 10.0 * 64.0);
    }

    #[test]
    fn shares_are_percent_of_the_total() {
        let row = |ms| LayerTime {
            node: 0,
            name: "l".into(),
            op: "conv",
            ms,
            ops: 0.0,
        };
        let p = Profile {
            layers: vec![row(1.0), row(3.0)],
            method: Method::WallClock,
            batch: 1,
        };
        assert_eq!(p.total_ms(), 4.0);
        assert_eq!(p.share(&p.layers[1]), 75.0);
    }

    #[test]
    fn one_row_per_dispatching_node_and_shares_sum_to_100() {
        crate::ops::skip_without_gpu!();
        let gpu = crate::testing::gpu();
        let a = crate::models::arch("akamaster_resnet20").unwrap();
        let params = crate::models::random_params(&a, 1);
        let model = crate::models::Model::new(a, params).unwrap();
        let r = crate::eval::Classifier::Fp32(model)
            .runner(&gpu, false)
            .unwrap();
        let x = crate::array::Array::random(&[2, 3, 32, 32], 3).data;
        // Input and Flatten record nothing; every other node of the folded graph dispatches.
        let expect: Vec<&str> = r
            .graph
            .nodes
            .iter()
            .filter(|n| !matches!(n.op, Op::Input | Op::Flatten))
            .map(|n| n.name.as_str())
            .collect();
        let mut methods = vec![Method::WallClock];
        if gpu.has_timestamps() {
            methods.push(Method::GpuTimestamps);
        }
        for m in methods {
            let p = r.profile_with(&x, 2, [32, 32], 1, m).unwrap();
            let got: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(got, expect, "{m}");
            let sum: f64 = p.layers.iter().map(|l| p.share(l)).sum();
            assert!((sum - 100.0).abs() < 1e-6, "{m}: shares sum to {sum}");
            // The stem: 3 -> 16 channels, 3x3, 32x32 output, batch 2.
            assert_eq!(p.layers[0].op, "conv", "{m}");
            assert_eq!(p.layers[0].ops, layer_ops(&[16, 3, 3, 3], &[2, 16, 32, 32]));
            assert_eq!(p.layers.last().unwrap().op, "linear", "{m}");
        }
    }
}
