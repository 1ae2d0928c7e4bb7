//! Blocks for block reconstruction (BRECQ), found from the graph alone: a cut point is a
//! value that every path from the input to the output passes through, and a block is the
//! subgraph from one cut point to the next that holds at least one quantized layer (cut
//! segments without one join the block after them; those after the last layer are left out).
//! In a ResNet that is each BasicBlock (both convs, the shortcut, the add and its ReLU); the
//! stem and the classifier become one-layer blocks.

use super::{Graph, Op, ValueId};

/// A block: its nodes run on `input` and end at `output`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The cut point the block reads (a value outside it).
    pub input: ValueId,
    /// The cut point it ends at (its last node).
    pub output: ValueId,
    /// Its nodes, in graph order (`output` last).
    pub nodes: Vec<ValueId>,
    /// Its quantized layers, in graph order.
    pub layers: Vec<ValueId>,
}

impl Graph {
    /// The nodes on some path from an input to the output.
    fn on_paths(&self) -> Vec<bool> {
        let n = self.nodes.len();
        let mut from_input = vec![false; n];
        for (i, node) in self.nodes.iter().enumerate() {
            from_input[i] = matches!(node.op, Op::Input)
                || node
                    .inputs
                    .iter()
                    .any(|&v| from_input.get(v) == Some(&true));
        }
        let mut to_output = vec![false; n];
        if let Some(t) = to_output.get_mut(self.output) {
            *t = true;
        }
        for i in (0..n).rev() {
            if to_output[i] {
                for &v in &self.nodes[i].inputs {
                    if let Some(t) = to_output.get_mut(v) {
                        *t = true;
                    }
                }
            }
        }
        from_input
            .iter()
            .zip(&to_output)
            .map(|(a, b)| *a && *b)
            .collect()
    }

    /// The cut points, in order (the input and the output among them). Nodes are in
    /// topological order, so a value on the paths is a cut exactly when no edge between two
    /// such values jumps over it.
    pub fn cut_points(&self) -> Vec<ValueId> {
        let on = self.on_paths();
        let n = self.nodes.len();
        // cover[v] > 0: some edge u -> w with u < v < w.
        let mut delta = vec![0i64; n + 1];
        for (w, node) in self.nodes.iter().enumerate().filter(|(w, _)| on[*w]) {
            for &u in node.inputs.iter().filter(|&&u| u < n && on[u]) {
                if u + 1 < w {
                    delta[u + 1] += 1;
                    delta[w] -= 1;
                }
            }
        }
        let mut cover = 0;
        let mut cuts = Vec::new();
        for v in 0..n {
            cover += delta[v];
            if on[v] && cover == 0 {
                cuts.push(v);
            }
        }
        cuts
    }

    /// The blocks holding the layers for which `is_layer` holds (see the module docs).
    pub fn blocks(&self, is_layer: impl Fn(ValueId) -> bool) -> Vec<Block> {
        let on = self.on_paths();
        let cuts = self.cut_points();
        let mut out = Vec::new();
        let Some(&first) = cuts.first() else {
            return out;
        };
        let mut open = Block {
            input: first,
            output: first,
            nodes: Vec::new(),
            layers: Vec::new(),
        };
        for w in cuts.windows(2) {
            for v in (w[0] + 1..=w[1]).filter(|&v| on[v]) {
                open.nodes.push(v);
                if is_layer(v) {
                    open.layers.push(v);
                }
            }
            open.output = w[1];
            if !open.layers.is_empty() {
                let next = Block {
                    input: w[1],
                    output: w[1],
                    nodes: Vec::new(),
                    layers: Vec::new(),
                };
                out.push(std::mem::replace(&mut open, next));
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "blocks_tests.rs"]
mod tests;
