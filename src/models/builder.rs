//! Builds graphs in PyTorch module order while recording the parameter shapes each layer expects.

use crate::graph::{bn_names, Act, Graph, Op, ValueId};

#[derive(Default)]
pub struct Builder {
    pub g: Graph,
    pub shapes: Vec<(String, Vec<usize>)>,
}

pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A bias-free k x k conv with "same" padding.
    pub fn same(cin: usize, cout: usize, k: usize, stride: usize) -> Self {
        ConvSpec {
            cin,
            cout,
            k,
            stride,
            pad: (k - 1) / 2,
            groups: 1,
            bias: false,
        }
    }
    pub fn depthwise(c: usize, k: usize, stride: usize) -> Self {
        ConvSpec {
            groups: c,
            ..ConvSpec::same(c, c, k, stride)
        }
    }
    pub fn with_bias(self) -> Self {
        ConvSpec { bias: true, ..self }
    }
}

impl Builder {
    pub fn input(&mut self) -> ValueId {
        self.g.push("input", Op::Input, &[])
    }

    pub fn conv(&mut self, name: &str, x: ValueId, c: &ConvSpec) -> ValueId {
        let weight = format!("{name}.weight");
        self.shapes
            .push((weight.clone(), vec![c.cout, c.cin / c.groups, c.k, c.k]));
        let bias = c.bias.then(|| format!("{name}.bias"));
        if let Some(b) = &bias {
            self.shapes.push((b.clone(), vec![c.cout]));
        }
        let op = Op::Conv2d {
            weight,
            bias,
            stride: c.stride,
            pad: c.pad.into(),
            dilation: [1, 1],
            groups: c.groups,
            act: Act::Identity,
        };
        self.g.push(name, op, &[x])
    }

    pub fn bn(&mut self, name: &str, x: ValueId, c: usize, act: Act) -> ValueId {
        for n in bn_names(name) {
            self.shapes.push((n, vec![c]));
        }
        let op = Op::BatchNorm {
            prefix: name.to_string(),
            eps: 1e-5,
            act,
        };
        self.g.push(name, op, &[x])
    }

    /// conv (no bias) -> BN -> act, with PyTorch names `{conv}.weight` and `{bn}.*`.
    pub fn conv_bn(&mut self, conv: &str, bn: &str, x: ValueId, c: &ConvSpec, act: Act) -> ValueId {
        let y = self.conv(conv, x, c);
        self.bn(bn, y, c.cout, act)
    }

    pub fn linear(&mut self, name: &str, x: ValueId, fin: usize, fout: usize, act: Act) -> ValueId {
        let weight = format!("{name}.weight");
        let bias = format!("{name}.bias");
        self.shapes.push((weight.clone(), vec![fout, fin]));
        self.shapes.push((bias.clone(), vec![fout]));
        let op = Op::Linear {
            weight,
            bias: Some(bias),
            act,
        };
        self.g.push(name, op, &[x])
    }

    pub fn op(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> ValueId {
        self.g.push(name, op, inputs)
    }

    /// Global average pool then flatten to [N, C].
    pub fn gap(&mut self, x: ValueId) -> ValueId {
        self.g.push("gap", Op::GlobalAvgPool, &[x])
    }
}
