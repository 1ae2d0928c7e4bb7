//! A host-side graph of ops over tensors: models are built once as a `Graph` (SSA: node i
//! produces value i), then run on the GPU (`exec`), on the CPU reference (`cpu`) or on the
//! autodiff tape (`replay`), all three keeping their values in `walk::Values`. Quantization
//! rewrites graphs.

pub mod blocks;
pub mod cpu;
pub mod exec;
pub mod int8;
pub mod params;
pub mod passes;
pub mod profile;
pub mod replay;
pub mod tape;
pub mod trainable;
pub mod validate;
pub mod walk;

pub use crate::ops::{Act, Pads};
pub use params::Params;

pub type ValueId = usize;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// The image batch [N, C, H, W] (C = 3 for RGB).
    Input,
    Conv2d {
        weight: String,
        bias: Option<String>,
        stride: usize,
        /// Zero padding per side: a number in graphs when symmetric (see `Pads`).
        pad: Pads,
        /// Tap spacing [h, w]; absent in graphs stored before dilation existed (dense).
        #[serde(default = "dense", skip_serializing_if = "is_dense")]
        dilation: [usize; 2],
        groups: usize,
        act: Act,
    },
    /// `x * W^T + b` with PyTorch's [out, in] weight.
    Linear {
        weight: String,
        bias: Option<String>,
        act: Act,
    },
    /// Inference-form batch norm; `prefix` names `{prefix}.weight/.bias/.running_mean/.running_var`.
    BatchNorm {
        prefix: String,
        eps: f32,
        act: Act,
    },
    Act(Act),
    /// act(a + b).
    Add {
        act: Act,
    },
    /// CIFAR-ResNet option A: x[:, :, ::2, ::2] zero-padded with `pad` channels each side.
    ShortcutA {
        pad: usize,
    },
    Concat,
    SliceChannels {
        start: usize,
        len: usize,
    },
    ChannelShuffle {
        groups: usize,
    },
    /// Max pooling; `ceil`: ONNX `ceil_mode` (a last partial window counts; FP32 only).
    MaxPool {
        kernel: usize,
        stride: usize,
        pad: Pads,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil: bool,
        /// Tap spacing [h, w]; absent in graphs stored before dilated pooling existed.
        #[serde(default = "dense", skip_serializing_if = "is_dense")]
        dilation: [usize; 2],
    },
    /// Average pooling; `count_pad`: the zero padding counts in each window's divisor (which
    /// is the window clipped to the padded input); `ceil` as for MaxPool.
    AvgPool {
        kernel: usize,
        stride: usize,
        pad: Pads,
        count_pad: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil: bool,
    },
    GlobalAvgPool,
    /// Spatial padding that no window op absorbs (ONNX Pad on H and W; int8 on the integer
    /// path; no backward).
    Pad {
        pads: Pads,
        mode: crate::ops::pad2d::PadMode,
    },
    Flatten,
    /// Local response normalization across `size` channels (ONNX LRN; FP32 only).
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// Softmax over the classes of [N, K] (a classifier's last op; FP32 only, no backward).
    Softmax,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// The PyTorch module path this node came from (e.g. `layer1.0.conv1`), for reports.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub output: ValueId,
}

impl Op {
    /// The window of a MaxPool or AvgPool node.
    pub fn pool_window(&self) -> Option<crate::ops::pool::Window> {
        let (&kernel, &stride, &pads, &ceil, dilation) = match self {
            Op::MaxPool {
                kernel,
                stride,
                pad,
                ceil,
                dilation,
            } => (kernel, stride, pad, ceil, *dilation),
            Op::AvgPool {
                kernel,
                stride,
                pad,
                ceil,
                ..
            } => (kernel, stride, pad, ceil, dense()),
            _ => return None,
        };
        Some(crate::ops::pool::Window {
            kernel,
            stride,
            pads,
            ceil,
            dilation,
        })
    }
}

impl Graph {
    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: &[ValueId]) -> ValueId {
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
        });
        self.output = self.nodes.len() - 1;
        self.output
    }

    /// The quantized layers with chaining applied: a layer whose output is read only by one
    /// other quantized layer (as that layer's sole input) requantizes straight into the
    /// consumer's input format (`output: Some(consumer.input)`, activation fused), so the
    /// consumer takes the packed int8 tensor with no f32 round trip. Derived, never stored:
    /// the GPU runner and the CPU simulation both call this, so they compute the same thing.
    pub fn chain_quantized(
        &self,
        layers: &std::collections::HashMap<ValueId, crate::quant::int8::QConv>,
    ) -> std::collections::HashMap<ValueId, crate::quant::int8::QConv> {
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.inputs {
                if let Some(r) = readers.get_mut(v) {
                    r.push(i);
                }
            }
        }
        let mut out = layers.clone();
        for (&v, q) in layers {
            if q.output.is_some() || v == self.output {
                continue;
            }
            let [c] = readers.get(v).map_or(&[][..], |r| r.as_slice()) else {
                continue;
            };
            // Per-channel inputs (depthwise) quantize from f32 with their own scales.
            let Some(consumer) = layers.get(c).filter(|q| q.input_channel_scales.is_none()) else {
                continue;
            };
            if self.nodes[*c].inputs != [v] {
                continue;
            }
            let mut chained = q.clone();
            chained.output = Some(consumer.input);
            // Only clamp-like activations fuse into an int8 output.
            if chained.requant().is_ok() {
                out.insert(v, chained);
            }
        }
        out
    }

    /// Names of the parameter tensors each node reads.
    pub fn param_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            match &n.op {
                Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias, .. } => {
                    out.push(weight.clone());
                    out.extend(bias.clone());
                }
                Op::BatchNorm { prefix, .. } => {
                    out.extend(bn_names(prefix));
                }
                _ => {}
            }
        }
        out
    }
}

/// Dilation 1 on both axes: an ordinary conv.
pub fn dense() -> [usize; 2] {
    [1, 1]
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_dense(d: &[usize; 2]) -> bool {
    *d == dense()
}

/// `{prefix}.weight, .bias, .running_mean, .running_var`.
pub fn bn_names(prefix: &str) -> [String; 4] {
    [
        format!("{prefix}.weight"),
        format!("{prefix}.bias"),
        format!("{prefix}.running_mean"),
        format!("{prefix}.running_var"),
    ]
}

#[cfg(test)]
impl Op {
    /// A stride-1, undilated ReLU conv over weight `w` with `pad` on every side (graph tests).
    pub(crate) fn relu_conv(w: &str, pad: usize) -> Op {
        Op::Conv2d {
            weight: w.into(),
            bias: None,
            stride: 1,
            pad: pad.into(),
            dilation: [1, 1],
            groups: 1,
            act: crate::ops::Act::Relu,
        }
    }
}
