//! The walk every graph interpreter shares (GPU runner, CPU reference, autodiff replay): nodes
//! in order with the values that die at each, a value store that names the node when an input
//! is missing, and a conv/linear node's settings resolved once.

use super::{Graph, Node, Op, ValueId};
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::{Act, Pads};

/// One node of a walk.
pub struct Step<'a> {
    pub id: ValueId,
    pub node: &'a Node,
    /// The values this node reads last (never the graph output): free them after it runs.
    pub dead: Vec<ValueId>,
}

impl Graph {
    /// The nodes in order, each with the values whose last reader it is.
    pub fn walk(&self) -> impl Iterator<Item = Step<'_>> {
        self.walk_in((0..self.nodes.len()).collect())
    }

    /// The nodes in `order` (every node, each after its inputs), each with the values whose
    /// last reader in that order it is.
    pub fn walk_in(&self, order: Vec<ValueId>) -> impl Iterator<Item = Step<'_>> {
        let mut last: Vec<Option<ValueId>> = vec![None; self.nodes.len()];
        for &id in &order {
            for &v in &self.nodes[id].inputs {
                last[v] = Some(id);
            }
        }
        if let Some(l) = last.get_mut(self.output) {
            *l = None;
        }
        order.into_iter().map(move |id| {
            let node = &self.nodes[id];
            let mut dead: Vec<ValueId> = Vec::new();
            for &v in &node.inputs {
                if last[v] == Some(id) && !dead.contains(&v) {
                    dead.push(v);
                }
            }
            Step { id, node, dead }
        })
    }
}

impl Graph {
    /// The nodes value `to` needs computed when value `from` is given: its ancestors (itself
    /// included) not reached only through `from`. Errors when one of them is the graph input
    /// (then `to` does not depend on the input through `from` alone).
    pub fn needed_from(&self, from: ValueId, to: ValueId) -> Result<Vec<bool>> {
        let n = self.nodes.len();
        if from >= n || to >= n {
            return Err(Error::Invalid(format!(
                "values {from} and {to}: the graph has {n} values"
            )));
        }
        let mut needed = vec![false; n];
        needed[to] = to != from;
        for i in (0..n).rev() {
            if !needed[i] {
                continue;
            }
            let node = &self.nodes[i];
            if matches!(node.op, Op::Input) {
                return Err(Error::Invalid(format!(
                    "value {to} depends on the graph input other than through value {from}"
                )));
            }
            for &v in &node.inputs {
                if v != from {
                    needed[v] = true;
                }
            }
        }
        Ok(needed)
    }
}

/// One slot per node for the values a walk computes.
pub struct Values<T> {
    slots: Vec<Option<T>>,
}

impl<T> Values<T> {
    pub fn new(g: &Graph) -> Values<T> {
        Values {
            slots: (0..g.nodes.len()).map(|_| None).collect(),
        }
    }

    pub fn get(&self, v: ValueId) -> Option<&T> {
        self.slots.get(v).and_then(Option::as_ref)
    }

    /// Input `k` of `node`, or an error naming the node.
    pub fn input(&self, node: &Node, k: usize) -> Result<&T> {
        node.inputs
            .get(k)
            .and_then(|&v| self.get(v))
            .ok_or_else(|| Error::Invalid(format!("{}: input {k} missing", node.name)))
    }

    /// Every input of `node`, in order.
    pub fn inputs(&self, node: &Node) -> Result<Vec<&T>> {
        (0..node.inputs.len())
            .map(|k| self.input(node, k))
            .collect()
    }

    pub fn set(&mut self, v: ValueId, value: T) {
        self.slots[v] = Some(value);
    }

    /// Removes value `v` (freeing it, or handing it to the caller).
    pub fn take(&mut self, v: ValueId) -> Option<T> {
        self.slots.get_mut(v).and_then(Option::take)
    }
}

/// A conv2d or linear node's settings (linear as the 1x1 conv on `[N, K, 1, 1]` it is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerSpec<'a> {
    pub weight: &'a str,
    pub bias: Option<&'a str>,
    pub stride: usize,
    pub pad: Pads,
    pub dilation: [usize; 2],
    pub groups: usize,
    pub act: Act,
    pub linear: bool,
}

impl LayerSpec<'_> {
    pub fn conv_params(&self) -> Conv2dParams {
        Conv2dParams::new(self.stride, 0, self.groups)
            .padded(self.pad)
            .dilated(self.dilation)
    }
}

impl Op {
    /// The settings of a conv2d or linear node; None for other ops.
    pub fn layer(&self) -> Option<LayerSpec<'_>> {
        match self {
            Op::Conv2d {
                weight,
                bias,
                stride,
                pad,
                dilation,
                groups,
                act,
            } => Some(LayerSpec {
                weight,
                bias: bias.as_deref(),
                stride: *stride,
                pad: *pad,
                dilation: *dilation,
                groups: *groups,
                act: *act,
                linear: false,
            }),
            Op::Linear { weight, bias, act } => Some(LayerSpec {
                weight,
                bias: bias.as_deref(),
                stride: 1,
                pad: Pads::same(0),
                dilation: super::dense(),
                groups: 1,
                act: *act,
                linear: true,
            }),
            _ => None,
        }
    }
}

impl Node {
    /// A conv/linear node without a fused residual: what the INT8 kernels run.
    pub fn is_quantizable(&self) -> bool {
        self.op.layer().is_some() && self.inputs.len() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_dies_at_its_last_reader_and_the_output_never() {
        let mut g = Graph::default();
        let x = g.push("x", Op::Input, &[]);
        let a = g.push("a", Op::Act(Act::Relu), &[x]);
        let b = g.push("b", Op::Add { act: Act::Identity }, &[x, a]);
        let c = g.push("c", Op::Add { act: Act::Identity }, &[b, b]);
        let _unread = g.push("d", Op::Act(Act::Relu), &[c]);
        g.output = c;
        let dead: Vec<Vec<ValueId>> = g.walk().map(|s| s.dead).collect();
        assert_eq!(dead, vec![vec![], vec![], vec![x, a], vec![b], vec![]]);
        // In the order x, b, a, c, x's last reader is a (in graph order it is b).
        let mut h = Graph::default();
        let x = h.push("x", Op::Input, &[]);
        let a = h.push("a", Op::Act(Act::Relu), &[x]);
        let b = h.push("b", Op::Act(Act::Relu), &[x]);
        let c = h.push("c", Op::Add { act: Act::Identity }, &[a, b]);
        h.output = c;
        let steps: Vec<(ValueId, Vec<ValueId>)> = h
            .walk_in(vec![x, b, a, c])
            .map(|s| (s.id, s.dead))
            .collect();
        assert_eq!(
            steps,
            vec![(x, vec![]), (b, vec![]), (a, vec![x]), (c, vec![a, b])]
        );
    }

    #[test]
    fn a_missing_input_names_the_node() {
        let mut g = Graph::default();
        let x = g.push("x", Op::Input, &[]);
        g.push("relu1", Op::Act(Act::Relu), &[x]);
        let v: Values<u8> = Values::new(&g);
        let err = v.input(&g.nodes[1], 0).unwrap_err().to_string();
        assert!(err.contains("relu1: input 0 missing"), "{err}");
    }

    #[test]
    fn linear_is_a_1x1_conv() {
        let op = Op::Linear {
            weight: "fc.weight".into(),
            bias: None,
            act: Act::Identity,
        };
        let l = op.layer().unwrap();
        assert!(l.linear && l.weight == "fc.weight" && l.bias.is_none());
        assert_eq!(l.conv_params(), Conv2dParams::new(1, 0, 1));
        assert!(Op::Flatten.layer().is_none());
    }
}
