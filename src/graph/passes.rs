//! Inference rewrites: fold BatchNorm into the preceding conv/linear, fuse activations and
//! residual adds into their producer. Each is exact up to float rounding.

use super::{bn_names, Act, Graph, Node, Op, Params, ValueId};
use crate::array::Array;
use crate::error::Result;

/// How many nodes read each value (the graph output counts as a reader).
fn readers(g: &Graph) -> Vec<usize> {
    let mut c = vec![0; g.nodes.len()];
    for n in &g.nodes {
        for &v in &n.inputs {
            c[v] += 1;
        }
    }
    c[g.output] += 1;
    c
}

/// For each node in order, offers each single-reader producer to `merge(producer, consumer)`;
/// a returned node replaces the consumer and the producer disappears. Chains merge in one
/// sweep because producers are final by the time their consumer is visited.
fn merge_pass(
    g: &Graph,
    mut merge: impl FnMut(ValueId, &Node, &Node) -> Result<Option<Node>>,
) -> Result<Graph> {
    let reads = readers(g);
    let mut nodes = g.nodes.clone();
    let mut dropped = vec![false; nodes.len()];
    for c in 0..nodes.len() {
        for k in 0..nodes[c].inputs.len() {
            let p = nodes[c].inputs[k];
            if reads[p] != 1 || dropped[p] {
                continue;
            }
            if let Some(merged) = merge(p, &nodes[p], &nodes[c])? {
                nodes[c] = merged;
                dropped[p] = true;
                break;
            }
        }
    }
    let mut map: Vec<ValueId> = vec![usize::MAX; nodes.len()];
    let mut out = Graph::default();
    for (i, mut n) in nodes.into_iter().enumerate() {
        if dropped[i] {
            continue;
        }
        n.inputs = n.inputs.iter().map(|&v| map[v]).collect();
        map[i] = out.nodes.len();
        out.nodes.push(n);
    }
    out.output = map[g.output];
    Ok(out)
}

/// Folds each BatchNorm that reads a conv/linear (read by nothing else) into it:
/// W' = W * g / sqrt(var + eps), b' = beta + (b - mean) * g / sqrt(var + eps).
/// Folded tensors are stored as `{layer}.folded_weight` / `{layer}.folded_bias`.
pub fn fold_batchnorm(g: &Graph, params: &mut Params) -> Result<Graph> {
    merge_pass(g, |_, p, c| match (&p.op, &c.op) {
        (
            Op::Conv2d {
                act: Act::Identity, ..
            }
            | Op::Linear {
                act: Act::Identity, ..
            },
            Op::BatchNorm { prefix, eps, act },
        ) => {
            let op = fold_one(p, prefix, *eps, *act, params)?;
            Ok(Some(Node {
                name: p.name.clone(),
                op,
                inputs: p.inputs.clone(),
            }))
        }
        _ => Ok(None),
    })
}

fn fold_one(prod: &Node, bn: &str, eps: f32, act: Act, params: &mut Params) -> Result<Op> {
    let [gamma, beta, mean, var] = bn_names(bn);
    let (gamma, beta) = (params.get(&gamma)?.clone(), params.get(&beta)?.clone());
    let (mean, var) = (params.get(&mean)?.clone(), params.get(&var)?.clone());
    let (weight, bias) = match &prod.op {
        Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias, .. } => (weight, bias),
        _ => unreachable!("fold_one is only called on conv/linear"),
    };
    let w = params.get(weight)?.clone();
    let cout = w.shape[0];
    let per = w.numel() / cout;
    let scale: Vec<f32> = (0..cout)
        .map(|c| gamma.data[c] / (var.data[c] + eps).sqrt())
        .collect();
    let mut wd = w.data;
    for (c, s) in scale.iter().enumerate() {
        wd[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= s);
    }
    let b0 = match bias {
        Some(b) => params.get(b)?.data.clone(),
        None => vec![0.0; cout],
    };
    let bd = (0..cout)
        .map(|c| beta.data[c] + (b0[c] - mean.data[c]) * scale[c])
        .collect();
    let fw = format!("{}.folded_weight", prod.name);
    let fb = format!("{}.folded_bias", prod.name);
    params.insert(fw.clone(), Array::new(&w.shape, wd));
    params.insert(fb.clone(), Array::new(&[cout], bd));
    let mut op = prod.op.clone();
    match &mut op {
        Op::Conv2d {
            weight,
            bias,
            act: a,
            ..
        }
        | Op::Linear {
            weight,
            bias,
            act: a,
        } => {
            *weight = fw;
            *bias = Some(fb);
            *a = act;
        }
        _ => unreachable!(),
    }
    Ok(op)
}

/// Fuses a standalone activation into a producer that applies none.
pub fn fuse_activations(g: &Graph) -> Result<Graph> {
    merge_pass(g, |_, p, c| {
        let Op::Act(a) = c.op else { return Ok(None) };
        let mut op = p.op.clone();
        match &mut op {
            Op::Conv2d { act, .. }
            | Op::Linear { act, .. }
            | Op::BatchNorm { act, .. }
            | Op::Add { act }
                if *act == Act::Identity =>
            {
                *act = a;
                Ok(Some(Node { op, ..p.clone() }))
            }
            _ => Ok(None),
        }
    })
}

/// Turns `act(conv(x) + r)` into one conv with a residual input: `Conv2d` inputs `[x, r]`.
pub fn fuse_residual_adds(g: &Graph) -> Result<Graph> {
    merge_pass(g, |pid, p, c| {
        let (
            Op::Add { act },
            Op::Conv2d {
                act: Act::Identity, ..
            },
        ) = (&c.op, &p.op)
        else {
            return Ok(None);
        };
        let Some(&other) = c.inputs.iter().find(|&&v| v != pid) else {
            return Ok(None);
        };
        if p.inputs.len() != 1 {
            return Ok(None);
        }
        let mut op = p.op.clone();
        if let Op::Conv2d { act: a, .. } = &mut op {
            *a = *act;
        }
        Ok(Some(Node {
            name: p.name.clone(),
            op,
            inputs: vec![p.inputs[0], other],
        }))
    })
}

/// All inference rewrites, in order.
pub fn optimize_for_inference(g: &Graph, params: &mut Params) -> Result<Graph> {
    let g = fold_batchnorm(g, params)?;
    let g = fuse_activations(&g)?;
    fuse_residual_adds(&g)
}
