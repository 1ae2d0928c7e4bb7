//! ONNX graphs onto synthcal's graph ops: one node at a time, with the few multi-node
//! patterns synthcal has one op for (channel shuffle, option-A shortcut, pool + flatten).

use super::fold::{ceil_is_floor, fold, per_channel, same_pads};
use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use super::tensor::{decode, Const};
use super::{META_CLASSES, META_MEAN, META_STD};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::validate::output_shape;
use crate::graph::{bn_names, Act, Graph, Op, Pads, Params, ValueId};
use crate::models::classes::{class_names_from_meta, norm_from_meta};
use crate::models::{cifar_norm, Arch, Model, Normalization};
use crate::ops::pad2d::PadMode;
use prost::Message;
use std::collections::{BTreeMap, HashMap};

/// The ops the importer maps (in the default `ai.onnx` domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LRN",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "PRelu",
    "Pad",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

/// The opsets the importer reads (6 to 8 only differ, for these ops, in the legacy
/// broadcasting and BatchNormalization's `spatial`, which are refused when used).
pub const OPSETS: std::ops::RangeInclusive<i64> = 6..=21;

/// The prefix suffix of the per-channel affines the importer makes (as inference batch norms).
const AFFINE: &str = ":affine";

/// A value while importing: a graph value, or the middle of a pattern that becomes one op.
#[derive(Clone, Copy)]
enum Val {
    Node(ValueId),
    /// Reshape to [N, g, C/g, H, W] of a value.
    Grouped(ValueId, usize),
    /// ... then its first two group axes swapped.
    Swapped(ValueId, usize),
    /// x[:, :, ::2, ::2] of a value.
    Subsampled(ValueId),
    /// HardSigmoid(x; 1/6, 1/2) of a value, read only by the Mul that makes it HardSwish.
    HardSigmoidOf(ValueId),
    /// A value zero-padded by [top, left, bottom, right], folded into the Conv or
    /// AveragePool that reads it.
    Padded(ValueId, [usize; 4]),
}

/// Reads an ONNX model; `name` (the file's stem, say) names the architecture when the graph
/// has no name, and the model in errors. A QDQ model is refused (see `import_qdq`).
pub fn import(bytes: &[u8], name: &str) -> Result<Model> {
    let p = parse(bytes, name)?;
    let nodes = &p.graph()?.node;
    if has_qdq(nodes) {
        return Err(p.fail(
            "a quantized (QDQ) model: load it as an INT8 model (`QuantizedModel::load`, `synthcal eval`), not as FP32".into(),
        ));
    }
    Ok(build(&p, nodes, &p.consts)?.0)
}

/// Whether the nodes hold QuantizeLinear or DequantizeLinear.
pub(super) fn has_qdq(nodes: &[NodeProto]) -> bool {
    nodes.iter().any(|n| {
        matches!(
            n.op_type.as_deref(),
            Some("QuantizeLinear" | "DequantizeLinear")
        )
    })
}

/// An ONNX file decoded: its opset checked, its constants (initializers and Constant nodes).
pub(super) struct Parsed {
    pub proto: ModelProto,
    pub opset: i64,
    pub consts: HashMap<String, Const>,
    pub name: String,
}

impl Parsed {
    pub fn fail(&self, m: String) -> Error {
        Error::Invalid(format!("ONNX model `{}`: {m}", self.name))
    }

    pub fn graph(&self) -> Result<&super::proto::GraphProto> {
        self.proto
            .graph
            .as_ref()
            .ok_or_else(|| self.fail("the file holds no graph".into()))
    }
}

pub(super) fn parse(bytes: &[u8], name: &str) -> Result<Parsed> {
    let fail = |m: String| Error::Invalid(format!("ONNX model `{name}`: {m}"));
    let proto = ModelProto::decode(bytes).map_err(|e| {
        fail(format!(
            "not a readable ONNX file (truncated or corrupt protobuf: {e})"
        ))
    })?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| fail("no opset of the default ai.onnx domain is imported".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(fail(format!(
            "opset {opset} is not supported (opsets {}..={} are)",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| fail("the file holds no graph".into()))?;
    let mut consts: HashMap<String, Const> = HashMap::new();
    for t in &graph.initializer {
        let n = t.name.clone().unwrap_or_default();
        consts.insert(n.clone(), decode(t, &n).map_err(fail)?);
    }
    for node in graph.node.iter().filter(|n| op_type(n) == "Constant") {
        let out = node.output.first().cloned().unwrap_or_default();
        let t: &TensorProto = attr(node, "value")
            .and_then(|a| a.t.as_ref())
            .ok_or_else(|| {
                fail(format!(
                    "Constant node `{}` has no tensor `value`",
                    node_name(node)
                ))
            })?;
        consts.insert(out.clone(), decode(t, &out).map_err(fail)?);
    }
    Ok(Parsed {
        proto,
        opset,
        consts,
        name: name.to_string(),
    })
}

/// The FP32 model of `nodes` (the file's, or its QDQ form folded), and the graph value of
/// each ONNX value name.
pub(super) fn build(
    p: &Parsed,
    nodes: &[NodeProto],
    consts: &HashMap<String, Const>,
) -> Result<(Model, HashMap<String, ValueId>)> {
    let (name, opset, proto) = (p.name.as_str(), p.opset, &p.proto);
    let fail = |m: String| p.fail(m);
    let graph = p.graph()?;
    unsupported(nodes, opset).map_err(fail)?;
    let mut b = Importer::new(nodes, consts.clone());
    let input_shape = b.input(graph).map_err(fail)?;
    for node in nodes {
        if op_type(node) == "Constant" {
            continue;
        }
        b.node(node, opset).map_err(|m| {
            fail(format!(
                "node `{}` ({}, opset {opset}): {m}",
                node_name(node),
                op_type(node)
            ))
        })?;
    }
    let out_name = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or_else(|| fail("the graph has no output".into()))?;
    b.g.output = b.value(&out_name).map_err(fail)?;

    b.params.validate().map_err(|e| fail(e.to_string()))?;
    let vals = std::mem::take(&mut b.vals);
    let arch_name = graph
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.to_string());
    let arch = Arch::from_graph(&arch_name, b.g, &b.params, input_shape).map_err(fail)?;
    let mut model = Model::new(arch, b.params).map_err(|e| fail(e.to_string()))?;
    let meta: BTreeMap<String, String> = proto
        .metadata_props
        .iter()
        .filter_map(|e| {
            let key = match e.key.as_deref()? {
                META_MEAN => "norm_mean",
                META_STD => "norm_std",
                META_CLASSES => "class_names",
                _ => return None,
            };
            Some((key.to_string(), e.value.clone().unwrap_or_default()))
        })
        .collect();
    let default = Normalization::for_channels(&cifar_norm(), input_shape[0]);
    model.arch.norm = norm_from_meta(&meta, default).map_err(fail)?;
    if let Some(names) = class_names_from_meta(&meta, model.num_classes()).map_err(fail)? {
        model.class_names = names;
    }
    let values = vals
        .into_iter()
        .filter_map(|(k, v)| match v {
            Val::Node(v) => Some((k, v)),
            _ => None,
        })
        .collect();
    Ok((model, values))
}

/// Every node whose op synthcal cannot map, all listed in one error.
fn unsupported(nodes: &[NodeProto], opset: i64) -> Result<(), String> {
    let bad: Vec<String> = nodes
        .iter()
        .filter(|n| {
            !matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"))
                || !SUPPORTED_OPS.contains(&op_type(n))
        })
        .map(|n| match n.domain.as_deref() {
            Some(d) if !d.is_empty() && d != "ai.onnx" => {
                format!("`{d}.{}` (node `{}`)", op_type(n), node_name(n))
            }
            _ => format!("`{}` (node `{}`)", op_type(n), node_name(n)),
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} node(s) use ops synthcal cannot import (opset {opset}): {}; supported: {}",
        bad.len(),
        bad.join(", "),
        SUPPORTED_OPS.join(", ")
    ))
}

fn op_type(n: &NodeProto) -> &str {
    n.op_type.as_deref().unwrap_or("")
}

pub(super) fn node_name(n: &NodeProto) -> String {
    n.name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| n.output.first().cloned())
        .unwrap_or_default()
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

/// A node's `dilations` on H and W (default 1), each in 1..=2^16.
fn dilations(n: &NodeProto) -> Result<[usize; 2], String> {
    match attr_ints(n, "dilations").as_deref() {
        None => Ok([1, 1]),
        Some(&[dh, dw]) if (1..=1 << 16).contains(&dh) && (1..=1 << 16).contains(&dw) => {
            Ok([dh as usize, dw as usize])
        }
        Some(d) => Err(format!("dilations {d:?}: two values >= 1 needed")),
    }
}

fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// All entries equal (a square kernel, symmetric padding): that value.
fn same(v: &[i64], what: &str) -> Result<usize, String> {
    match v.split_first() {
        Some((&x, rest)) if x >= 0 && rest.iter().all(|&y| y == x) => Ok(x as usize),
        _ => Err(format!(
            "{what} {v:?}: synthcal needs equal, non-negative values"
        )),
    }
}

/// Values all folded constants together may hold (each is bounded by `fold` too).
const MAX_FOLDED: usize = 1 << 26;

struct Importer<'a> {
    g: Graph,
    params: Params,
    consts: HashMap<String, Const>,
    vals: HashMap<String, Val>,
    /// Values that are [N, C] rather than images.
    flat: Vec<bool>,
    /// How many node inputs (and graph outputs) read each ONNX value.
    readers: HashMap<&'a str, usize>,
    /// Each graph value's shape for one image, and the input's.
    shapes: Vec<Vec<usize>>,
    input_shape: [usize; 4],
    nodes: &'a [NodeProto],
    /// Values of the constants folded so far (bounded: a few nodes could ask for any amount).
    folded: usize,
}

impl<'a> Importer<'a> {
    fn new(nodes: &'a [NodeProto], consts: HashMap<String, Const>) -> Self {
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for n in nodes {
            for i in &n.input {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        Importer {
            g: Graph::default(),
            params: Params::default(),
            consts,
            vals: HashMap::new(),
            flat: Vec::new(),
            readers,
            shapes: Vec::new(),
            input_shape: [1, 3, 1, 1],
            nodes,
            folded: 0,
        }
    }

    /// The single non-constant graph input, [N, C, H, W]: returns [C, H, W].
    fn input(&mut self, graph: &super::proto::GraphProto) -> Result<[usize; 3], String> {
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !self.consts.contains_key(i.name.as_deref().unwrap_or("")))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(format!(
                "the graph has {} image inputs, synthcal needs exactly one",
                inputs.len()
            ));
        };
        let name = input.name.clone().unwrap_or_default();
        let dims: Vec<Option<i64>> = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
            .unwrap_or_default();
        let side = |d: &i64| *d > 0 && *d <= 1 << 14;
        let shape = match dims.as_slice() {
            [_, Some(c), Some(h), Some(w)] if side(c) && side(h) && side(w) => {
                [*c as usize, *h as usize, *w as usize]
            }
            _ => {
                return Err(format!(
                    "input `{name}` must be an image batch [N, C, H, W] with C, H and W given \
                     (1 to 16384 each), found {dims:?}"
                ))
            }
        };
        self.input_shape = [1, shape[0], shape[1], shape[2]];
        let v = self.push(&name, Op::Input, &[], false)?;
        self.vals.insert(name, Val::Node(v));
        Ok(shape)
    }

    /// Appends a node, inferring its shape (for one image) from its inputs'.
    fn push(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        flat: bool,
    ) -> Result<ValueId, String> {
        let ins: Vec<&[usize]> = inputs.iter().map(|&v| self.shapes[v].as_slice()).collect();
        let shape = output_shape(&op, &ins, &self.params, self.input_shape)?;
        // As `validate` will, but before later nodes size anything by this shape.
        if super::tensor::extent(&shape).is_none_or(|e| e > crate::graph::validate::MAX_VALUE_ELEMS)
        {
            return Err(format!("its output {shape:?} is implausibly large"));
        }
        self.shapes.push(shape);
        self.flat.push(flat);
        Ok(self.g.push(name, op, inputs))
    }

    fn value(&self, name: &str) -> Result<ValueId, String> {
        match self.vals.get(name) {
            Some(Val::Node(v)) => Ok(*v),
            Some(Val::Padded(..)) => Err(format!("value `{name}` is a zero Pad meant to fold into the Conv or AveragePool reading it")),
            Some(_) => Err(format!("value `{name}` is an intermediate of a reshape/slice pattern synthcal has no op for")),
            None if self.consts.contains_key(name) => Err(format!("`{name}` is a constant where synthcal needs a computed value")),
            None => Err(format!("value `{name}` is not computed before it is read")),
        }
    }

    /// The image a window op reads and the zero Pad folded before it ([top, left, bottom,
    /// right]) added to `pad` (the op's own padding).
    fn padded_image(&self, name: &str, pad: Pads) -> Result<(ValueId, Pads), String> {
        let Some(&Val::Padded(x, extra)) = self.vals.get(name) else {
            return Ok((self.image(name)?, pad));
        };
        let total = pad
            .plus(Pads::from_onnx(extra))
            .ok_or("padding overflows")?;
        Ok((x, total))
    }

    /// Whether a zero Pad writing `out` folds into its one reader: a Conv, or an AveragePool
    /// that counts its own padding or has none (the Pad's zeros count as elements), neither
    /// with auto_pad SAME (computed for the padded size).
    fn folds_pad(&self, out: &str) -> bool {
        if self.readers.get(out) != Some(&1) {
            return false;
        }
        let Some(r) = self.nodes.iter().find(|r| r.input.iter().any(|i| i == out)) else {
            return false;
        };
        let same = attr(r, "auto_pad")
            .and_then(|a| a.s.as_deref())
            .is_some_and(|a| a.starts_with(b"SAME"));
        let no_own_pads = attr_ints(r, "pads").is_none_or(|p| p.iter().all(|&v| v == 0));
        r.input.first().map(String::as_str) == Some(out)
            && !same
            && match op_type(r) {
                "Conv" => true,
                "AveragePool" => attr_i(r, "count_include_pad", 0) != 0 || no_own_pads,
                _ => false,
            }
    }

    /// The image under a folded Pad (for shape-dependent settings such as auto_pad, which a
    /// Pad before the op would change: refused then).
    fn image_under_pad(&self, n: &NodeProto, name: &str) -> Result<ValueId, String> {
        match self.vals.get(name) {
            Some(&Val::Padded(x, _)) => {
                let auto = attr(n, "auto_pad").and_then(|a| a.s.clone());
                if auto.is_some_and(|a| a.starts_with(b"SAME")) {
                    return Err("auto_pad SAME after a Pad (padding computed for the padded size) is not supported".into());
                }
                Ok(x)
            }
            _ => self.image(name),
        }
    }

    fn image(&self, name: &str) -> Result<ValueId, String> {
        let v = self.value(name)?;
        if self.flat[v] {
            return Err(format!(
                "value `{name}` is [N, C] where an image [N, C, H, W] is needed"
            ));
        }
        Ok(v)
    }

    fn f32_const(&self, name: &str) -> Result<&Array, String> {
        match self.consts.get(name) {
            Some(Const::F32(a)) => Ok(a),
            Some(_) => Err(format!(
                "constant `{name}` is integer where float weights are needed"
            )),
            None => Err(format!(
                "`{name}` must be a constant (initializer) for synthcal"
            )),
        }
    }

    fn i64_const(&self, name: &str) -> Result<Vec<i64>, String> {
        match self.consts.get(name) {
            Some(Const::I64(v)) => Ok(v.clone()),
            _ => Err(format!("`{name}` must be an integer constant")),
        }
    }

    /// A float tensor as a parameter of the given rank (stored under its own name).
    fn param(&mut self, name: &str, rank: usize) -> Result<String, String> {
        let a = self.f32_const(name)?;
        if a.shape.len() != rank {
            return Err(format!(
                "`{name}` has shape {:?}, expected {rank} dimensions",
                a.shape
            ));
        }
        let a = a.clone();
        self.params.insert(name, a);
        Ok(name.to_string())
    }

    fn optional_input(n: &NodeProto, k: usize) -> Option<&str> {
        n.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn node(&mut self, n: &NodeProto, opset: i64) -> Result<(), String> {
        let name = node_name(n);
        let out = n.output.first().cloned().ok_or("the node has no output")?;
        let input = |k: usize| {
            n.input
                .get(k)
                .map(String::as_str)
                .ok_or(format!("input {k} is missing"))
        };
        let set = |s: &mut Self, v: Val| {
            s.vals.insert(out.clone(), v);
        };
        let shape_of = |v: &str| match self.vals.get(v) {
            Some(Val::Node(x)) => self.shapes.get(*x).cloned(),
            _ => None,
        };
        if let Some(c) = fold(n, opset, &self.consts, &shape_of)? {
            self.folded = self.folded.saturating_add(c.len());
            if self.folded > MAX_FOLDED {
                return Err(format!(
                    "its folded constants add up to more than {MAX_FOLDED} values"
                ));
            }
            self.consts.insert(out, c);
            return Ok(());
        }
        match op_type(n) {
            "Identity" | "Dropout" => {
                let v = *self
                    .vals
                    .get(input(0)?)
                    .ok_or("its input is not computed before it")?;
                set(self, v);
            }
            "Conv" => {
                let x = self.image_under_pad(n, input(0)?)?;
                let weight = self.param(input(1)?, 4)?;
                let bias = Self::optional_input(n, 2)
                    .map(|b| self.param(b, 1))
                    .transpose()?;
                let dilation = dilations(n)?;
                let stride = same(&attr_ints(n, "strides").unwrap_or(vec![1, 1]), "strides")?;
                let ws = self
                    .params
                    .get(&weight)
                    .map_err(|e| e.to_string())?
                    .shape
                    .clone();
                // auto_pad pads for the window's extent, which dilation widens.
                let span =
                    |k: usize, d: usize| k.saturating_sub(1).saturating_mul(d).saturating_add(1);
                let k = [span(ws[2], dilation[0]), span(ws[3], dilation[1])];
                let pad = self.window_pad(n, x, k, stride)?;
                let (x, pad) = self.padded_image(input(0)?, pad)?;
                let groups = attr_i(n, "group", 1).max(1) as usize;
                let op = Op::Conv2d {
                    weight,
                    bias,
                    stride: stride.max(1),
                    pad,
                    dilation,
                    groups,
                    act: Act::Identity,
                };
                let v = self.push(&name, op, &[x], false)?;
                set(self, Val::Node(v));
            }
            "Gemm" | "MatMul" => {
                let x = self.value(input(0)?)?;
                let gemm = op_type(n) == "Gemm";
                if gemm
                    && (attr_f(n, "alpha", 1.0) != 1.0
                        || attr_f(n, "beta", 1.0) != 1.0
                        || attr_i(n, "transA", 0) != 0)
                {
                    return Err("only alpha = beta = 1 and transA = 0 are supported".into());
                }
                let b_name = input(1)?;
                let w = self.f32_const(b_name)?.clone();
                let [r, c] = w.shape[..].try_into().unwrap_or([0, 0]);
                if r == 0 || c == 0 {
                    return Err(format!(
                        "weight `{b_name}` has shape {:?}, expected 2 non-zero dimensions",
                        w.shape
                    ));
                }
                let weight = if gemm && attr_i(n, "transB", 0) == 1 {
                    self.params.insert(b_name, w);
                    b_name.to_string()
                } else {
                    // [in, out] to PyTorch's [out, in].
                    let t: Vec<f32> = (0..c)
                        .flat_map(|o| (0..r).map(move |k| (o, k)))
                        .map(|(o, k)| w.data[k * c + o])
                        .collect();
                    let tn = format!("{b_name}:T");
                    self.params.insert(tn.clone(), Array::new(&[c, r], t));
                    tn
                };
                let bias = match Self::optional_input(n, 2).filter(|_| gemm) {
                    Some(bn) => {
                        let a = self.f32_const(bn)?.clone();
                        let out_f = self.params.get(&weight).map_err(|e| e.to_string())?.shape[0];
                        if a.numel() != out_f {
                            return Err(format!(
                                "bias `{bn}` of shape {:?} does not match {out_f} outputs",
                                a.shape
                            ));
                        }
                        self.params.insert(bn, Array::new(&[out_f], a.data));
                        Some(bn.to_string())
                    }
                    None => None,
                };
                let v = self.push(
                    &name,
                    Op::Linear {
                        weight,
                        bias,
                        act: Act::Identity,
                    },
                    &[x],
                    true,
                )?;
                set(self, Val::Node(v));
            }
            "BatchNormalization" => {
                if opset < 9 && attr_i(n, "spatial", 1) != 1 {
                    return Err("per-activation statistics (spatial = 0) are not supported".into());
                }
                let x = self.image(input(0)?)?;
                let scale = input(1)?;
                let prefix = scale
                    .strip_suffix(".weight")
                    .map(str::to_string)
                    .filter(|p| {
                        bn_names(p).iter().zip(&n.input[1..]).all(|(a, b)| a == b)
                            && n.input.len() == 5
                    });
                let prefix = match prefix {
                    Some(p) => p,
                    None => format!("{out}:bn"),
                };
                for (k, pn) in bn_names(&prefix).into_iter().enumerate() {
                    let a = self.f32_const(input(k + 1)?)?.clone();
                    if a.shape.len() != 1 {
                        return Err(format!(
                            "`{}` has shape {:?}, expected 1 dimension",
                            input(k + 1)?,
                            a.shape
                        ));
                    }
                    self.params.insert(pn, a);
                }
                let op = Op::BatchNorm {
                    prefix,
                    eps: attr_f(n, "epsilon", 1e-5),
                    act: Act::Identity,
                };
                let v = self.push(&name, op, &[x], false)?;
                set(self, Val::Node(v));
            }
            "Relu" | "Clip" | "LeakyRelu" | "Sigmoid" | "Tanh" => {
                let act = self.activation(n, opset)?;
                let v = self.fused_act(&name, input(0)?, act)?;
                set(self, Val::Node(v));
            }
            "HardSwish" => {
                // Never fused: the conv before it stays quantizable (int8 epilogues refuse it).
                let x = self.value(input(0)?)?;
                let flat = self.flat[x];
                let v = self.push(&name, Op::Act(Act::HardSwish), &[x], flat)?;
                set(self, Val::Node(v));
            }
            "HardSigmoid" => {
                let src = input(0)?;
                let x = self.value(src)?;
                let (alpha, beta) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
                // x * HardSigmoid(x; 1/6, 1/2) is HardSwish (PyTorch's opset < 14 export).
                let swish = (alpha - 1.0 / 6.0).abs() < 1e-6 && beta == 0.5 && {
                    let readers: Vec<&NodeProto> = self
                        .nodes
                        .iter()
                        .filter(|m| m.input.contains(&out))
                        .collect();
                    matches!(readers.as_slice(), [m] if op_type(m) == "Mul"
                        && m.input.len() == 2
                        && m.input.contains(&out)
                        && m.input.iter().any(|i| i == src))
                };
                if swish {
                    set(self, Val::HardSigmoidOf(x));
                    return Ok(());
                }
                // clamp(a x + b, 0, 1) = ReLU6(6a x + 6b) / 6: two per-channel affines.
                let c = self.shapes[x].get(1).copied().unwrap_or(0);
                let h = self.affine(
                    &name,
                    &out,
                    src,
                    x,
                    vec![6.0 * alpha; c],
                    vec![6.0 * beta; c],
                    Act::Relu6,
                )?;
                let v = self.push_affine(
                    &format!("{name}:div6"),
                    &format!("{out}:div6"),
                    h,
                    vec![1.0 / 6.0; c],
                    vec![0.0; c],
                    Act::Identity,
                )?;
                set(self, Val::Node(v));
            }
            "PRelu" => {
                let src = input(0)?;
                let x = self.value(src)?;
                let mut slope = self.f32_const(input(1)?)?.clone();
                if opset < 7 && slope.shape.len() == 1 {
                    // Before opset 7's broadcasting, a 1-d slope is per channel.
                    slope
                        .shape
                        .extend(vec![1; self.shapes[x].len().saturating_sub(2)]);
                }
                let s = per_channel(&slope, &self.shapes[x], input(1)?)?;
                if slope.numel() == 1 {
                    let v = self.fused_act(&name, src, Act::LeakyRelu(s[0]))?;
                    set(self, Val::Node(v));
                    return Ok(());
                }
                // relu(x) - s * relu(-x), exact: one of the two terms is zero.
                let c = s.len();
                let flat = self.flat[x];
                let pos = self.push(&format!("{name}:pos"), Op::Act(Act::Relu), &[x], flat)?;
                let neg = self.push_affine(
                    &format!("{name}:neg"),
                    &format!("{out}:neg"),
                    x,
                    vec![-1.0; c],
                    vec![0.0; c],
                    Act::Relu,
                )?;
                let s: Vec<f32> = s.iter().map(|v| -v).collect();
                let scaled = self.push_affine(
                    &format!("{name}:slope"),
                    &format!("{out}:slope"),
                    neg,
                    s,
                    vec![0.0; c],
                    Act::Identity,
                )?;
                let v = self.push(&name, Op::Add { act: Act::Identity }, &[pos, scaled], flat)?;
                set(self, Val::Node(v));
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                if opset < 7 && attr_i(n, "broadcast", 0) != 0 {
                    return Err("legacy broadcasting (opset < 7) is not supported".into());
                }
                let op = op_type(n);
                let (a_name, b_name) = (input(0)?, input(1)?);
                let (ca, cb) = (
                    self.consts.contains_key(a_name),
                    self.consts.contains_key(b_name),
                );
                if !ca && !cb {
                    let (va, vb) = (
                        self.vals.get(a_name).copied(),
                        self.vals.get(b_name).copied(),
                    );
                    if op == "Mul" {
                        if let (Some(Val::HardSigmoidOf(x)), Some(Val::Node(y)))
                        | (Some(Val::Node(y)), Some(Val::HardSigmoidOf(x))) = (va, vb)
                        {
                            if x == y {
                                let flat = self.flat[x];
                                let v = self.push(&name, Op::Act(Act::HardSwish), &[x], flat)?;
                                set(self, Val::Node(v));
                                return Ok(());
                            }
                        }
                    }
                    if op != "Add" {
                        return Err(format!("{op} of two computed values is not supported (only of a value and a scalar or per-channel constant)"));
                    }
                    let (a, b) = (self.value(a_name)?, self.value(b_name)?);
                    let flat = self.flat[a];
                    let v = self.push(&name, Op::Add { act: Act::Identity }, &[a, b], flat)?;
                    set(self, Val::Node(v));
                    return Ok(());
                }
                // One side a constant (both constant was folded): a per-channel affine.
                let (src, cname, const_first) = if cb {
                    (a_name, b_name, false)
                } else {
                    (b_name, a_name, true)
                };
                let x = self.value(src)?;
                let k = per_channel(self.f32_const(cname)?, &self.shapes[x], cname)?;
                let ch = k.len();
                let (scale, shift) = match (op, const_first) {
                    ("Add", _) => (vec![1.0; ch], k),
                    ("Sub", false) => (vec![1.0; ch], k.iter().map(|v| -v).collect()),
                    ("Sub", true) => (vec![-1.0; ch], k),
                    ("Mul", _) => (k, vec![0.0; ch]),
                    ("Div", false) => (k.iter().map(|v| 1.0 / v).collect(), vec![0.0; ch]),
                    _ => {
                        return Err(
                            "dividing a constant by a computed value is not supported".into()
                        )
                    }
                };
                let v = self.affine(&name, &out, src, x, scale, shift, Act::Identity)?;
                set(self, Val::Node(v));
            }
            "LRN" => {
                let x = self.image(input(0)?)?;
                let size = attr_i(n, "size", 0);
                if size <= 0 || size > 1 << 16 {
                    return Err(format!("LRN size {size} must be a positive channel count"));
                }
                let op = Op::Lrn {
                    size: size as usize,
                    alpha: attr_f(n, "alpha", 1e-4),
                    beta: attr_f(n, "beta", 0.75),
                    bias: attr_f(n, "bias", 1.0),
                };
                let v = self.push(&name, op, &[x], false)?;
                set(self, Val::Node(v));
            }
            "Softmax" => {
                let x = self.value(input(0)?)?;
                // Before opset 13 the input is coerced to 2-d at `axis` (1): the same on [N, K].
                let axis = attr_i(n, "axis", if opset < 13 { 1 } else { -1 });
                if !self.flat[x] || (axis != 1 && axis != -1) {
                    return Err(format!(
                        "softmax along axis {axis} of a value of shape {:?}; only over the classes of [N, K] is supported",
                        self.shapes[x]
                    ));
                }
                let v = self.push(&name, Op::Softmax, &[x], true)?;
                set(self, Val::Node(v));
            }
            "Sum" => {
                let ins = n
                    .input
                    .iter()
                    .map(|s| self.value(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let (&first, rest) = ins.split_first().ok_or("Sum has no inputs")?;
                let flat = self.flat[first];
                let mut acc = first;
                for (k, &v) in rest.iter().enumerate() {
                    let nm = if k + 2 == ins.len() {
                        name.clone()
                    } else {
                        format!("{name}:{k}")
                    };
                    acc = self.push(&nm, Op::Add { act: Act::Identity }, &[acc, v], flat)?;
                }
                set(self, Val::Node(acc));
            }
            "Split" => {
                let x = self.image(input(0)?)?;
                let axis = attr_i(n, "axis", 0);
                if axis != 1 && axis != -3 {
                    return Err(format!(
                        "split along axis {axis}; only channels (axis 1) are supported"
                    ));
                }
                let c = self.shapes[x][1];
                let k = n.output.len();
                let sizes = if opset < 13 {
                    attr_ints(n, "split")
                } else {
                    Self::optional_input(n, 1)
                        .map(|s| self.i64_const(s))
                        .transpose()?
                };
                let sizes = match sizes {
                    Some(v) => v,
                    // Equal parts, the last one smaller when uneven (opset 18).
                    None => {
                        let part = c.div_ceil(k.max(1));
                        (0..k)
                            .map(|i| c.saturating_sub(i * part).min(part) as i64)
                            .collect()
                    }
                };
                if sizes.len() != k
                    || sizes.iter().any(|&v| v <= 0)
                    || sizes.iter().try_fold(0i64, |a, &v| a.checked_add(v)) != Some(c as i64)
                {
                    return Err(format!(
                        "split sizes {sizes:?} do not cut {c} channels into {k} parts"
                    ));
                }
                let mut start = 0;
                for (o, &len) in n.output.iter().zip(&sizes) {
                    let len = len as usize;
                    let v = self.push(
                        &format!("{name}:{o}"),
                        Op::SliceChannels { start, len },
                        &[x],
                        false,
                    )?;
                    self.vals.insert(o.clone(), Val::Node(v));
                    start += len;
                }
            }
            "GlobalMaxPool" => {
                let x = self.image(input(0)?)?;
                let [_, _, h, w] = self.shapes[x][..] else {
                    return Err("input is not 4-d".into());
                };
                if h != w {
                    return Err(format!(
                        "a {h}x{w} map: synthcal needs a square one (one max-pool window)"
                    ));
                }
                let v = self.push(
                    &name,
                    Op::MaxPool {
                        kernel: h,
                        stride: 1,
                        pad: Pads::same(0),
                        ceil: false,
                        dilation: [1, 1],
                    },
                    &[x],
                    false,
                )?;
                set(self, Val::Node(v));
            }
            "AveragePool" => {
                let x = self.image_under_pad(n, input(0)?)?;
                let c = self.shapes[x][1];
                let kernel = same(
                    &attr_ints(n, "kernel_shape").unwrap_or_default(),
                    "kernel_shape",
                )?;
                let stride =
                    same(&attr_ints(n, "strides").unwrap_or(vec![1, 1]), "strides")?.max(1);
                if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(
                        "AveragePool dilations (opset 19) are not supported; dilated MaxPool is"
                            .into(),
                    );
                }
                let own = self.window_pad(n, x, [kernel, kernel], stride)?;
                let (x, pad) = self.padded_image(input(0)?, own)?;
                let mut count_pad = attr_i(n, "count_include_pad", 0) != 0;
                if pad != own {
                    // The Pad's zeros are elements of the pooled input, so they count.
                    if own != Pads::same(0) && !count_pad {
                        return Err("a Pad before an AveragePool that leaves its own padding uncounted mixes two divisors".into());
                    }
                    count_pad = true;
                }
                let ceil = self.partial_ceil(n, x, [kernel; 2], stride, pad);
                if (pad != Pads::same(0) && !count_pad) || ceil {
                    // Border windows divide by their real elements, or a ceil-mode window by
                    // its part inside the padded input: the pooling kernel.
                    let op = Op::AvgPool {
                        kernel,
                        stride,
                        pad,
                        count_pad,
                        ceil,
                    };
                    let v = self.push(&name, op, &[x], false)?;
                    set(self, Val::Node(v));
                    return Ok(());
                }
                // Otherwise a depthwise conv of 1/k^2 weights: the padded mean, on the conv kernels.
                // The window must fit the padded input before its weights are made.
                let (h, w) = (self.shapes[x][2], self.shapes[x][3]);
                let fits = |size: usize, axis| {
                    pad.total(axis)
                        .and_then(|p| size.checked_add(p))
                        .is_some_and(|s| kernel >= 1 && kernel <= s)
                };
                let weights = c.checked_mul(kernel).and_then(|v| v.checked_mul(kernel));
                if !(fits(h, 0) && fits(w, 1)) || weights.is_none_or(|n| n > 1 << 24) {
                    return Err(format!(
                        "AveragePool window {kernel}x{kernel} does not fit its padded {h}x{w} input, or is implausibly large"
                    ));
                }
                let k2 = kernel * kernel;
                let wname = format!("{out}:avg");
                self.params.insert(
                    &wname,
                    Array::new(&[c, 1, kernel, kernel], vec![1.0 / k2 as f32; c * k2]),
                );
                let op = Op::Conv2d {
                    weight: wname,
                    bias: None,
                    stride,
                    pad,
                    dilation: [1, 1],
                    groups: c,
                    act: Act::Identity,
                };
                let v = self.push(&name, op, &[x], false)?;
                set(self, Val::Node(v));
            }
            "Concat" => {
                let axis = attr_i(n, "axis", 1);
                if axis != 1 && axis != -3 {
                    return Err(format!(
                        "concatenation along axis {axis}; only channels (axis 1) are supported"
                    ));
                }
                let ins = n
                    .input
                    .iter()
                    .map(|s| self.image(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let v = self.push(&name, Op::Concat, &ins, false)?;
                set(self, Val::Node(v));
            }
            "MaxPool" => {
                let x = self.image(input(0)?)?;
                let dilation = dilations(n)?;
                let kernel = same(
                    &attr_ints(n, "kernel_shape").unwrap_or_default(),
                    "kernel_shape",
                )?;
                let stride = same(&attr_ints(n, "strides").unwrap_or(vec![1, 1]), "strides")?;
                // auto_pad and ceil_mode see the window's extent, which dilation widens.
                let span =
                    dilation.map(|d| kernel.saturating_sub(1).saturating_mul(d).saturating_add(1));
                let pad = self.window_pad(n, x, span, stride.max(1))?;
                let ceil = self.partial_ceil(n, x, span, stride.max(1), pad);
                let v = self.push(
                    &name,
                    Op::MaxPool {
                        kernel,
                        stride: stride.max(1),
                        pad,
                        ceil,
                        dilation,
                    },
                    &[x],
                    false,
                )?;
                set(self, Val::Node(v));
            }
            "GlobalAveragePool" => {
                // synthcal's pool yields [N, C]; the Flatten ONNX writes after it is then a no-op.
                let x = self.image(input(0)?)?;
                let v = self.push(&name, Op::GlobalAvgPool, &[x], true)?;
                set(self, Val::Node(v));
            }
            "Flatten" => {
                if attr_i(n, "axis", 1) != 1 {
                    return Err("only axis 1 is supported".into());
                }
                let x = self.value(input(0)?)?;
                let v = if self.flat[x] {
                    x
                } else {
                    self.push(&name, Op::Flatten, &[x], true)?
                };
                set(self, Val::Node(v));
            }
            "Reshape" => {
                let shape = self.i64_const(input(1)?)?;
                let v = match (self.vals.get(input(0)?).copied(), shape.len()) {
                    (Some(Val::Node(x)), 5) if !self.flat[x] && shape[1] > 0 => {
                        Val::Grouped(x, shape[1] as usize)
                    }
                    (Some(Val::Node(x)), 2)
                        if shape[1] == -1
                            || self.flat[x]
                            || shape[1] == self.shapes[x][1..].iter().product::<usize>() as i64 =>
                    {
                        if self.flat[x] {
                            Val::Node(x)
                        } else {
                            Val::Node(self.push(&name, Op::Flatten, &[x], true)?)
                        }
                    }
                    (Some(Val::Swapped(x, groups)), 4) => {
                        Val::Node(self.push(&name, Op::ChannelShuffle { groups }, &[x], false)?)
                    }
                    _ => {
                        return Err(format!(
                        "reshape to {shape:?} is supported only as a flatten or a channel shuffle"
                    ))
                    }
                };
                set(self, v);
            }
            "Transpose" => {
                let perm = attr_ints(n, "perm").unwrap_or_default();
                match self.vals.get(input(0)?).copied() {
                    Some(Val::Grouped(x, g)) if perm == [0, 2, 1, 3, 4] => {
                        set(self, Val::Swapped(x, g))
                    }
                    _ => {
                        return Err(format!(
                            "transpose {perm:?} is supported only as part of a channel shuffle"
                        ))
                    }
                }
            }
            "Slice" => {
                let x = self.image(input(0)?)?;
                let get =
                    |s: &Self, k: usize, attr_name: &str| -> Result<Option<Vec<i64>>, String> {
                        if opset < 10 {
                            return Ok(attr_ints(n, attr_name));
                        }
                        Self::optional_input(n, k)
                            .map(|c| s.i64_const(c))
                            .transpose()
                    };
                let starts = get(self, 1, "starts")?.ok_or("starts are missing")?;
                let ends = get(self, 2, "ends")?.ok_or("ends are missing")?;
                let axes =
                    get(self, 3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = get(self, 4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len()
                    || axes.len() != starts.len()
                    || steps.len() != starts.len()
                {
                    return Err(format!(
                        "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
                    ));
                }
                let v = if axes == [1]
                    && steps == [1]
                    && starts[0] >= 0
                    && ends[0] > starts[0]
                    && ends[0] <= 1 << 20
                {
                    let (start, len) = (starts[0] as usize, (ends[0] - starts[0]) as usize);
                    Val::Node(self.push(&name, Op::SliceChannels { start, len }, &[x], false)?)
                } else if axes == [2, 3]
                    && steps == [2, 2]
                    && starts == [0, 0]
                    && ends.iter().all(|&e| e >= 1 << 30)
                {
                    Val::Subsampled(x)
                } else {
                    return Err(format!(
                        "slice starts {starts:?} ends {ends:?} axes {axes:?} steps {steps:?}: only a channel range, or ::2 on both spatial axes followed by a channel pad, is supported"
                    ));
                };
                set(self, v);
            }
            "Pad" => {
                let pads = if opset < 11 {
                    attr_ints(n, "pads").unwrap_or_default()
                } else {
                    self.i64_const(input(1)?)?
                };
                let mode = attr(n, "mode")
                    .and_then(|a| a.s.clone())
                    .unwrap_or(b"constant".to_vec());
                // The fill value: an attribute before opset 11, an optional scalar input since.
                let value = if opset < 11 {
                    attr_f(n, "value", 0.0)
                } else {
                    match Self::optional_input(n, 2)
                        .map(|c| self.f32_const(c))
                        .transpose()?
                    {
                        None => 0.0,
                        Some(a) if a.data.len() == 1 => a.data[0],
                        Some(a) => {
                            return Err(format!(
                                "constant_value of shape {:?}: a scalar needed",
                                a.shape
                            ))
                        }
                    }
                };
                let mode = match mode.as_slice() {
                    b"constant" => PadMode::Constant(value),
                    b"reflect" => PadMode::Reflect,
                    b"edge" => PadMode::Edge,
                    other => {
                        return Err(format!(
                            "mode `{}` is not supported (constant, reflect and edge are)",
                            String::from_utf8_lossy(other)
                        ))
                    }
                };
                if Self::optional_input(n, 3).is_some() {
                    return Err(
                        "the `axes` input is not supported (pads for all four axes are)".into(),
                    );
                }
                match (self.vals.get(input(0)?).copied(), pads.as_slice()) {
                    (Some(Val::Subsampled(x)), &[0, p, 0, 0, 0, q, 0, 0]) if p == q && p >= 0 && mode == PadMode::Constant(0.0) => {
                        let v = self.push(&name, Op::ShortcutA { pad: p as usize }, &[x], false)?;
                        set(self, Val::Node(v));
                    }
                    (Some(Val::Node(x)), &[0, 0, t, l, 0, 0, b, r])
                        if !self.flat[x] && [t, l, b, r].iter().all(|p| (0..=1 << 16).contains(p)) =>
                    {
                        let pads = Pads::from_onnx([t, l, b, r].map(|p| p as usize));
                        if mode == PadMode::Constant(0.0) && self.folds_pad(&out) {
                            set(self, Val::Padded(x, pads.onnx()));
                        } else {
                            let v = self.push(&name, Op::Pad { pads, mode }, &[x], false)?;
                            set(self, Val::Node(v));
                        }
                    }
                    (_, &[0, 0, t, l, 0, 0, b, r]) if [t, l, b, r].iter().any(|&p| p < 0) => {
                        return Err(format!("pads {pads:?}: negative pads (cropping) are not supported"))
                    }
                    (_, [_, _, _, _, _, _, _, _]) => return Err(format!("pads {pads:?}: padding of N or C is supported only as the channel padding of a ::2 subsampled shortcut; H and W pad any image")),
                    _ => return Err(format!("pads {pads:?}: eight values (an [N, C, H, W] image) needed")),
                }
            }
            other @ ("Shape" | "Gather" | "Unsqueeze" | "Squeeze" | "Cast" | "ConstantOfShape") => {
                return Err(format!(
                    "`{other}` is supported only on constants (shape arithmetic folded at import)"
                ))
            }
            other => return Err(format!("op `{other}` has no mapping")),
        }
        Ok(())
    }

    /// `act` on value `src`, fused into its producer when that is the last node, has no
    /// activation yet, and `src` has no other reader.
    fn fused_act(&mut self, name: &str, src: &str, act: Act) -> Result<ValueId, String> {
        let x = self.value(src)?;
        let fusable = self.readers.get(src) == Some(&1) && x + 1 == self.g.nodes.len();
        if fusable {
            if let Op::Conv2d { act: a, .. }
            | Op::Linear { act: a, .. }
            | Op::BatchNorm { act: a, .. }
            | Op::Add { act: a } = &mut self.g.nodes[x].op
            {
                if *a == Act::Identity {
                    *a = act;
                    return Ok(x);
                }
            }
        }
        let flat = self.flat[x];
        self.push(name, Op::Act(act), &[x], flat)
    }

    /// act(x * scale + shift) per channel, merged into the affine before it when that is
    /// the last node, without activation, and `src` has no other reader.
    #[allow(clippy::too_many_arguments)]
    fn affine(
        &mut self,
        name: &str,
        out: &str,
        src: &str,
        x: ValueId,
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Act,
    ) -> Result<ValueId, String> {
        let last = x + 1 == self.g.nodes.len() && self.readers.get(src) == Some(&1);
        if let (
            true,
            Op::BatchNorm {
                prefix,
                eps,
                act: a,
            },
        ) = (last, &mut self.g.nodes[x].op)
        {
            if prefix.ends_with(AFFINE) && *a == Act::Identity && *eps == 0.0 {
                *a = act;
                let [g, b, _, _] = bn_names(prefix);
                let gamma = self
                    .params
                    .tensors
                    .get_mut(&g)
                    .ok_or("affine scale missing")?;
                gamma.data.iter_mut().zip(&scale).for_each(|(v, s)| *v *= s);
                let beta = self
                    .params
                    .tensors
                    .get_mut(&b)
                    .ok_or("affine shift missing")?;
                for ((v, s), t) in beta.data.iter_mut().zip(&scale).zip(&shift) {
                    *v = *v * s + t;
                }
                return Ok(x);
            }
        }
        self.push_affine(name, out, x, scale, shift, act)
    }

    /// A new per-channel affine node: inference batch norm with mean 0, variance 1, eps 0
    /// (exactly x * scale + shift), which the BN folding pass may merge into a conv.
    fn push_affine(
        &mut self,
        name: &str,
        out: &str,
        x: ValueId,
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Act,
    ) -> Result<ValueId, String> {
        let c = scale.len();
        let prefix = format!("{out}{AFFINE}");
        let [g, b, m, v] = bn_names(&prefix);
        self.params.insert(&g, Array::new(&[c], scale));
        self.params.insert(&b, Array::new(&[c], shift));
        self.params.insert(&m, Array::new(&[c], vec![0.0; c]));
        self.params.insert(&v, Array::new(&[c], vec![1.0; c]));
        let op = Op::BatchNorm {
            prefix,
            eps: 0.0,
            act,
        };
        let flat = self.flat[x];
        self.push(name, op, &[x], flat)
    }

    /// The padding of a window op on value `x`: its `pads`, or what `auto_pad` gives for x's
    /// size (an odd total puts the extra row / column at the end for SAME_UPPER, at the start
    /// for SAME_LOWER).
    fn window_pad(
        &self,
        n: &NodeProto,
        x: ValueId,
        k: [usize; 2],
        stride: usize,
    ) -> Result<Pads, String> {
        let auto = attr(n, "auto_pad")
            .and_then(|a| a.s.clone())
            .unwrap_or_default();
        let pads = match auto.as_slice() {
            b"" | b"NOTSET" => attr_ints(n, "pads").unwrap_or(vec![0; 4]),
            b"VALID" => vec![0; 4],
            b"SAME_UPPER" | b"SAME_LOWER" => {
                let s = &self.shapes[x];
                let upper = auto == b"SAME_UPPER";
                let (t, b) = same_pads(s[2], k[0], stride, upper);
                let (l, r) = same_pads(s[3], k[1], stride, upper);
                vec![t, l, b, r]
            }
            other => {
                return Err(format!(
                    "auto_pad `{}` is not an ONNX setting",
                    String::from_utf8_lossy(other)
                ))
            }
        };
        match pads[..] {
            [t, l, b, r] if pads.iter().all(|p| (0..1 << 20).contains(p)) => {
                Ok(Pads::from_onnx([t, l, b, r].map(|p| p as usize)))
            }
            _ => Err(format!(
                "pads {pads:?}: four values in [0, 2^20) (top, left, bottom, right) needed"
            )),
        }
    }

    /// Whether `ceil_mode` = 1 adds a partial window on either axis (else the floor-mode op is
    /// the same).
    fn partial_ceil(
        &self,
        n: &NodeProto,
        x: ValueId,
        k: [usize; 2],
        stride: usize,
        pad: Pads,
    ) -> bool {
        let s = &self.shapes[x];
        let axis = |a: usize| ceil_is_floor(s[2 + a], k[a], stride, (pad.begin[a], pad.end[a]));
        attr_i(n, "ceil_mode", 0) != 0 && !(axis(0) && axis(1))
    }

    fn activation(&self, n: &NodeProto, opset: i64) -> Result<Act, String> {
        Ok(match op_type(n) {
            "Relu" => Act::Relu,
            "Sigmoid" => Act::Sigmoid,
            "Tanh" => Act::Tanh,
            "LeakyRelu" => Act::LeakyRelu(attr_f(n, "alpha", 0.01)),
            _ => {
                let bound = |k: usize, a: &str| -> Result<Option<f32>, String> {
                    if opset < 11 {
                        return Ok(attr(n, a).and_then(|a| a.f));
                    }
                    match Self::optional_input(n, k) {
                        None => Ok(None),
                        Some(c) => match self.f32_const(c)?.data.as_slice() {
                            [v] => Ok(Some(*v)),
                            _ => Err(format!("Clip bound `{c}` is not a scalar")),
                        },
                    }
                };
                match (bound(1, "min")?, bound(2, "max")?) {
                    (Some(0.0), Some(6.0)) => Act::Relu6,
                    (Some(0.0), None) => Act::Relu,
                    (Some(0.0), Some(hi)) if hi == f32::INFINITY => Act::Relu,
                    (lo, hi) => {
                        return Err(format!(
                        "Clip to [{lo:?}, {hi:?}]: only [0, 6] (ReLU6) and [0, inf) are supported"
                    ))
                    }
                }
            }
        })
    }
}
