//! Runs a graph with the CPU reference ops: the ground truth that GPU model runs are tested
//! against (with random weights), and a cross-check for whole models.

use super::int8;
use super::walk::{Step, Values};
use super::{bn_names, Graph, Op, Params, ValueId};
use crate::array::Array;
use crate::cpu;
use crate::error::{Error, Result};
use crate::ops::pool::Pool;
use crate::quant::int8::{QArray, QConv, QFormat};
use std::collections::{BTreeMap, HashMap};

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
    forward_int8(g, params, input, quantized, &Default::default())
}

/// `forward_quantized` with value formats: the CPU reference of `Runner::with_int8`.
pub fn forward_int8(
    g: &Graph,
    params: &Params,
    input: &Array,
    quantized: &HashMap<ValueId, QConv>,
    formats: &BTreeMap<ValueId, QFormat>,
) -> Result<Array> {
    let plan = g.int8_plan(quantized, formats);
    let quantized = &plan.layers;
    let mut values: Values<Array> = Values::new(g);
    // Int8 values (see `graph::int8`).
    let mut qvalues: Values<QArray> = Values::new(g);
    for step in g.walk() {
        let (i, node) = (step.id, step.node);
        if let Some(&f) = plan.formats.get(&i) {
            if plan.is_int8_op(i) {
                qvalues.set(i, int8::cpu_node(node, f, &qvalues)?);
                free(&step, &mut values, &mut qvalues);
                continue;
            }
        }
        let int8_input = node
            .inputs
            .first()
            .and_then(|&v| qvalues.get(v))
            .filter(|x| plan.takes_int8(i, x.fmt));
        if int8_input.is_none() {
            for &v in &node.inputs {
                if let (None, Some(q)) = (values.get(v), qvalues.get(v)) {
                    let y = int8::cpu_dequantize(g, v, q);
                    values.set(v, y);
                }
            }
        }
        let arg = |k: usize| values.input(node, k);
        let p = |n: &str| params.get(n);
        let out = match &node.op {
            _ if quantized.contains_key(&i) => {
                let q = &quantized[&i];
                let owned;
                let qx = match int8_input {
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
            op @ (Op::MaxPool { .. } | Op::AvgPool { .. }) => {
                let how = match op {
                    Op::AvgPool { count_pad, .. } => Pool::average(*count_pad),
                    _ => Pool::Max,
                };
                let win = op.pool_window().expect("a pool op");
                cpu::pool::pool2d(arg(0)?, how, &win)
            }
            Op::GlobalAvgPool => cpu::pool::global_avg_pool(arg(0)?),
            Op::Pad { pads, mode } => cpu::pad2d::pad2d(arg(0)?, *pads, *mode),
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
    if let (None, Some(q)) = (values.get(g.output), qvalues.get(g.output)) {
        let y = int8::cpu_dequantize(g, g.output, q);
        values.set(g.output, y);
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
