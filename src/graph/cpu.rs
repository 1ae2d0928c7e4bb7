//! Runs a graph with the CPU reference ops: the ground truth that GPU model runs are tested
//! against (with random weights), and a cross-check for whole models.

use super::{bn_names, Graph, Op, Params, ValueId};
use crate::cpu::{self, Array};
use crate::error::{Error, Result};
use crate::quant::int8::{QArray, QConv};
use std::collections::HashMap;

pub fn forward(g: &Graph, params: &Params, input: &Array) -> Result<Array> {
    forward_quantized(g, params, input, &HashMap::new())
}

/// `forward` with the given conv/linear nodes simulated in integer arithmetic (the CPU
/// reference of the INT8 kernels), for cross-checking a quantized model.
pub fn forward_quantized(
    g: &Graph,
    params: &Params,
    input: &Array,
    quantized: &HashMap<ValueId, QConv>,
) -> Result<Array> {
    let quantized = g.chain_quantized(quantized);
    let mut values: Vec<Option<Array>> = vec![None; g.nodes.len()];
    // Outputs of chained layers: int8 in the consumer's input format.
    let mut qvalues: Vec<Option<QArray>> = vec![None; g.nodes.len()];
    let last = g.last_uses();
    for (i, node) in g.nodes.iter().enumerate() {
        let arg = |k: usize| -> Result<&Array> {
            node.inputs
                .get(k)
                .and_then(|&v| values[v].as_ref())
                .ok_or_else(|| Error::Invalid(format!("{}: input {k} missing", node.name)))
        };
        let p = |n: &str| params.get(n);
        let out = match &node.op {
            _ if quantized.contains_key(&i) => {
                let q = &quantized[&i];
                let owned;
                let qx = match node.inputs.first().and_then(|&v| qvalues[v].as_ref()) {
                    Some(qx) => qx,
                    None => {
                        owned = q.quantize_input(arg(0)?)?;
                        &owned
                    }
                };
                match cpu::qconv::qconv2d(q, qx)? {
                    cpu::qconv::QResult::F32(y) => match node.op {
                        Op::Linear { .. } => {
                            let n = qx.shape[0];
                            Array::new(&[n, y.numel() / n], y.data)
                        }
                        _ => y,
                    },
                    cpu::qconv::QResult::Q(y) => {
                        qvalues[i] = Some(y);
                        free_inputs(node, i, &last, &mut values, &mut qvalues);
                        continue;
                    }
                }
            }
            Op::Input => input.clone(),
            Op::Conv2d {
                weight,
                bias,
                stride,
                pad,
                groups,
                act,
            } => {
                let cp = crate::ops::conv2d::Conv2dParams {
                    stride: [*stride; 2],
                    pad: [*pad; 2],
                    groups: *groups,
                };
                let b = bias.as_deref().map(p).transpose()?;
                let r = if node.inputs.len() > 1 {
                    Some(arg(1)?)
                } else {
                    None
                };
                cpu::conv::conv2d(arg(0)?, p(weight)?, b, &cp, r, *act)
            }
            Op::Linear { weight, bias, act } => {
                let b = bias.as_deref().map(p).transpose()?;
                cpu::matmul::linear(arg(0)?, p(weight)?, b, *act)
            }
            Op::BatchNorm { prefix, eps, act } => {
                let [gm, bt, m, v] = bn_names(prefix);
                cpu::batchnorm::batch_norm(
                    arg(0)?,
                    &p(&gm)?.data,
                    &p(&bt)?.data,
                    &p(&m)?.data,
                    &p(&v)?.data,
                    *eps,
                    *act,
                )
            }
            Op::Act(a) => cpu::elementwise::act(arg(0)?, *a),
            Op::Add { act } => {
                cpu::elementwise::act(&cpu::elementwise::add(arg(0)?, arg(1)?), *act)
            }
            Op::ShortcutA { pad } => cpu::layout::shortcut_a(arg(0)?, *pad),
            Op::Concat => {
                let xs = (0..node.inputs.len())
                    .map(arg)
                    .collect::<Result<Vec<_>>>()?;
                cpu::layout::concat(&xs)
            }
            Op::SliceChannels { start, len } => {
                cpu::layout::slice_channels(arg(0)?, *start..start + len)
            }
            Op::ChannelShuffle { groups } => cpu::layout::channel_shuffle(arg(0)?, *groups),
            Op::MaxPool {
                kernel,
                stride,
                pad,
            } => cpu::pool::max_pool2d(arg(0)?, *kernel, *stride, *pad),
            Op::GlobalAvgPool => cpu::pool::global_avg_pool(arg(0)?),
            Op::Flatten => {
                let x = arg(0)?;
                let n = x.shape[0];
                Array::new(&[n, x.numel() / n], x.data.clone())
            }
        };
        values[i] = Some(out);
        free_inputs(node, i, &last, &mut values, &mut qvalues);
    }
    values[g.output]
        .take()
        .ok_or_else(|| Error::Invalid("graph produced no output".into()))
}

/// Drops the values whose last reader is node `i`.
fn free_inputs(
    node: &super::Node,
    i: usize,
    last: &[usize],
    values: &mut [Option<Array>],
    qvalues: &mut [Option<QArray>],
) {
    for &v in &node.inputs {
        if last[v] == i {
            values[v] = None;
            qvalues[v] = None;
        }
    }
}
