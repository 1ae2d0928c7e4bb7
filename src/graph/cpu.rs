//! Runs a graph with the CPU reference ops: the ground truth that GPU model runs are tested
//! against (with random weights), and a cross-check for whole models.

use super::walk::{Step, Values};
use super::{bn_names, Graph, Op, Params, ValueId};
use crate::array::Array;
use crate::cpu;
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
    let mut values: Values<Array> = Values::new(g);
    // Outputs of chained layers: int8 in the consumer's input format.
    let mut qvalues: Values<QArray> = Values::new(g);
    for step in g.walk() {
        let (i, node) = (step.id, step.node);
        let arg = |k: usize| values.input(node, k);
        let p = |n: &str| params.get(n);
        let out = match &node.op {
            _ if quantized.contains_key(&i) => {
                let q = &quantized[&i];
                let owned;
                let qx = match node.inputs.first().and_then(|&v| qvalues.get(v)) {
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
                        qvalues.set(i, y);
                        free(&step, &mut values, &mut qvalues);
                        continue;
                    }
                }
            }
            Op::Input => input.clone(),
            op @ (Op::Conv2d { .. } | Op::Linear { .. }) => {
                let l = op.layer().expect("a conv or linear op");
                let b = l.bias.map(p).transpose()?;
                if l.linear {
                    cpu::matmul::linear(arg(0)?, p(l.weight)?, b, l.act)
                } else {
                    let r = if node.inputs.len() > 1 {
                        Some(arg(1)?)
                    } else {
                        None
                    };
                    cpu::conv::conv2d(arg(0)?, p(l.weight)?, b, &l.conv_params(), r, l.act)
                }
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
            Op::Concat => cpu::layout::concat(&values.inputs(node)?),
            Op::SliceChannels { start, len } => {
                cpu::layout::slice_channels(arg(0)?, *start..start + len)
            }
            Op::ChannelShuffle { groups } => cpu::layout::channel_shuffle(arg(0)?, *groups),
            Op::MaxPool {
                kernel,
                stride,
                pad,
            } => cpu::pool::max_pool2d(arg(0)?, *kernel, *stride, *pad),
            Op::AvgPool {
                kernel: k,
                stride: s,
                pad: p,
                count_pad,
            } => match count_pad {
                true => cpu::pool::avg_pool2d(arg(0)?, *k, *s, *p),
                false => cpu::pool::avg_pool2d_exclude_pad(arg(0)?, *k, *s, *p),
            },
            Op::GlobalAvgPool => cpu::pool::global_avg_pool(arg(0)?),
            Op::Softmax => cpu::softmax::softmax(arg(0)?),
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => cpu::lrn::lrn(arg(0)?, *size, *alpha, *beta, *bias),
            Op::Flatten => {
                let x = arg(0)?;
                let n = x.shape[0];
                Array::new(&[n, x.numel() / n], x.data.clone())
            }
        };
        values.set(i, out);
        free(&step, &mut values, &mut qvalues);
    }
    values
        .take(g.output)
        .ok_or_else(|| Error::Invalid("graph produced no output".into()))
}

/// Drops the values whose last reader was this step's node.
fn free(step: &Step, values: &mut Values<Array>, qvalues: &mut Values<QArray>) {
    for &v in &step.dead {
        values.take(v);
        qvalues.take(v);
    }
}
