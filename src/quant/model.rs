//! A quantized model: the inference graph, FP32 parameters for the layers that stay FP32, and
//! an INT8 description per quantized conv/linear. Saved as safetensors (int8 weights, f32
//! scales and biases) with the graph and quantizer settings in the metadata.

use super::int8::{QConv, QFormat, QWeights};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::graph::validate::validate;
use crate::graph::{Graph, Op, Params, ValueId};
use crate::infer::{Logits, Predictor};
use crate::io::{self, TensorSlice, TensorValues};
use crate::models::Normalization;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The `format` metadata of INT8 model files.
pub const FORMAT: &str = "synthcal-int8-v1";

/// An INT8 model: the FP32 model's inference graph with its conv and linear layers quantized
/// (some may stay FP32), ready to [`predict`](QuantizedModel::predict), save and load.
pub struct QuantizedModel {
    /// The source model's architecture name.
    pub arch: String,
    /// The input normalization.
    pub norm: Normalization,
    /// The input images' planes (3 for RGB, 1 for gray).
    pub input_channels: usize,
    /// The input images' size, `[height, width]`.
    pub input_size: [usize; 2],
    /// One name per output (the FP32 model's; saved in the file's metadata).
    pub class_names: Vec<String>,
    /// The inference graph (BatchNorm folded, activations fused).
    pub graph: Graph,
    /// FP32 parameters of `graph` (used by the layers that stay FP32).
    pub params: Params,
    /// Quantized conv/linear nodes.
    pub layers: BTreeMap<ValueId, QConv>,
    /// The formats of the values that own one on the integer path (layer, add, concat and
    /// global-average-pool outputs; see `graph::int8`). Empty: the mixed scheme, where only
    /// conv and linear layers compute in integers (and files written before this existed).
    pub values: BTreeMap<ValueId, QFormat>,
    /// Provenance and algorithm settings, written to the file's metadata.
    pub meta: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LayerMeta {
    node: ValueId,
    name: String,
    input_scale: f32,
    input_unsigned: bool,
    /// Bits per input value (files without it: 8).
    #[serde(default = "eight", skip_serializing_if = "is_eight")]
    input_bits: u32,
    /// The input's ONNX-style zero point (files without it: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    input_zero_point: i32,
    /// Depthwise layers: per-channel input scales (exact: JSON floats round-trip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_channel_scales: Option<Vec<f32>>,
    /// Bits per weight (files without it: 8). At 4 bits or fewer the weights are stored
    /// packed, two per byte, as `.qweight_packed` of `weight_shape`.
    #[serde(default = "eight", skip_serializing_if = "is_eight")]
    weight_bits: u32,
    /// The weights' shape when they are packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_shape: Option<[usize; 4]>,
}

/// The format of one value on the integer path, as the file's `value_formats` lists it.
#[derive(serde::Serialize, serde::Deserialize)]
struct ValueMeta {
    node: ValueId,
    name: String,
    scale: f32,
    unsigned: bool,
    #[serde(default = "eight", skip_serializing_if = "is_eight")]
    bits: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    zero_point: i32,
}

/// Weights of at most this many bits are stored two per byte.
pub const PACKED_BITS: u32 = 4;

/// The bit widths of one quantized layer, as [`QuantizedModel::layer_bits`] reports them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerBits {
    /// The node's name.
    pub name: String,
    /// Bits per weight.
    pub weights: u32,
    /// Bits per input activation.
    pub inputs: u32,
}

fn eight() -> u32 {
    8
}

fn is_eight(b: &u32) -> bool {
    *b == 8
}

fn is_zero(z: &i32) -> bool {
    *z == 0
}

/// Where an INT8 model came from, as [`crate::quantize`] records it in the model (and its
/// file). A field is None for a file written without it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The synthcal version that quantized it.
    pub version: Option<String>,
    /// The calibration set: its source, image count and seed.
    pub calibration: Option<String>,
    /// The algorithm (and its settings).
    pub algorithm: Option<String>,
    /// The range estimator.
    pub estimator: Option<String>,
    /// Whether FastBiasCorrection ran.
    pub bias_correction: Option<bool>,
    /// The FP32 model it was made from, as the caller named it.
    pub source_model: Option<String>,
}

impl QuantizedModel {
    /// Loads an INT8 model written by [`QuantizedModel::save`], or a QDQ `.onnx` file (see
    /// [`crate::onnx::import_qdq`]).
    pub fn load(path: impl AsRef<Path>) -> Result<QuantizedModel> {
        let path = path.as_ref();
        if crate::onnx::is_onnx_path(path) {
            return crate::onnx::load_qdq(path);
        }
        Self::load_file(path)
    }

    /// Writes the model as safetensors (atomically), with its provenance in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_file(path.as_ref())
    }

    /// The logits of `images` on the GPU's INT8 kernels. This uploads the weights each call:
    /// for repeated predictions keep a [`QuantizedModel::predictor`].
    pub fn predict(&self, gpu: &Arc<Gpu>, images: &crate::data::Images) -> Result<Logits> {
        crate::infer::check_input(images, self.input_shape(), &self.arch)?;
        self.predictor(gpu)?.predict(images)
    }

    /// The input image shape, `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        let [h, w] = self.input_size;
        [self.input_channels, h, w]
    }

    /// The model on the GPU, ready for any number of [`Predictor::predict`] calls.
    pub fn predictor(&self, gpu: &Arc<Gpu>) -> Result<Predictor> {
        Ok(Predictor::new(
            self.runner(gpu)?,
            &self.arch,
            self.norm.clone(),
            self.input_shape(),
            self.class_names.clone(),
        ))
    }

    /// Where the model came from.
    pub fn provenance(&self) -> Provenance {
        let get = |k: &str| self.meta.get(k).cloned();
        Provenance {
            version: get("synthcal_version"),
            calibration: get("calibration"),
            algorithm: get("algorithm"),
            estimator: get("estimator"),
            bias_correction: get("bias_correction").and_then(|b| b.parse().ok()),
            source_model: get("source_model"),
        }
    }

    /// The bit widths of every quantized layer, in graph order.
    pub fn layer_bits(&self) -> Vec<LayerBits> {
        self.layers
            .iter()
            .map(|(&l, q)| LayerBits {
                name: self.graph.nodes[l].name.clone(),
                weights: q.weights.bits,
                inputs: q.input.bits,
            })
            .collect()
    }

    /// Names of the conv/linear layers that run in FP32.
    pub fn fp32_layers(&self) -> Vec<String> {
        (0..self.graph.nodes.len())
            .filter(|i| {
                matches!(
                    self.graph.nodes[*i].op,
                    Op::Conv2d { .. } | Op::Linear { .. }
                )
            })
            .filter(|i| !self.layers.contains_key(i))
            .map(|i| self.graph.nodes[i].name.clone())
            .collect()
    }

    /// Logits per image, from the final layer's weights (None for a graph without one).
    pub fn output_width(&self) -> Option<usize> {
        crate::models::classes::output_width(&self.graph, |v, w| match self.layers.get(&v) {
            Some(q) => Some(q.weights.shape[0]),
            None => self.params.get(w).ok()?.shape.first().copied(),
        })
    }

    /// A copy with layer `l` reverted to FP32.
    pub fn clone_without(&self, l: ValueId) -> QuantizedModel {
        let mut layers = self.layers.clone();
        layers.remove(&l);
        QuantizedModel {
            arch: self.arch.clone(),
            norm: self.norm.clone(),
            input_channels: self.input_channels,
            input_size: self.input_size,
            class_names: self.class_names.clone(),
            graph: self.graph.clone(),
            params: self.params.clone(),
            layers,
            values: self.values.clone(),
            meta: self.meta.clone(),
        }
    }

    /// The GPU runner of the INT8 graph.
    pub fn runner(&self, gpu: &Arc<Gpu>) -> Result<Runner> {
        let layers: HashMap<ValueId, QConv> =
            self.layers.iter().map(|(k, v)| (*k, v.clone())).collect();
        Runner::with_int8(
            gpu.clone(),
            self.graph.clone(),
            &self.params,
            &layers,
            &self.values,
        )
    }

    /// The same model on the CPU integer reference.
    pub fn cpu_logits(&self, x: &Array) -> Result<Array> {
        let layers: HashMap<ValueId, QConv> =
            self.layers.iter().map(|(k, v)| (*k, v.clone())).collect();
        crate::graph::cpu::forward_int8(&self.graph, &self.params, x, &layers, &self.values)
    }

    fn save_file(&self, path: &Path) -> Result<()> {
        let mut meta = self.meta.clone();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("arch".into(), self.arch.clone());
        meta.insert("norm".into(), json(&self.norm)?);
        meta.insert("input_size".into(), json(&self.input_size)?);
        // Absent means RGB, as in files from before other channel counts.
        if self.input_channels != 3 {
            meta.insert("input_channels".into(), self.input_channels.to_string());
        }
        meta.insert("class_names".into(), json(&self.class_names)?);
        meta.insert("graph".into(), json(&self.graph)?);
        let lm: Vec<LayerMeta> = self
            .layers
            .iter()
            .map(|(&node, q)| LayerMeta {
                node,
                name: self.graph.nodes[node].name.clone(),
                input_scale: q.input.scale,
                input_unsigned: q.input.unsigned,
                input_bits: q.input.bits,
                input_zero_point: q.input.zero_point,
                input_channel_scales: q.input_channel_scales.clone(),
                weight_bits: q.weights.bits,
                weight_shape: (q.weights.bits <= PACKED_BITS).then_some(q.weights.shape),
            })
            .collect();
        meta.insert("layers".into(), json(&lm)?);
        if !self.values.is_empty() {
            let vm: Vec<ValueMeta> = self
                .values
                .iter()
                .map(|(&node, f)| ValueMeta {
                    node,
                    name: self.graph.nodes[node].name.clone(),
                    scale: f.scale,
                    unsigned: f.unsigned,
                    bits: f.bits,
                    zero_point: f.zero_point,
                })
                .collect();
            meta.insert("value_formats".into(), json(&vm)?);
        }
        meta.insert("fp32_layers".into(), json(&self.fp32_layers())?);
        let packed: HashMap<ValueId, Vec<i8>> = self
            .layers
            .iter()
            .filter(|(_, q)| q.weights.bits <= PACKED_BITS)
            .map(|(&l, q)| (l, q.weights.pack()))
            .collect();
        let mut tensors: Vec<(String, Vec<usize>, TensorSlice)> = Vec::new();
        for (&node, q) in &self.layers {
            let name = &self.graph.nodes[node].name;
            let co = q.weights.shape[0];
            tensors.push(match packed.get(&node) {
                Some(p) => (
                    format!("{name}.qweight_packed"),
                    vec![p.len()],
                    TensorSlice::I8(p),
                ),
                None => (
                    format!("{name}.qweight"),
                    q.weights.shape.to_vec(),
                    TensorSlice::I8(&q.weights.q),
                ),
            });
            tensors.push((
                format!("{name}.wscale"),
                vec![co],
                TensorSlice::F32(&q.weights.scale),
            ));
            if let Some(b) = &q.bias {
                tensors.push((format!("{name}.qbias"), vec![co], TensorSlice::F32(b)));
            }
        }
        // FP32 tensors for every parameter a non-quantized node reads.
        for (i, n) in self.graph.nodes.iter().enumerate() {
            if self.layers.contains_key(&i) {
                continue;
            }
            let one = Graph {
                nodes: vec![n.clone()],
                output: 0,
            };
            for p in one.param_names() {
                let a = self.params.get(&p)?;
                if !tensors.iter().any(|t| t.0 == p) {
                    tensors.push((p, a.shape.clone(), TensorSlice::F32(&a.data)));
                }
            }
        }
        let refs: Vec<(&str, &[usize], TensorSlice)> = tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), *v))
            .collect();
        io::write_safetensors_typed(path, &refs, &meta)?;
        Ok(())
    }

    /// Loads an INT8 model, validating everything the file says before anything runs it:
    /// the graph (indices, arity, shapes), every tensor's values and every scale. Errors
    /// name the file and the node or tensor.
    fn load_file(path: &Path) -> Result<QuantizedModel> {
        let bad = |msg: String| Error::File {
            path: path.to_path_buf(),
            msg,
        };
        let (tensors, meta) = io::read_safetensors(path)?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a synthcal INT8 model (metadata `format` is not {FORMAT})"
            )));
        }
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("metadata `{k}` missing")))
        };
        let parse_err = |k: &str, e: serde_json::Error| bad(format!("metadata `{k}`: {e}"));
        let graph: Graph =
            serde_json::from_str(get("graph")?).map_err(|e| parse_err("graph", e))?;
        let norm: Normalization =
            serde_json::from_str(get("norm")?).map_err(|e| parse_err("norm", e))?;
        crate::models::classes::check_norm(&norm)
            .map_err(|e| bad(format!("metadata `norm`: {e}")))?;
        let lm: Vec<LayerMeta> =
            serde_json::from_str(get("layers")?).map_err(|e| parse_err("layers", e))?;
        let mut by_name: HashMap<String, io::TensorData> = tensors.into_iter().collect();
        let mut layers = BTreeMap::new();
        for l in &lm {
            let conv = load_layer(&graph, l, &mut by_name)
                .map_err(|e| bad(format!("layer {} `{}`: {e}", l.node, l.name)))?;
            if layers.insert(l.node, conv).is_some() {
                return Err(bad(format!("layer {} `{}` listed twice", l.node, l.name)));
            }
        }
        let mut values = BTreeMap::new();
        if let Some(v) = meta.get("value_formats") {
            let vm: Vec<ValueMeta> =
                serde_json::from_str(v).map_err(|e| parse_err("value_formats", e))?;
            for m in vm {
                let what = format!("value format of node {} `{}`", m.node, m.name);
                match graph.nodes.get(m.node) {
                    Some(n) if n.name == m.name => {}
                    _ => return Err(bad(format!("{what}: no such node"))),
                }
                let f = if m.unsigned {
                    QFormat::unsigned(m.scale)
                } else {
                    QFormat::signed(m.scale)
                }
                .with_bits(m.bits)
                .with_zero_point(m.zero_point);
                f.check().map_err(|e| bad(format!("{what}: {e}")))?;
                values.insert(m.node, f);
            }
        }
        let mut params = Params::default();
        for (name, t) in by_name {
            params.insert(name, Array::new(&t.shape, t.to_f32()));
        }
        params.validate().map_err(|e| bad(e.to_string()))?;
        // Files from before the input size was stored hold CIFAR models.
        let input_size: [usize; 2] = match meta.get("input_size") {
            Some(s) => serde_json::from_str(s).map_err(|e| parse_err("input_size", e))?,
            None => [crate::data::IMG_SIDE; 2],
        };
        if input_size.contains(&0) {
            return Err(bad("metadata `input_size`: a side of 0 pixels".into()));
        }
        let input_channels: usize =
            match meta.get("input_channels") {
                Some(s) => s.parse().ok().filter(|&c| c > 0).ok_or_else(|| {
                    bad(format!("metadata `input_channels` {s:?} is not a count"))
                })?,
                None => 3,
            };
        crate::models::classes::check_norm_channels(&norm, input_channels)
            .map_err(|e| bad(format!("metadata `norm`: {e}")))?;
        let [h, w] = input_size;
        validate(&graph, &params, &|i| layers.get(&i), [input_channels, h, w])
            .map_err(|e| bad(format!("graph: {e}")))?;
        // Shapes are consistent now, so the layers' own checks cannot overflow.
        for (&i, conv) in &layers {
            conv.out_shape("int8 layer", conv.min_input())
                .and_then(|_| conv.requant())
                .map_err(|e| bad(format!("layer {i} `{}`: {e}", graph.nodes[i].name)))?;
        }
        let mut qm = QuantizedModel {
            arch: get("arch")?.clone(),
            norm,
            input_channels,
            input_size,
            class_names: Vec::new(),
            graph,
            params,
            layers,
            values,
            meta,
        };
        // Every FP32 node must find its tensors.
        for (i, n) in qm.graph.nodes.iter().enumerate() {
            if qm.layers.contains_key(&i) {
                continue;
            }
            let one = Graph {
                nodes: vec![n.clone()],
                output: 0,
            };
            for p in one.param_names() {
                qm.params.get(&p).map_err(|e| bad(e.to_string()))?;
            }
        }
        // Files from before class names were stored hold CIFAR-10 models.
        let width = qm
            .output_width()
            .unwrap_or(crate::data::CIFAR10_CLASSES.len());
        qm.class_names = crate::models::classes::class_names_from_meta(&qm.meta, width)
            .map_err(bad)?
            .unwrap_or_else(|| crate::models::default_class_names(width));
        Ok(qm)
    }
}

/// One INT8 layer of a file: its node must be a single-input conv/linear, and its tensors
/// (`.qweight` i8 `[co, ci/g, kh, kw]`, or `.qweight_packed` i8 `[ceil(numel / 2)]` at 4 bits
/// or fewer; `.wscale` `[co]`, `.qbias` `[co]`) must fit it.
fn load_layer(
    graph: &Graph,
    l: &LayerMeta,
    tensors: &mut HashMap<String, io::TensorData>,
) -> std::result::Result<QConv, String> {
    let node = graph
        .nodes
        .get(l.node)
        .ok_or_else(|| format!("node index out of range ({} nodes)", graph.nodes.len()))?;
    if node.name != l.name {
        return Err(format!("node {} is named `{}`", l.node, node.name));
    }
    let Some(layer) = node.op.layer() else {
        return Err("not a conv/linear node".into());
    };
    let (stride, pad, groups, act) = (layer.stride, layer.pad, layer.groups, layer.act);
    let has_bias = layer.bias.is_some();
    if node.inputs.len() != 1 {
        return Err(format!(
            "an INT8 layer reads one input, not {}",
            node.inputs.len()
        ));
    }
    let mut take = |suffix: &str| {
        let name = format!("{}.{suffix}", l.name);
        tensors
            .remove(&name)
            .ok_or_else(|| format!("tensor `{name}` missing"))
    };
    let bits = l.weight_bits;
    if !(2..=8).contains(&bits) {
        return Err(format!("{bits} bits per weight (2 to 8 are supported)"));
    }
    let packed = bits <= PACKED_BITS;
    let w = take(if packed { "qweight_packed" } else { "qweight" })?;
    let s = take("wscale")?;
    let (TensorValues::I8(q), TensorValues::F32(scale)) = (w.values, s.values) else {
        return Err("qweight must be I8 and wscale F32".into());
    };
    let shape: [usize; 4] = match (packed, l.weight_shape) {
        (true, Some(s)) => s,
        (true, None) => return Err(format!("{bits}-bit weights without `weight_shape`")),
        (false, _) => w
            .shape
            .as_slice()
            .try_into()
            .map_err(|_| format!("qweight has shape {:?}, expected 4-d", w.shape))?,
    };
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let q = match numel {
        Some(n) if !shape.contains(&0) && packed => {
            if w.shape != [n.div_ceil(2)] || q.len() != n.div_ceil(2) {
                return Err(format!(
                    "qweight_packed has shape {:?}, expected [{}] for {n} weights {shape:?}",
                    w.shape,
                    n.div_ceil(2)
                ));
            }
            QWeights::unpack(&q, n)
        }
        Some(n) if !shape.contains(&0) && n == q.len() => q,
        _ => return Err(format!("qweight has shape {shape:?}")),
    };
    if bits < 8 {
        let m = QWeights::qmax(bits);
        if let Some(v) = q.iter().find(|&&v| (v as i32).abs() > m) {
            return Err(format!(
                "weight {v} outside the {bits}-bit range [-{m}, {m}]"
            ));
        }
    }
    let co = shape[0];
    if s.shape != [co] {
        return Err(format!("wscale has shape {:?}, expected [{co}]", s.shape));
    }
    // A bias-free conv gains a bias from bias correction: saved as `qbias` all the same.
    let bias = match take("qbias") {
        Ok(b) if b.shape != [co] => {
            return Err(format!("qbias has shape {:?}, expected [{co}]", b.shape));
        }
        Ok(b) => Some(b.to_f32()),
        Err(e) if has_bias => return Err(e),
        Err(_) => None,
    };
    check_scales(l, &scale, bias.as_deref())?;
    let input = if l.input_unsigned {
        QFormat::unsigned(l.input_scale)
    } else {
        QFormat::signed(l.input_scale)
    }
    .with_bits(l.input_bits)
    .with_zero_point(l.input_zero_point);
    input.check().map_err(|e| format!("input format: {e}"))?;
    Ok(QConv {
        weights: QWeights {
            shape,
            q,
            scale,
            bits,
        },
        bias,
        stride,
        pad,
        dilation: layer.dilation,
        groups,
        input,
        input_channel_scales: l.input_channel_scales.clone(),
        act,
        output: None,
    })
}

/// Scales must be positive normal floats, and so must each product of an input and a weight
/// scale (the kernels' combined scale; an f16 scale that underflowed to 0 is caught here).
fn check_scales(
    l: &LayerMeta,
    wscale: &[f32],
    bias: Option<&[f32]>,
) -> std::result::Result<(), String> {
    let ok = |s: f32| s.is_normal() && s > 0.0;
    let inputs: Vec<f32> = match &l.input_channel_scales {
        Some(cs) if cs.len() != wscale.len() => {
            return Err(format!(
                "{} input channel scales for {} channels",
                cs.len(),
                wscale.len()
            ))
        }
        Some(cs) => cs.clone(),
        None => vec![l.input_scale; wscale.len()],
    };
    let bad = |what: &str, c: usize, v: f32| {
        Err(format!(
            "scales must be positive and finite: {what} of channel {c} is {v}"
        ))
    };
    if !ok(l.input_scale) {
        return bad("input scale", 0, l.input_scale);
    }
    for (c, (&w, &x)) in wscale.iter().zip(&inputs).enumerate() {
        if !ok(x) {
            return bad("input scale", c, x);
        }
        if !ok(w) {
            return bad("wscale", c, w);
        }
        if !ok(((x as f64) * (w as f64)) as f32) {
            return bad("input scale x wscale", c, x * w);
        }
    }
    if let Some((c, b)) = bias.and_then(|b| b.iter().enumerate().find(|(_, b)| !b.is_finite())) {
        return Err(format!("qbias of channel {c} is {b}"));
    }
    Ok(())
}

/// Serializes a metadata value to a JSON string.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}
