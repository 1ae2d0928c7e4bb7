//! Checks a graph read from a file before anything runs it: SSA order, op arity and settings,
//! and shape inference on one image of the model's input size against the parameter tensors. The kernels and
//! the CPU reference trust their shapes, so a corrupt graph must be refused here, by node.

use super::{bn_names, Graph, Op, Pads, Params, ValueId};
use crate::quant::int8::QConv;

/// No CIFAR model has a value near this many elements per image (VGG's largest: 65,536);
/// a corrupt pad or channel count that implies one would exhaust memory when run.
pub(crate) const MAX_VALUE_ELEMS: usize = 1 << 24;

/// Validates `g` with its FP32 `params` and its quantized layers (`quantized(i)` is node i's
/// INT8 description, whose weight shape replaces the FP32 tensor's), for one image of
/// `input` (`[channels, height, width]`). The error names the node.
pub fn validate<'a>(
    g: &Graph,
    params: &Params,
    quantized: &dyn Fn(ValueId) -> Option<&'a QConv>,
    input: [usize; 3],
) -> Result<(), String> {
    shapes(g, params, quantized, input).map(drop)
}

/// [`validate`], returning each node's output shape for one image (batch dimension 1).
pub fn shapes<'a>(
    g: &Graph,
    params: &Params,
    quantized: &dyn Fn(ValueId) -> Option<&'a QConv>,
    [c, h, w]: [usize; 3],
) -> Result<Vec<Vec<usize>>, String> {
    let input = [1, c, h, w];
    if g.nodes.is_empty() {
        return Err("graph has no nodes".into());
    }
    if g.output >= g.nodes.len() {
        return Err(format!(
            "graph output {} is not one of its {} nodes",
            g.output,
            g.nodes.len()
        ));
    }
    let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let at = |msg: String| format!("node {i} `{}`: {msg}", n.name);
        if let Some((k, v)) = n.inputs.iter().enumerate().find(|(_, &v)| v >= i) {
            return Err(at(format!("input {k} is node {v}, not an earlier node")));
        }
        let (lo, hi) = arity(&n.op);
        if n.inputs.len() < lo || n.inputs.len() > hi {
            let want = match (lo, hi) {
                (l, h) if l == h => format!("{l}"),
                (l, usize::MAX) => format!("at least {l}"),
                (l, h) => format!("{l} to {h}"),
            };
            return Err(at(format!(
                "{} takes {want} inputs, has {}",
                op_name(&n.op),
                n.inputs.len()
            )));
        }
        // In range: every input is an earlier node, whose shape is already pushed.
        let ins: Vec<&[usize]> = n.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
        let out = infer(&n.op, &ins, params, quantized(i), input).map_err(at)?;
        let numel = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.is_none_or(|n| n > MAX_VALUE_ELEMS) {
            return Err(at(format!("output of shape {out:?} is implausibly large")));
        }
        shapes.push(out);
    }
    Ok(shapes)
}

/// The shape `op` gives on inputs of the given shapes (an FP32 node; `input` is the image
/// shape `Op::Input` yields): for importers that need shapes while building a graph.
pub fn output_shape(
    op: &Op,
    inputs: &[&[usize]],
    params: &Params,
    input: [usize; 4],
) -> Result<Vec<usize>, String> {
    infer(op, inputs, params, None, input)
}

fn arity(op: &Op) -> (usize, usize) {
    match op {
        Op::Input => (0, 0),
        // A conv may read a residual it adds before its activation.
        Op::Conv2d { .. } => (1, 2),
        Op::Add { .. } => (2, 2),
        Op::Concat => (2, usize::MAX),
        _ => (1, 1),
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Input => "Input",
        Op::Conv2d { .. } => "Conv2d",
        Op::Linear { .. } => "Linear",
        Op::BatchNorm { .. } => "BatchNorm",
        Op::Act(_) => "Act",
        Op::Add { .. } => "Add",
        Op::ShortcutA { .. } => "ShortcutA",
        Op::Concat => "Concat",
        Op::SliceChannels { .. } => "SliceChannels",
        Op::ChannelShuffle { .. } => "ChannelShuffle",
        Op::MaxPool { .. } => "MaxPool",
        Op::GlobalAvgPool => "GlobalAvgPool",
        Op::Flatten => "Flatten",
        Op::Softmax => "Softmax",
        Op::AvgPool { .. } => "AvgPool",
        Op::Lrn { .. } => "Lrn",
        Op::Pad { .. } => "Pad",
    }
}

/// The output shape of `op` on inputs of shapes `x` (arity already checked).
fn infer(
    op: &Op,
    x: &[&[usize]],
    params: &Params,
    q: Option<&QConv>,
    input: [usize; 4],
) -> Result<Vec<usize>, String> {
    let p = |name: &str| {
        params
            .tensors
            .get(name)
            .map(|a| a.shape.clone())
            .ok_or_else(|| format!("parameter tensor `{name}` missing"))
    };
    let x0 = x.first().copied().unwrap_or(&[]);
    let too_big = || "shape arithmetic overflows".to_string();
    match op {
        Op::Input => Ok(input.to_vec()),
        Op::Conv2d {
            weight,
            bias,
            stride,
            pad,
            dilation,
            groups,
            ..
        } => {
            let [n, c, h, w] = four(x0)?;
            let ws = match q {
                Some(q) => q.weights.shape.to_vec(),
                None => p(weight)?,
            };
            let [co, cig, kh, kw] = ws[..] else {
                return Err(format!("weight `{weight}` has shape {ws:?}, expected 4-d"));
            };
            if *stride == 0 || *groups == 0 {
                return Err(format!("stride {stride} and groups {groups} must be >= 1"));
            }
            if co == 0 || cig.checked_mul(*groups) != Some(c) || co % groups != 0 {
                return Err(format!(
                    "weight `{weight}` of shape {ws:?} with groups {groups} does not fit an input of {c} channels"
                ));
            }
            let out = vec![
                n,
                co,
                window_out(h, span(kh, dilation[0])?, *stride, pad, 0)?,
                window_out(w, span(kw, dilation[1])?, *stride, pad, 1)?,
            ];
            check_bias(bias.as_deref(), q, co, &p)?;
            if let Some(r) = x.get(1).filter(|r| **r != out.as_slice()) {
                return Err(format!(
                    "residual of shape {r:?} differs from the output {out:?}"
                ));
            }
            Ok(out)
        }
        Op::Linear { weight, bias, .. } => {
            let [n, k] = x0[..] else {
                return Err(format!("input of shape {x0:?}, expected 2-d"));
            };
            let ws = match q {
                Some(q) => match q.weights.shape {
                    [o, i, 1, 1] => vec![o, i],
                    s => {
                        return Err(format!(
                            "int8 weight of shape {s:?}, expected [out, in, 1, 1]"
                        ))
                    }
                },
                None => p(weight)?,
            };
            let [o, i] = ws[..] else {
                return Err(format!("weight `{weight}` has shape {ws:?}, expected 2-d"));
            };
            if o == 0 || i != k {
                return Err(format!(
                    "weight `{weight}` of shape {ws:?} does not fit an input of {k} features"
                ));
            }
            check_bias(bias.as_deref(), q, o, &p)?;
            Ok(vec![n, o])
        }
        Op::BatchNorm { prefix, eps, .. } => {
            let c = channels(x0)?;
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!("eps {eps} must be finite and >= 0"));
            }
            for name in bn_names(prefix) {
                let s = p(&name)?;
                if s != [c] {
                    return Err(format!("`{name}` has shape {s:?}, expected [{c}]"));
                }
            }
            Ok(x0.to_vec())
        }
        Op::Act(_) => Ok(x0.to_vec()),
        Op::Add { .. } => match x {
            [a, b] if a == b => Ok(a.to_vec()),
            _ => Err(format!("adds shapes {:?}", x)),
        },
        Op::ShortcutA { pad } => {
            let [n, c, h, w] = four(x0)?;
            let co = pad.checked_mul(2).and_then(|p| p.checked_add(c));
            Ok(vec![
                n,
                co.ok_or_else(too_big)?,
                h.div_ceil(2),
                w.div_ceil(2),
            ])
        }
        Op::Concat => {
            let [n, _, h, w] = four(x0)?;
            let mut c = 0usize;
            for s in x {
                match four(s)? {
                    [n2, ci, h2, w2] if (n2, h2, w2) == (n, h, w) => {
                        c = c.checked_add(ci).ok_or_else(too_big)?
                    }
                    _ => return Err(format!("concatenates shapes {:?}", x)),
                }
            }
            Ok(vec![n, c, h, w])
        }
        Op::SliceChannels { start, len } => {
            let c = channels(x0)?;
            if *len == 0 || start.checked_add(*len).is_none_or(|e| e > c) {
                return Err(format!("slice {start}+{len} of {c} channels"));
            }
            let mut s = x0.to_vec();
            s[1] = *len;
            Ok(s)
        }
        Op::ChannelShuffle { groups } => {
            let c = channels(x0)?;
            if *groups == 0 || c % groups != 0 {
                return Err(format!("{c} channels do not split into {groups} groups"));
            }
            Ok(x0.to_vec())
        }
        Op::MaxPool { .. } | Op::AvgPool { .. } => {
            let [n, c, h, w] = four(x0)?;
            let win = op.pool_window().expect("a pool op");
            win.check().map_err(|e| {
                format!(
                    "kernel {} stride {} pad {}: {e} (stride >= 1, each pad < kernel)",
                    win.kernel, win.stride, win.pads
                )
            })?;
            let size = |axis, s| {
                let span = win.span(axis).ok_or("dilation overflows")?;
                window_out(s, span, win.stride, &win.pads, axis)?;
                win.out_size(axis, s)
                    .ok_or_else(|| format!("window {span} does not fit a size of {s}"))
            };
            Ok(vec![n, c, size(0, h)?, size(1, w)?])
        }
        Op::GlobalAvgPool => {
            let [n, c, _, _] = four(x0)?;
            Ok(vec![n, c])
        }
        Op::Pad { pads, mode } => {
            Ok(crate::ops::pad2d::padded_shape(four(x0)?, *pads, *mode)?.to_vec())
        }
        Op::Lrn { size, .. } => {
            four(x0)?;
            if *size == 0 {
                return Err("LRN over a window of 0 channels".into());
            }
            Ok(x0.to_vec())
        }
        Op::Softmax => match x0 {
            [_, _] => Ok(x0.to_vec()),
            _ => Err(format!("softmax of shape {x0:?}, expected [N, K]")),
        },
        Op::Flatten => {
            let [n, rest @ ..] = x0 else {
                return Err("input has no dimensions".into());
            };
            let f = rest.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            Ok(vec![*n, f.ok_or_else(too_big)?])
        }
    }
}

fn four(s: &[usize]) -> Result<[usize; 4], String> {
    s.try_into()
        .map_err(|_| format!("input of shape {s:?}, expected 4-d [N, C, H, W]"))
}

fn channels(s: &[usize]) -> Result<usize, String> {
    s.get(1)
        .copied()
        .ok_or_else(|| format!("input of shape {s:?} has no channel dimension"))
}

/// The input extent of a `k`-tap window with taps `d` apart (0 for an empty kernel).
fn span(k: usize, d: usize) -> Result<usize, String> {
    if d == 0 {
        return Err("dilation must be >= 1".into());
    }
    match k.checked_sub(1) {
        None => Ok(0),
        Some(k1) => k1
            .checked_mul(d)
            .map(|v| v + 1)
            .ok_or_else(|| format!("dilation {d} overflows")),
    }
}

/// Floor-mode output size along `axis` (0: H, 1: W) with that axis's padding of `pad`.
fn window_out(
    size: usize,
    k: usize,
    stride: usize,
    pad: &Pads,
    axis: usize,
) -> Result<usize, String> {
    let padded = pad.total(axis).and_then(|p| p.checked_add(size));
    match padded {
        Some(p) if k >= 1 && p >= k => Ok((p - k) / stride + 1),
        _ => Err(format!(
            "window {k} with pad {pad} does not fit a size of {size}"
        )),
    }
}

/// The bias must be 1-d of the output size, whether FP32 or INT8.
fn check_bias(
    bias: Option<&str>,
    q: Option<&QConv>,
    out: usize,
    p: &dyn Fn(&str) -> Result<Vec<usize>, String>,
) -> Result<(), String> {
    let Some(name) = bias else {
        return Ok(());
    };
    let len = match q {
        Some(q) => q.bias.as_ref().map(|b| vec![b.len()]),
        None => Some(p(name)?),
    };
    match len {
        Some(s) if s == [out] => Ok(()),
        s => Err(format!("bias `{name}` has shape {s:?}, expected [{out}]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;
    use crate::models;

    /// Every zoo model, as built and as optimized for inference, passes; so the checks
    /// refuse only graphs that could never run.
    #[test]
    fn zoo_graphs_pass() {
        for name in models::arch_names() {
            let a = models::arch(&name).unwrap();
            let mut p = models::random_params(&a, 1);
            validate(&a.graph, &p, &|_| None, [3, 32, 32])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let g = crate::graph::passes::optimize_for_inference(&a.graph, &mut p).unwrap();
            validate(&g, &p, &|_| None, [3, 32, 32])
                .unwrap_or_else(|e| panic!("{name} optimized: {e}"));
        }
    }

    fn edit(f: impl FnOnce(&mut Graph)) -> String {
        let a = models::arch("resnet20").unwrap();
        let p = models::random_params(&a, 1);
        let mut g = a.graph.clone();
        f(&mut g);
        validate(&g, &p, &|_| None, [3, 32, 32]).unwrap_err()
    }

    #[test]
    fn refuses_bad_indices_arity_and_shapes() {
        let e = edit(|g| g.nodes[5].inputs[0] = 99);
        assert!(e.contains("node 5") && e.contains("node 99"), "{e}");
        let e = edit(|g| g.output = 500);
        assert!(e.contains("500"), "{e}");
        let add = |g: &Graph| g.nodes.iter().position(|n| matches!(n.op, Op::Add { .. }));
        let e = edit(|g| {
            let i = add(g).unwrap();
            g.nodes[i].inputs.pop();
        });
        assert!(e.contains("Add takes 2 inputs, has 1"), "{e}");
        let e = edit(|g| {
            g.nodes.push(Node {
                name: "x".into(),
                op: Op::GlobalAvgPool,
                inputs: vec![g.nodes.len() - 1],
            })
        });
        assert!(e.contains("`x`") && e.contains("expected 4-d"), "{e}");
        let e = edit(|g| {
            if let Op::Conv2d { groups, .. } = &mut g.nodes[1].op {
                *groups = usize::MAX;
            }
        });
        assert!(e.contains("node 1") && e.contains("groups"), "{e}");
        let e = edit(|g| {
            if let Op::Conv2d { pad, .. } = &mut g.nodes[1].op {
                *pad = usize::MAX.into();
            }
        });
        assert!(e.contains("node 1") && e.contains("pad"), "{e}");
        // One side alone overflowing the padded size.
        let e = edit(|g| {
            if let Op::Conv2d { pad, .. } = &mut g.nodes[1].op {
                *pad = Pads::from_onnx([0, 0, usize::MAX, 1]);
            }
        });
        assert!(e.contains("node 1") && e.contains("pad"), "{e}");
        let e = edit(|g| {
            if let Op::Conv2d { pad, .. } = &mut g.nodes[1].op {
                *pad = Pads::from_onnx([0, 0, 1 << 32, 0]);
            }
        });
        assert!(
            e.contains("node 1") && e.contains("implausibly large"),
            "{e}"
        );
    }
}
