//! The integer path of a quantized graph: which values are int8 and in which format, derived
//! from the quantized layers and the calibrated value formats. Like `chain_quantized`, it is
//! derived, never stored, and both the GPU runner and the CPU reference call it, so they run
//! the same nodes in integers. One function per executor runs a non-layer int8 node.
//!
//! A value is int8 when its node is:
//! - a quantized layer with an int8 output (chained into its consumer, or given a format);
//! - an Add of two int8 values, or a two-input Concat of int8 values, or a GlobalAvgPool or
//!   AvgPool (kernel up to `MAX_POOL_KERNEL`) of an int8 value, with a format of its own;
//! - a ShortcutA, SliceChannels, ChannelShuffle, Pad or Flatten of an int8 value, or a MaxPool
//!   of one (undilated, kernel up to `MAX_POOL_KERNEL`), its format kept.
//!
//! Every other node runs in f32 on dequantized inputs, so any value format may be missing.

use super::walk::Values;
use super::{Graph, Node, Op, ValueId};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::Stream;
use crate::ops::pool::Window;
use crate::ops::qconv::QTensor;
use crate::quant::int8::{QAdd, QArray, QConv, QFormat};
use crate::quant::int8_ops::{QAvgPool, QGather, MAX_POOL_KERNEL};
use std::collections::{BTreeMap, HashMap};

/// The integer path of a graph (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Int8Plan {
    /// The quantized layers, with their int8 outputs set.
    pub layers: HashMap<ValueId, QConv>,
    /// The format of every int8 value.
    pub formats: HashMap<ValueId, QFormat>,
}

impl Int8Plan {
    /// Whether node `i` runs as an int8 op other than a layer.
    pub fn is_int8_op(&self, i: ValueId) -> bool {
        self.formats.contains_key(&i) && !self.layers.contains_key(&i)
    }

    /// The nodes that compute on int8 data (layers and int8 ops), in order.
    pub fn int8_nodes(&self) -> Vec<ValueId> {
        let mut v: Vec<ValueId> = self
            .layers
            .keys()
            .chain(self.formats.keys())
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The int8 residual adds a GPU runner may fuse into the layer that feeds them: layer `u`
    /// -> (add node, whether `u` is the add's first input), where `u` has an int8 output that
    /// only the add reads, is not the graph output, and `can_fuse` (the runner's kernel for it
    /// takes in adds). `u` is the add's later input, or the earlier one where the later (the
    /// residual) needs only values computed before `u`: then the residual runs just before
    /// `u` ([`Int8Plan::schedule`]), as an option-A or 1x1 shortcut after its block's convs
    /// can. Both orders give the same integers (`QConv2d::forward_add`).
    pub fn fusable_adds(
        &self,
        g: &Graph,
        can_fuse: impl Fn(ValueId) -> bool,
    ) -> HashMap<ValueId, (ValueId, bool)> {
        let mut readers = vec![0usize; g.nodes.len()];
        for n in &g.nodes {
            for &v in &n.inputs {
                readers[v] += 1;
            }
        }
        let feeds = |u: ValueId| {
            self.layers.get(&u).is_some_and(|q| q.output.is_some())
                && readers[u] == 1
                && u != g.output
                && can_fuse(u)
        };
        let mut out = HashMap::new();
        for (j, n) in g.nodes.iter().enumerate() {
            if !matches!(n.op, Op::Add { .. }) || !self.is_int8_op(j) || n.inputs.len() != 2 {
                continue;
            }
            let (a, b) = (n.inputs[0], n.inputs[1]);
            let (early, late) = (a.min(b), a.max(b));
            let u = if a == b {
                continue;
            } else if feeds(late) {
                late
            } else if feeds(early) && g.nodes[late].inputs.iter().all(|&v| v < early) {
                early
            } else {
                continue;
            };
            out.insert(u, (j, u == a));
        }
        out
    }

    /// The node order of a GPU pass that fuses `fusable` (from [`Int8Plan::fusable_adds`]): the
    /// graph's, with each residual that follows its layer moved to just before that layer.
    pub fn schedule(&self, g: &Graph, fusable: &HashMap<ValueId, (ValueId, bool)>) -> Vec<ValueId> {
        let mut before: HashMap<ValueId, ValueId> = HashMap::new();
        for (&u, &(j, conv_first)) in fusable {
            let residual = g.nodes[j].inputs[conv_first as usize];
            if residual > u {
                before.insert(u, residual);
            }
        }
        let moved: std::collections::HashSet<ValueId> = before.values().copied().collect();
        let mut order = Vec::with_capacity(g.nodes.len());
        for i in 0..g.nodes.len() {
            order.extend(before.get(&i));
            if !moved.contains(&i) {
                order.push(i);
            }
        }
        order
    }

    /// Whether layer `i` can take input value `x` as it is (same format, per-tensor scale).
    pub fn takes_int8(&self, i: ValueId, x: QFormat) -> bool {
        self.layers
            .get(&i)
            .is_some_and(|q| q.input == x && q.input_channel_scales.is_none())
    }
}

impl Graph {
    /// The integer path for `layers` with `values` (formats of the values that own one: layer
    /// outputs, adds, concats, global average pools). Empty `values` is the mixed scheme.
    pub fn int8_plan(
        &self,
        layers: &HashMap<ValueId, QConv>,
        values: &BTreeMap<ValueId, QFormat>,
    ) -> Int8Plan {
        let mut layers = self.chain_quantized(layers);
        let mut formats: HashMap<ValueId, QFormat> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let int_in = |k: usize| n.inputs.get(k).and_then(|v| formats.get(v)).copied();
            // The output too (an imported QDQ model may round its logits); then the executors
            // dequantize it at the end.
            let own = values.get(&i).copied();
            let out = match &n.op {
                _ if layers.contains_key(&i) => {
                    let q = layers.get_mut(&i).expect("checked");
                    if let Some(f) = own.filter(|_| q.output.is_none()) {
                        let mut t = q.clone();
                        t.output = Some(f);
                        // Only clamp-like activations fuse into an int8 output.
                        if t.requant().is_ok() {
                            *q = t;
                        }
                    }
                    q.output
                }
                Op::Add { act } => match (int_in(0), int_in(1), own) {
                    (Some(a), Some(b), Some(o)) => {
                        let add = QAdd {
                            a,
                            b,
                            act: *act,
                            output: Some(o),
                        };
                        add.params().ok().map(|_| o)
                    }
                    _ => None,
                },
                Op::ShortcutA { .. }
                | Op::SliceChannels { .. }
                | Op::ChannelShuffle { .. }
                | Op::Pad { .. }
                | Op::MaxPool { .. }
                | Op::Flatten => int_in(0).filter(|_| int8_pool(&n.op)),
                Op::GlobalAvgPool => int_in(0).and(own),
                Op::AvgPool { .. } => int_in(0).and(own).filter(|_| int8_pool(&n.op)),
                Op::Concat if n.inputs.len() == 2 => int_in(0).and(int_in(1)).and(own),
                _ => None,
            };
            if let Some(f) = out {
                formats.insert(i, f);
            }
        }
        Int8Plan { layers, formats }
    }
}

/// Int8 max and average pools take undilated windows of kernels up to `MAX_POOL_KERNEL`
/// (others run in f32).
fn int8_pool(op: &Op) -> bool {
    op.pool_window()
        .is_none_or(|w| w.dilation == [1, 1] && w.kernel <= MAX_POOL_KERNEL)
}

impl Op {
    /// Whether the op's output owns an int8 format on the integer path (the others keep their
    /// input's format, or run in f32).
    pub fn owns_int8_format(&self) -> bool {
        matches!(
            self,
            Op::Conv2d { .. }
                | Op::Linear { .. }
                | Op::Add { .. }
                | Op::GlobalAvgPool
                | Op::AvgPool { .. }
                | Op::Concat
        )
    }
}

/// An error for an op the int8 path does not run (the plan never sends one).
fn no_int8(node: &Node) -> Error {
    Error::Invalid(format!("{}: {:?} has no int8 form", node.name, node.op))
}

/// What an int8 node (not a layer) computes, from its op and its inputs' formats and shapes;
/// both executors run this one description.
enum Step {
    Add(QAdd),
    /// A gather; it reads the second input when it has a second source (concat).
    Gather(QGather),
    Pad(crate::ops::Pads, crate::ops::pad2d::PadMode),
    MaxPool(Window),
    GlobalAvgPool,
    AvgPool(QAvgPool),
    Flatten,
}

fn step(
    node: &Node,
    out: QFormat,
    x: (QFormat, usize),
    b: Option<(QFormat, usize)>,
) -> Result<Step> {
    let second = || b.ok_or_else(|| Error::Invalid(format!("{}: input 1 missing", node.name)));
    let (fmt, c) = x;
    Ok(match &node.op {
        Op::Add { act } => Step::Add(QAdd {
            a: fmt,
            b: second()?.0,
            act: *act,
            output: Some(out),
        }),
        Op::ShortcutA { pad } => Step::Gather(QGather::shortcut_a(fmt, c, *pad)),
        Op::SliceChannels { start, len } => Step::Gather(QGather::slice(fmt, c, *start, *len)),
        Op::ChannelShuffle { groups } => Step::Gather(QGather::shuffle(fmt, c, *groups)?),
        Op::Concat => Step::Gather(QGather::concat(x, second()?, out)),
        Op::MaxPool { .. } => Step::MaxPool(node.op.pool_window().ok_or_else(|| no_int8(node))?),
        Op::GlobalAvgPool => Step::GlobalAvgPool,
        &Op::AvgPool { count_pad, .. } => Step::AvgPool(QAvgPool {
            window: node.op.pool_window().ok_or_else(|| no_int8(node))?,
            count_pad,
            input: fmt,
            output: out,
        }),
        Op::Pad { pads, mode } => Step::Pad(*pads, *mode),
        Op::Flatten => Step::Flatten,
        _ => return Err(no_int8(node)),
    })
}

/// The node's inputs on the integer path: the first, and the second where it has one.
fn inputs<'v, T>(node: &Node, q: &'v Values<T>) -> Result<(&'v T, Option<&'v T>)> {
    let b = match node.inputs.len() {
        1 => None,
        _ => Some(q.input(node, 1)?),
    };
    Ok((q.input(node, 0)?, b))
}

/// Runs int8 node `node` (not a layer) on the GPU, writing format `out`.
pub fn gpu_node(s: &mut Stream, node: &Node, out: QFormat, q: &Values<QTensor>) -> Result<QTensor> {
    use crate::ops::{qconv, qlayout};
    let (x, b) = inputs(node, q)?;
    let desc = |t: &QTensor| (t.fmt, t.shape[1]);
    match step(node, out, desc(x), b.map(desc))? {
        Step::Add(add) => qconv::qadd(s, x, b.unwrap_or(x), &add)?.into_q(),
        Step::Gather(g) => qlayout::gather(s, &g, x, b.filter(|_| g.b.is_some())),
        Step::MaxPool(win) => qlayout::max_pool(s, x, &win),
        Step::Pad(pads, mode) => qlayout::pad2d(s, x, pads, mode),
        Step::GlobalAvgPool => qlayout::global_avg_pool(s, x, out),
        Step::AvgPool(pool) => qlayout::avg_pool(s, x, &pool),
        Step::Flatten => qlayout::flatten(s, x),
    }
}

/// The CPU reference of [`gpu_node`].
pub fn cpu_node(node: &Node, out: QFormat, q: &Values<QArray>) -> Result<QArray> {
    use crate::cpu::{qconv, qlayout};
    let (x, b) = inputs(node, q)?;
    let desc = |t: &QArray| (t.fmt, t.shape[1]);
    match step(node, out, desc(x), b.map(desc))? {
        Step::Add(add) => match qconv::qadd(&add, x, b.unwrap_or(x))? {
            qconv::QResult::Q(y) => Ok(y),
            qconv::QResult::F32(_) => Err(no_int8(node)),
        },
        Step::Gather(g) => qlayout::gather(&g, x, b.filter(|_| g.b.is_some())),
        Step::MaxPool(win) => qlayout::max_pool(x, &win),
        Step::Pad(pads, mode) => qlayout::pad2d(x, pads, mode),
        Step::GlobalAvgPool => qlayout::global_avg_pool(x, out),
        Step::AvgPool(pool) => qlayout::avg_pool(x, &pool),
        Step::Flatten => Ok(qlayout::flatten(x)),
    }
}

/// The f32 form of int8 value `v` as f32 ops expect it: 2-d `[N, K]` for Linear, Flatten and
/// GlobalAvgPool outputs (int8 keeps them as `[N, K, 1, 1]`).
pub fn f32_shape(g: &Graph, v: ValueId, shape: [usize; 4]) -> Vec<usize> {
    match g.nodes.get(v).map(|n| &n.op) {
        Some(Op::Linear { .. } | Op::Flatten | Op::GlobalAvgPool) => {
            vec![shape[0], shape[1] * shape[2] * shape[3]]
        }
        _ => shape.to_vec(),
    }
}

/// The CPU dequantization of int8 value `v` in its f32 shape.
pub fn cpu_dequantize(g: &Graph, v: ValueId, x: &QArray) -> Array {
    let a = x.dequantize();
    Array::new(&f32_shape(g, v, x.shape), a.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Act;
    use crate::quant::int8::QWeights;

    fn layer(input: QFormat) -> QConv {
        QConv {
            weights: QWeights {
                shape: [2, 2, 1, 1],
                q: vec![1; 4],
                scale: vec![0.1; 2],
                bits: 8,
            },
            bias: None,
            stride: 1,
            pad: 0.into(),
            dilation: [1, 1],
            groups: 1,
            input,
            input_channel_scales: None,
            act: Act::Relu,
            output: None,
        }
    }

    #[test]
    fn int8_reaches_only_ops_whose_inputs_are_int8() {
        let conv = |w: &str| Op::relu_conv(w, 0);
        let mut g = Graph::default();
        let x = g.push("x", Op::Input, &[]);
        let a = g.push("a", conv("a"), &[x]);
        let b = g.push("b", conv("b"), &[a]);
        let s = g.push("s", Op::Add { act: Act::Relu }, &[a, b]);
        let f = g.push("f", Op::Add { act: Act::Identity }, &[s, x]);
        let p = g.push(
            "p",
            Op::MaxPool {
                kernel: 2,
                stride: 2,
                pad: 0.into(),
                ceil: false,
                dilation: [1, 1],
            },
            &[s],
        );
        let fl = g.push("fl", Op::Flatten, &[p]);
        let out = g.push("out", Op::Concat, &[fl, f]);
        let dilated = Op::MaxPool {
            kernel: 2,
            stride: 1,
            pad: 0.into(),
            ceil: true,
            dilation: [2, 2],
        };
        let dp = g.push("dp", dilated, &[s]);
        let avg = |count_pad| Op::AvgPool {
            kernel: 3,
            stride: 2,
            pad: 1.into(),
            count_pad,
            ceil: true,
        };
        let ap = g.push("ap", avg(false), &[s]);
        let ap2 = g.push("ap2", avg(true), &[s]);
        g.output = out;
        let u = QFormat::unsigned(0.1);
        let layers: HashMap<ValueId, QConv> = [(a, layer(u)), (b, layer(u))].into();
        // No value formats: the mixed scheme (nothing chains: `a` has two readers).
        let mixed = g.int8_plan(&layers, &BTreeMap::new());
        assert!(mixed.formats.is_empty());
        assert_eq!(mixed.int8_nodes(), [a, b]);
        let values: BTreeMap<ValueId, QFormat> =
            [(a, u), (b, u), (s, u), (f, u), (out, u), (ap, u)].into();
        let plan = g.int8_plan(&layers, &values);
        // `f` reads the f32 input, and so the concat of it stays f32; a dilated max pool stays
        // f32; an average pool needs a format of its own (`ap2` has none).
        assert_eq!(plan.int8_nodes(), [a, b, s, p, fl, ap]);
        assert!(![dp, ap2].iter().any(|v| plan.formats.contains_key(v)));
        assert_eq!(plan.layers[&a].output, Some(u));
        assert!(plan.is_int8_op(p) && !plan.is_int8_op(a));
    }

    #[test]
    fn a_shortcut_after_its_block_runs_early_so_the_add_fuses() {
        let conv = |w: &str| Op::relu_conv(w, 0);
        let mut g = Graph::default();
        let x = g.push("x", Op::Input, &[]);
        let a = g.push("a", conv("a"), &[x]);
        let b = g.push("b", conv("b"), &[a]);
        let short = g.push("short", Op::ShortcutA { pad: 0 }, &[a]);
        let s = g.push("s", Op::Add { act: Act::Relu }, &[b, short]);
        // The same block with the shortcut first, and one whose shortcut needs the conv.
        let c = g.push("c", conv("c"), &[s]);
        let d = g.push("d", conv("d"), &[c]);
        let t = g.push("t", Op::Add { act: Act::Relu }, &[s, d]);
        let e = g.push("e", conv("e"), &[t]);
        let late = g.push("late", Op::ShortcutA { pad: 0 }, &[e]);
        let v = g.push("v", Op::Add { act: Act::Relu }, &[e, late]);
        g.output = v;
        let u = QFormat::unsigned(0.1);
        let layers: HashMap<ValueId, QConv> = [a, b, c, d, e].map(|i| (i, layer(u))).into();
        let values: BTreeMap<ValueId, QFormat> = [a, b, c, d, e, s, t, v].map(|i| (i, u)).into();
        let plan = g.int8_plan(&layers, &values);
        let fusable = plan.fusable_adds(&g, |_| true);
        // `e` has two readers, so `v` does not fuse.
        assert_eq!(fusable, [(b, (s, true)), (d, (t, false))].into());
        // Where the runner's kernel for `d` takes no add, `t` does not fuse either.
        let fusable_b = plan.fusable_adds(&g, |u| u != d);
        assert_eq!(fusable_b, [(b, (s, true))].into());
        let order = plan.schedule(&g, &fusable);
        assert_eq!(order, [x, a, short, b, s, c, d, t, e, late, v]);
        let no_fusion = plan.schedule(&g, &HashMap::new());
        assert_eq!(no_fusion, (0..g.nodes.len()).collect::<Vec<_>>());
    }
}
