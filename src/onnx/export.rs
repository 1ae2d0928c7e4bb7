//! FP32 models to ONNX (opset 13): each synthcal op becomes the standard ONNX op(s) that
//! compute it, a fused activation a node of its own after it.

use super::proto::{
    attr_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    TypeTensor, ValueInfoProto,
};
use super::{META_CLASSES, META_MEAN, META_STD, OPSET};
use crate::error::{Error, Result};
use crate::graph::walk::LayerSpec;
use crate::graph::{Act, Graph, Op, Params, ValueId};
use crate::models::{Model, Normalization};
use crate::ops::pad2d::PadMode;
use crate::quant::int8::{QConv, QFormat};
use prost::Message;
use std::collections::BTreeMap;

/// The model as an ONNX file (opset 13): input `input` of shape [batch, C, H, W] taking
/// normalized images, output the logits; normalization and class names in `metadata_props`.
pub fn export(model: &Model) -> Result<Vec<u8>> {
    encode(&Source {
        name: &model.arch.name,
        graph: &model.arch.graph,
        params: &model.params,
        norm: model.arch.norm.clone(),
        input_shape: model.input_shape(),
        class_names: &model.class_names,
        layers: None,
        values: None,
    })
}

/// Writes one quantized layer (name, op, its INT8 description, input names).
pub(super) type LayerWriter = fn(&mut Writer, &str, &Op, &QConv, &[String]) -> Result<()>;

/// What an exported file is written from: an FP32 model, or an INT8 model with its quantized
/// layers and the writer that gives them their form.
pub(super) struct Source<'a> {
    pub name: &'a str,
    pub graph: &'a Graph,
    pub params: &'a Params,
    pub norm: Normalization,
    /// `[channels, height, width]`.
    pub input_shape: [usize; 3],
    pub class_names: &'a [String],
    pub layers: Option<(&'a BTreeMap<ValueId, QConv>, LayerWriter)>,
    /// Int8 values in their formats, and the writer of their fake quantization.
    pub values: Option<(&'a BTreeMap<ValueId, QFormat>, ValueWriter)>,
}

/// Writes a fake quantization of value `name` in a format; returns the dequantized name.
pub(super) type ValueWriter = fn(&mut Writer, &str, QFormat) -> Result<String>;

/// The ONNX file of `src`.
pub(super) fn encode(src: &Source) -> Result<Vec<u8>> {
    let g = src.graph;
    let shapes = infer_shapes(src)?;
    let mut w = Writer::default();
    let mut names: Vec<String> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let name = unique_name(&n.name, i, &names);
        let ins: Vec<String> = n.inputs.iter().map(|&v| names[v].clone()).collect();
        match src.layers.and_then(|(l, write)| Some((l.get(&i)?, write))) {
            Some((q, write)) => write(&mut w, &name, &n.op, q, &ins)?,
            None => w.node_for(&name, &n.op, &ins, n.inputs.first().map(|&v| &shapes[v]))?,
        }
        let name = match src.values.and_then(|(v, write)| Some((v.get(&i)?, write))) {
            Some((&f, write)) => write(&mut w, &name, f)?,
            None => name,
        };
        names.push(name);
    }
    for name in src.params.tensors.keys() {
        if !w.used.contains(name) {
            continue;
        }
        let a = src.params.get(name)?;
        w.init.push(f32_tensor(name, &a.shape, &a.data));
    }
    let [c, h, wd] = src.input_shape;
    let graph = GraphProto {
        node: w.nodes,
        name: Some(src.name.to_string()),
        initializer: w.init,
        input: vec![value_info("input", &[None, Some(c), Some(h), Some(wd)])],
        output: vec![value_info(
            &names[g.output],
            &std::iter::once(None)
                .chain(shapes[g.output].iter().map(|&d| Some(d)))
                .collect::<Vec<_>>(),
        )],
        ..Default::default()
    };
    let norm = &src.norm;
    let json = |r: serde_json::Result<String>| {
        r.map_err(|e| Error::Invalid(format!("ONNX export: metadata: {e}")))
    };
    let meta = [
        (META_MEAN, json(serde_json::to_string(&norm.mean))?),
        (META_STD, json(serde_json::to_string(&norm.std))?),
        (META_CLASSES, json(serde_json::to_string(src.class_names))?),
    ];
    let proto = ModelProto {
        ir_version: Some(7),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("synthcal".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

/// ONNX value names must be unique; synthcal's node names usually are.
fn unique_name(name: &str, i: usize, taken: &[String]) -> String {
    let base = if name.is_empty() {
        format!("v{i}")
    } else {
        name.to_string()
    };
    if base == "input" && i != 0 || taken.contains(&base) {
        format!("{base}#{i}")
    } else {
        base
    }
}

#[derive(Default)]
pub(super) struct Writer {
    pub nodes: Vec<NodeProto>,
    pub init: Vec<TensorProto>,
    pub used: std::collections::BTreeSet<String>,
}

impl Writer {
    pub(super) fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[String],
        output: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.to_vec(),
            output: vec![output.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn param(&mut self, name: &str) -> String {
        self.used.insert(name.to_string());
        name.to_string()
    }

    fn const_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.init.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(data_type::INT64),
            int64_data: values.to_vec(),
            name: Some(name.to_string()),
            ..Default::default()
        });
        name.to_string()
    }

    /// The main op writes `{name}:pre` and an activation node `{name}:act` writes `name`,
    /// unless the activation is the identity.
    pub(super) fn with_act(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[String],
        act: Act,
        attrs: Vec<AttributeProto>,
    ) -> Result<()> {
        if act == Act::Identity {
            self.push(op, name, inputs, name, attrs);
            return Ok(());
        }
        let pre = format!("{name}:pre");
        self.push(op, name, inputs, &pre, attrs);
        self.act(&format!("{name}:act"), &pre, name, act)
    }

    fn act(&mut self, node: &str, input: &str, output: &str, act: Act) -> Result<()> {
        let ins = [input.to_string()];
        match act {
            Act::Identity => self.push("Identity", node, &ins, output, vec![]),
            Act::Relu => self.push("Relu", node, &ins, output, vec![]),
            Act::Tanh => self.push("Tanh", node, &ins, output, vec![]),
            Act::Sigmoid => self.push("Sigmoid", node, &ins, output, vec![]),
            Act::LeakyRelu(a) => {
                self.push("LeakyRelu", node, &ins, output, vec![float("alpha", a)])
            }
            Act::HardSwish => {
                // HardSwish is opset 14; x * HardSigmoid(x) is its opset-13 form.
                let h = format!("{node}.hsig");
                let attrs = vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)];
                self.push("HardSigmoid", &h, &ins, &h, attrs);
                self.push("Mul", node, &[input.to_string(), h.clone()], output, vec![]);
            }
            Act::Relu6 => {
                let lo = format!("{node}.min");
                let hi = format!("{node}.max");
                self.init.push(f32_tensor(&lo, &[], &[0.0]));
                self.init.push(f32_tensor(&hi, &[], &[6.0]));
                self.push("Clip", node, &[input.to_string(), lo, hi], output, vec![]);
            }
        }
        Ok(())
    }

    /// A Conv (or, for a linear layer, a Gemm) on `inputs` (x, weight, optional bias), then
    /// the layer's activation.
    pub(super) fn layer(&mut self, name: &str, l: &LayerSpec, inputs: &[String]) -> Result<()> {
        if l.linear {
            return self.with_act("Gemm", name, inputs, l.act, vec![int("transB", 1)]);
        }
        let s = l.stride as i64;
        let d = l.dilation.map(|d| d as i64);
        let attrs = vec![
            ints("strides", &[s, s]),
            ints("pads", &onnx_pads(&l.pad)),
            ints("dilations", &d),
            int("group", l.groups as i64),
        ];
        self.with_act("Conv", name, inputs, l.act, attrs)
    }

    /// The ONNX node(s) for one synthcal node; `in_shape`: its first input's shape per image.
    fn node_for(
        &mut self,
        name: &str,
        op: &Op,
        ins: &[String],
        in_shape: Option<&Vec<usize>>,
    ) -> Result<()> {
        let unsupported = |what: &str| {
            Error::Invalid(format!(
                "ONNX export: node `{name}`: {what} has no ONNX form here"
            ))
        };
        match op {
            Op::Input => {
                // The graph input is named `input`; an Identity keeps the node's own name.
                if name != "input" {
                    self.push("Identity", name, &["input".to_string()], name, vec![]);
                }
            }
            Op::Conv2d { .. } | Op::Linear { .. } => {
                let Some(l) = op.layer() else {
                    return Err(unsupported("a layer without settings"));
                };
                let mut inputs = vec![ins[0].clone(), self.param(l.weight)];
                inputs.extend(l.bias.map(|b| self.param(b)));
                self.layer(name, &l, &inputs)?;
            }
            Op::BatchNorm { prefix, eps, act } => {
                let mut inputs = vec![ins[0].clone()];
                for n in crate::graph::bn_names(prefix) {
                    inputs.push(self.param(&n));
                }
                self.with_act(
                    "BatchNormalization",
                    name,
                    &inputs,
                    *act,
                    vec![float("epsilon", *eps)],
                )?;
            }
            Op::Act(a) => self.act(name, &ins[0], name, *a)?,
            Op::Add { act } => self.with_act("Add", name, ins, *act, vec![])?,
            Op::Concat => self.push("Concat", name, ins, name, vec![int("axis", 1)]),
            Op::SliceChannels { start, len } => {
                let inputs = [
                    ins[0].clone(),
                    self.const_i64(&format!("{name}.starts"), &[*start as i64]),
                    self.const_i64(&format!("{name}.ends"), &[(start + len) as i64]),
                    self.const_i64(&format!("{name}.axes"), &[1]),
                ];
                self.push("Slice", name, &inputs, name, vec![]);
            }
            Op::ChannelShuffle { groups } => {
                let [c, h, w] =
                    chw(in_shape).ok_or_else(|| unsupported("a shuffle of a non-image value"))?;
                let g = *groups as i64;
                let s5 = self.const_i64(&format!("{name}.shape5"), &[-1, g, c / g, h, w]);
                let s4 = self.const_i64(&format!("{name}.shape4"), &[-1, c, h, w]);
                let (a, b) = (format!("{name}:grouped"), format!("{name}:swapped"));
                self.push(
                    "Reshape",
                    &format!("{name}:reshape"),
                    &[ins[0].clone(), s5],
                    &a,
                    vec![],
                );
                self.push(
                    "Transpose",
                    &format!("{name}:transpose"),
                    &[a],
                    &b,
                    vec![ints("perm", &[0, 2, 1, 3, 4])],
                );
                self.push("Reshape", name, &[b, s4], name, vec![]);
            }
            Op::ShortcutA { pad } => {
                // x[:, :, ::2, ::2], then `pad` zero channels on each side.
                let big = i64::MAX;
                let inputs = [
                    ins[0].clone(),
                    self.const_i64(&format!("{name}.starts"), &[0, 0]),
                    self.const_i64(&format!("{name}.ends"), &[big, big]),
                    self.const_i64(&format!("{name}.axes"), &[2, 3]),
                    self.const_i64(&format!("{name}.steps"), &[2, 2]),
                ];
                let sub = format!("{name}:subsampled");
                self.push("Slice", &format!("{name}:slice"), &inputs, &sub, vec![]);
                let p = *pad as i64;
                let pads = self.const_i64(&format!("{name}.pads"), &[0, p, 0, 0, 0, p, 0, 0]);
                self.push("Pad", name, &[sub, pads], name, vec![]);
            }
            Op::Pad { pads, mode } => {
                let [t, l, b, r] = onnx_pads(pads);
                let p = self.const_i64(&format!("{name}.pads"), &[0, 0, t, l, 0, 0, b, r]);
                let mut inputs = vec![ins[0].clone(), p];
                let mode = match mode {
                    PadMode::Constant(v) => {
                        let value = format!("{name}.value");
                        self.init.push(f32_tensor(&value, &[], &[*v]));
                        inputs.push(value);
                        "constant"
                    }
                    PadMode::Reflect => "reflect",
                    PadMode::Edge => "edge",
                };
                let attrs = vec![AttributeProto {
                    name: Some("mode".into()),
                    r#type: Some(attr_type::STRING),
                    s: Some(mode.as_bytes().to_vec()),
                    ..Default::default()
                }];
                self.push("Pad", name, &inputs, name, attrs);
            }
            Op::MaxPool {
                kernel,
                stride,
                pad,
                ceil,
                dilation,
            } => {
                let (k, s) = (*kernel as i64, *stride as i64);
                let mut attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &onnx_pads(pad)),
                ];
                if *dilation != [1, 1] {
                    attrs.push(ints("dilations", &dilation.map(|d| d as i64)));
                }
                attrs.extend(ceil.then(|| int("ceil_mode", 1)));
                self.push("MaxPool", name, ins, name, attrs);
            }
            Op::Softmax => self.push("Softmax", name, ins, name, vec![int("axis", 1)]),
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                let attrs = vec![
                    int("size", *size as i64),
                    float("alpha", *alpha),
                    float("beta", *beta),
                    float("bias", *bias),
                ];
                self.push("LRN", name, ins, name, attrs);
            }
            Op::AvgPool {
                kernel,
                stride,
                pad,
                count_pad,
                ceil,
            } => {
                let (k, s) = (*kernel as i64, *stride as i64);
                let mut attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &onnx_pads(pad)),
                    int("count_include_pad", *count_pad as i64),
                ];
                attrs.extend(ceil.then(|| int("ceil_mode", 1)));
                self.push("AveragePool", name, ins, name, attrs);
            }
            Op::GlobalAvgPool => {
                // synthcal's global pool also flattens to [N, C].
                let pooled = format!("{name}:pooled");
                self.push(
                    "GlobalAveragePool",
                    &format!("{name}:pool"),
                    ins,
                    &pooled,
                    vec![],
                );
                self.push("Flatten", name, &[pooled], name, vec![int("axis", 1)]);
            }
            Op::Flatten => self.push("Flatten", name, ins, name, vec![int("axis", 1)]),
        }
        Ok(())
    }
}

fn chw(s: Option<&Vec<usize>>) -> Option<[i64; 3]> {
    match s.map(Vec::as_slice) {
        Some(&[c, h, w]) => Some([c as i64, h as i64, w as i64]),
        _ => None,
    }
}

/// Each node's output shape for one image, without the batch dimension.
fn infer_shapes(src: &Source) -> Result<Vec<Vec<usize>>> {
    let layers = src.layers.map(|(l, _)| l);
    let quantized = |i: ValueId| layers.and_then(|l| l.get(&i));
    let shapes = crate::graph::validate::shapes(src.graph, src.params, &quantized, src.input_shape)
        .map_err(|e| Error::Invalid(format!("ONNX export: {e}")))?;
    Ok(shapes.into_iter().map(|s| s[1..].to_vec()).collect())
}

pub(super) fn f32_tensor(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type::FLOAT),
        name: Some(name.to_string()),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

pub(super) fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension {
                dim_value: Some(*v as i64),
                dim_param: None,
            },
            None => Dimension {
                dim_value: None,
                dim_param: Some("batch".into()),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

pub(super) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::INT),
        i: Some(v),
        ..Default::default()
    }
}

pub(super) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(super) fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::FLOAT),
        f: Some(v),
        ..Default::default()
    }
}

/// ONNX's `pads` attribute: [top, left, bottom, right].
fn onnx_pads(p: &crate::ops::Pads) -> [i64; 4] {
    p.onnx().map(|v| v as i64)
}
