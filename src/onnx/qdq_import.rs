//! QDQ models (synthcal's own, ONNX Runtime's `quantize_static`, NNCF) onto synthcal's INT8
//! layers. The QuantizeLinear/DequantizeLinear nodes are folded away before the FP32 import:
//! a DequantizeLinear of a constant becomes the dequantized constant (its integers kept aside),
//! a QuantizeLinear -> DequantizeLinear pair on a computed value becomes an Identity (or a
//! ReLU, when its range starts at 0 and nothing before it clamps: quantizers drop such ReLUs).
//! A Conv/Gemm/MatMul whose input is such a pair and whose weight an int8 constant becomes an
//! INT8 layer with the file's scales and zero points. A pair on a value that owns an int8
//! format (a layer's, Add's, Concat's or GlobalAveragePool's output, the logits) becomes that
//! value's format, so synthcal rounds it where the file does; other pairs are dropped.

use super::import::{build, has_qdq, node_name, parse};
use super::proto::{data_type, NodeProto};
use super::tensor::Const;
use crate::array::Array;
use crate::error::Result;
use crate::graph::Op;
use crate::quant::int8::{QConv, QFormat, QWeights};
use crate::quant::QuantizedModel;
use std::collections::{BTreeMap, HashMap};

/// An integer constant behind a DequantizeLinear with zero point 0: values, shape, one scale
/// per entry of `axis`, or one for the tensor (`axis` None).
struct QConst {
    values: Vec<i32>,
    shape: Vec<usize>,
    scale: Vec<f32>,
    axis: Option<usize>,
    dt: i32,
}

impl QConst {
    fn scale(&self, i: usize) -> f32 {
        self.scale[if self.axis.is_some() { i } else { 0 }]
    }
}

/// An activation's fake quantization: the format (per channel: `channels`' scales).
#[derive(Clone)]
struct FakeQuant {
    format: QFormat,
    channels: Option<Vec<f32>>,
}

struct Folded {
    nodes: Vec<NodeProto>,
    consts: HashMap<String, Const>,
    ints: HashMap<String, QConst>,
    acts: HashMap<String, FakeQuant>,
}

/// Reads a QDQ ONNX model as an INT8 model; `name` names it in errors.
pub fn import_qdq(bytes: &[u8], name: &str) -> Result<QuantizedModel> {
    let p = parse(bytes, name)?;
    let nodes = &p.graph()?.node;
    if !has_qdq(nodes) {
        return Err(p.fail("an FP32 model (no QuantizeLinear/DequantizeLinear nodes): load it as an FP32 model, or quantize it".into()));
    }
    let f = fold(nodes, &p.consts).map_err(|e| p.fail(e))?;
    let (model, values) = build(&p, &f.nodes, &f.consts)?;
    let mut layers = BTreeMap::new();
    for n in &f.nodes {
        if !matches!(n.op_type.as_deref(), Some("Conv" | "Gemm" | "MatMul")) {
            continue;
        }
        let at = |m: String| p.fail(format!("node `{}`: {m}", node_name(n)));
        let (Some(x), Some(w)) = (n.input.first(), n.input.get(1)) else {
            continue;
        };
        let (Some(fq), Some(qw)) = (f.acts.get(x), f.ints.get(w)) else {
            continue; // FP32 layer (or weight-only quantization, run as FP32)
        };
        let v = *values
            .get(n.output.first().map_or("", String::as_str))
            .ok_or_else(|| at("its output is not a graph value".into()))?;
        let bias = n.input.get(2).filter(|b| !b.is_empty());
        let conv = layer(&model.arch.graph.nodes[v].op, n, fq, qw, bias, &f).map_err(at)?;
        layers.insert(v, conv);
    }
    let mut meta = BTreeMap::new();
    meta.insert("source_model".into(), name.to_string());
    meta.insert(
        "algorithm".into(),
        "imported from an ONNX QDQ file (its scales and zero points)".into(),
    );
    let vf = value_formats(&f, &values, &model.arch.graph);
    let qm = QuantizedModel {
        arch: model.arch.name,
        norm: model.arch.norm.clone(),
        input_channels: model.arch.input_channels,
        input_size: model.arch.input_size,
        class_names: model.class_names,
        graph: model.arch.graph,
        params: model.params,
        layers,
        values: vf,
        meta,
    };
    crate::graph::validate::validate(
        &qm.graph,
        &qm.params,
        &|i| qm.layers.get(&i),
        qm.input_shape(),
    )
    .map_err(|e| p.fail(e))?;
    for (&i, l) in &qm.layers {
        l.requant()
            .map_err(|e| p.fail(format!("layer `{}`: {e}", qm.graph.nodes[i].name)))?;
    }
    Ok(qm)
}

/// The file's fake quantizations of values that own an int8 format (layer, add, concat and
/// pooling outputs, the logits) become their formats, so that synthcal rounds them where the
/// file does. Where one value has several (an Add's before and after a ReLU fused into it),
/// the last, the one on what synthcal computes, wins.
fn value_formats(
    f: &Folded,
    values: &HashMap<String, crate::graph::ValueId>,
    g: &crate::graph::Graph,
) -> BTreeMap<crate::graph::ValueId, QFormat> {
    let mut out = BTreeMap::new();
    for n in &f.nodes {
        let Some(o) = n.output.first() else { continue };
        if let (Some(fq), Some(&v)) = (f.acts.get(o), values.get(o)) {
            if fq.channels.is_none() && g.nodes[v].op.owns_int8_format() {
                out.insert(v, fq.format);
            }
        }
    }
    out
}

fn input(n: &NodeProto, k: usize) -> Option<&str> {
    n.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

fn axis_of(n: &NodeProto) -> i64 {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("axis"))
        .and_then(|a| a.i)
        .unwrap_or(1)
}

/// A DequantizeLinear/QuantizeLinear's scale and zero point (type and values).
fn scale_zp(
    n: &NodeProto,
    consts: &HashMap<String, Const>,
) -> std::result::Result<(Vec<f32>, i32, Vec<i32>), String> {
    let what = format!("{} `{}`", n.op_type(), node_name(n));
    let s = input(n, 1).ok_or(format!("{what} has no scale"))?;
    let scale = match consts.get(s) {
        Some(Const::F32(a)) if a.shape.len() <= 1 => a.data.clone(),
        _ => {
            return Err(format!(
                "{what}: scale `{s}` must be a float constant, a scalar or 1-d"
            ))
        }
    };
    if scale.is_empty() {
        return Err(format!("{what}: scale `{s}` is empty"));
    }
    if let Some(bad) = scale.iter().find(|v| !(v.is_normal() && **v > 0.0)) {
        return Err(format!("{what}: scale {bad} is not positive and finite"));
    }
    let (dt, zp) = match input(n, 2).map(|z| (z, consts.get(z))) {
        None => (data_type::UINT8, vec![0; scale.len()]),
        Some((_, Some(Const::Int8 { dt, values, .. }))) => (*dt, values.clone()),
        Some((z, Some(Const::I64(v)))) => {
            let zp: std::result::Result<Vec<i32>, _> =
                v.iter().map(|&v| i32::try_from(v)).collect();
            let zp =
                zp.map_err(|_| format!("{what}: zero point `{z}` is out of the int32 range"))?;
            (data_type::INT32, zp)
        }
        Some((z, _)) => {
            return Err(format!(
                "{what}: zero point `{z}` must be an integer constant"
            ))
        }
    };
    if zp.len() != scale.len() {
        return Err(format!(
            "{what}: {} zero points for {} scales",
            zp.len(),
            scale.len()
        ));
    }
    Ok((scale, dt, zp))
}

fn fold(
    nodes: &[NodeProto],
    consts: &HashMap<String, Const>,
) -> std::result::Result<Folded, String> {
    let producer: HashMap<&str, &NodeProto> = nodes
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut out = Folded {
        nodes: Vec::with_capacity(nodes.len()),
        consts: consts.clone(),
        ints: HashMap::new(),
        acts: HashMap::new(),
    };
    for n in nodes {
        match n.op_type() {
            "QuantizeLinear" => {
                let o = n.output.first().map(String::as_str).unwrap_or("");
                if let Some(r) = nodes
                    .iter()
                    .find(|r| r.input.iter().any(|i| i == o) && r.op_type() != "DequantizeLinear")
                {
                    return Err(format!("QuantizeLinear `{}` is read by {} `{}`: integer tensors are supported only between QuantizeLinear and DequantizeLinear", node_name(n), r.op_type(), node_name(r)));
                }
            }
            "DequantizeLinear" => dequantize(n, &producer, &mut out)?,
            _ => out.nodes.push(n.clone()),
        }
    }
    Ok(out)
}

fn dequantize(
    n: &NodeProto,
    producer: &HashMap<&str, &NodeProto>,
    out: &mut Folded,
) -> std::result::Result<(), String> {
    let what = format!("DequantizeLinear `{}`", node_name(n));
    let src = input(n, 0).ok_or(format!("{what} has no input"))?;
    let dst = n
        .output
        .first()
        .cloned()
        .ok_or(format!("{what} has no output"))?;
    let (scale, dt, zp) = scale_zp(n, &out.consts)?;
    if let Some(q) = producer
        .get(src)
        .filter(|q| q.op_type() == "QuantizeLinear")
    {
        // An activation's fake quantization: Q and DQ must agree.
        let (qs, qdt, qzp) = scale_zp(q, &out.consts)?;
        if (qs.as_slice(), qdt, qzp.as_slice()) != (scale.as_slice(), dt, zp.as_slice()) {
            return Err(format!(
                "{what} and QuantizeLinear `{}` differ in scale or zero point",
                node_name(q)
            ));
        }
        let x = input(q, 0).ok_or(format!("QuantizeLinear `{}` has no input", node_name(q)))?;
        let unsigned = match dt {
            data_type::UINT8 => true,
            data_type::INT8 => false,
            _ => return Err(format!("{what}: activations must be uint8 or int8")),
        };
        if zp.iter().any(|&z| z != zp[0]) {
            return Err(format!("{what}: per-channel zero points must be equal"));
        }
        let base = if unsigned {
            QFormat::unsigned(scale[0])
        } else {
            QFormat::signed(scale[0])
        };
        let format = base.with_zero_point(zp[0]);
        format.check().map_err(|e| format!("{what}: {e}"))?;
        let channels = if scale.len() > 1 {
            if axis_of(n) != 1 {
                return Err(format!(
                    "{what}: activations quantized along axis {}, only channels (1) are supported",
                    axis_of(n)
                ));
            }
            Some(scale.clone())
        } else {
            None
        };
        let format = match &channels {
            Some(cs) => QFormat {
                scale: cs.iter().fold(0.0f32, |m, &s| m.max(s)),
                ..format
            },
            None => format,
        };
        // A quantizer drops a ReLU whose output range starts at 0: keep it.
        let op = if format.range().0 == 0
            && !non_negative(x, producer, &out.consts, 0, &mut HashMap::new())
        {
            "Relu"
        } else {
            "Identity"
        };
        out.nodes.push(NodeProto {
            input: vec![x.to_string()],
            output: vec![dst.clone()],
            name: Some(node_name(n)),
            op_type: Some(op.into()),
            ..Default::default()
        });
        out.acts.insert(dst, FakeQuant { format, channels });
        return Ok(());
    }
    let (values, shape, dt) = match out.consts.get(src) {
        Some(Const::Int8 { shape, values, dt }) => (values.clone(), shape.clone(), *dt),
        Some(Const::I64(v)) if v.iter().all(|&x| i32::try_from(x).is_ok()) => (
            v.iter().map(|&x| x as i32).collect(),
            vec![v.len()],
            data_type::INT32,
        ),
        _ => {
            return Err(format!(
                "{what} reads `{src}`, neither an integer constant nor a QuantizeLinear"
            ))
        }
    };
    // Per axis (scale per entry of `axis`) or per tensor (one scale).
    let rank = shape.len().max(1) as i64;
    let a = axis_of(n);
    let axis = if a < 0 { a + rank } else { a };
    let per_axis = scale.len() > 1;
    if per_axis && !(0..shape.len() as i64).contains(&axis) {
        return Err(format!("{what}: axis {a} for shape {shape:?}"));
    }
    let axis = if per_axis { axis as usize } else { 0 };
    if per_axis && shape[axis] != scale.len() {
        return Err(format!(
            "{what}: {} scales for {} entries of axis {axis}",
            scale.len(),
            shape[axis]
        ));
    }
    let inner: usize = shape.iter().skip(axis + 1).product();
    let at = |i: usize| if per_axis { i / inner % scale.len() } else { 0 };
    let data: Vec<f32> = values
        .iter()
        .enumerate()
        .map(|(i, &q)| ((q as i64 - zp[at(i)] as i64) as f64 * scale[at(i)] as f64) as f32)
        .collect();
    out.consts
        .insert(dst.clone(), Const::F32(Array::new(&shape, data)));
    if zp.iter().all(|&z| z == 0) {
        let axis = per_axis.then_some(axis);
        out.ints.insert(
            dst,
            QConst {
                values,
                shape,
                scale,
                axis,
                dt,
            },
        );
    }
    Ok(())
}

/// Whether value `x` cannot be negative (a ReLU or ReLU6 before it, only through ops that
/// keep signs), so that a fake quantization clamping at 0 needs no ReLU of its own. Answers
/// are kept in `seen` per value, so a graph that reads one value many times (`Add(a, a)`
/// chains) costs one visit per value, not one per path.
fn non_negative(
    x: &str,
    producer: &HashMap<&str, &NodeProto>,
    consts: &HashMap<String, Const>,
    depth: usize,
    seen: &mut HashMap<String, bool>,
) -> bool {
    if let Some(&known) = seen.get(x) {
        return known;
    }
    let answer = non_negative_once(x, producer, consts, depth, seen);
    seen.insert(x.to_string(), answer);
    answer
}

fn non_negative_once(
    x: &str,
    producer: &HashMap<&str, &NodeProto>,
    consts: &HashMap<String, Const>,
    depth: usize,
    seen: &mut HashMap<String, bool>,
) -> bool {
    let Some(p) = producer.get(x).filter(|_| depth < 64) else {
        return false;
    };
    let mut all = |ins: &[String]| {
        !ins.is_empty()
            && ins
                .iter()
                .all(|i| non_negative(i, producer, consts, depth + 1, seen))
    };
    match p.op_type() {
        "Relu" => true,
        // Clip with a lower bound of at least 0.
        "Clip" => input(p, 1).is_some_and(
            |m| matches!(consts.get(m), Some(Const::F32(a)) if a.data.iter().all(|&v| v >= 0.0)),
        ),
        "MaxPool" | "GlobalAveragePool" | "AveragePool" | "Flatten" | "Identity" | "Reshape"
        | "Transpose" | "Slice" | "Pad" | "Dropout" => all(&p.input[..1]),
        "Concat" | "Add" => all(&p.input),
        "DequantizeLinear" => producer
            .get(input(p, 0).unwrap_or(""))
            .filter(|q| q.op_type() == "QuantizeLinear")
            .and_then(|q| scale_zp(q, consts).ok())
            .is_some_and(|(_, dt, zp)| {
                let f = match dt {
                    data_type::UINT8 => QFormat::unsigned(1.0),
                    _ => QFormat::signed(1.0),
                };
                zp.iter().all(|&z| f.with_zero_point(z).range().0 >= 0)
            }),
        _ => false,
    }
}

/// The INT8 layer of conv/linear node `op` (imported from ONNX node `n`).
fn layer(
    op: &Op,
    n: &NodeProto,
    fq: &FakeQuant,
    qw: &QConst,
    bias: Option<&String>,
    f: &Folded,
) -> std::result::Result<QConv, String> {
    let l = op.layer().ok_or("not imported as a conv/linear layer")?;
    if qw.dt != data_type::INT8 {
        return Err(format!("weight `{}` is not int8", n.input[1]));
    }
    // Output channels: axis 0 of Conv and Gemm(transB) weights, axis 1 of MatMul's [in, out].
    let trans_b = n
        .attribute
        .iter()
        .any(|a| a.name.as_deref() == Some("transB") && a.i == Some(1));
    let out_axis = if n.op_type() == "Conv" || trans_b {
        0
    } else {
        1
    };
    if qw.axis.is_some_and(|a| a != out_axis) {
        return Err(format!("weights quantized along axis {:?}; synthcal needs per-output-channel (axis {out_axis}) or per-tensor scales", qw.axis));
    }
    let (shape, q): ([usize; 4], Vec<i8>) = match (qw.shape.as_slice(), out_axis) {
        (&[co, ci, kh, kw], 0) => (
            [co, ci, kh, kw],
            qw.values.iter().map(|&v| v as i8).collect(),
        ),
        (&[o, i], 0) => ([o, i, 1, 1], qw.values.iter().map(|&v| v as i8).collect()),
        (&[i, o], 1) => (
            [o, i, 1, 1],
            (0..o * i)
                .map(|k| qw.values[(k % i) * o + k / i] as i8)
                .collect(),
        ),
        (s, _) => return Err(format!("weight of shape {s:?}")),
    };
    let weights = QWeights {
        shape,
        q,
        scale: (0..shape[0]).map(|c| qw.scale(c)).collect(),
        // The file's int8 weights, whatever range they use.
        bits: 8,
    };
    if fq.channels.is_some() && (l.linear || l.groups != shape[0] || shape[1] != 1) {
        return Err("per-channel input scales are supported only on depthwise convolutions".into());
    }
    if let Some(c) = fq.channels.as_ref().filter(|c| c.len() != shape[0]) {
        return Err(format!(
            "{} per-channel input scales for {} channels",
            c.len(),
            shape[0]
        ));
    }
    let mut conv = QConv {
        weights,
        bias: None,
        stride: l.stride,
        pad: l.pad,
        dilation: l.dilation,
        groups: l.groups,
        input: fq.format,
        input_channel_scales: fq.channels.clone(),
        act: l.act,
        output: None,
    };
    conv.bias = match bias {
        None => None,
        Some(b) => Some(match (f.ints.get(b), f.consts.get(b)) {
            (Some(qb), _) => exact_bias(&conv, qb)?,
            (None, Some(Const::F32(a))) => a.data.clone(),
            _ => return Err(format!("bias `{b}` is not a constant")),
        }),
    };
    Ok(conv)
}

/// FP32 biases that synthcal's requantization turns back into the file's int32 values (in
/// synthcal's accumulator units `x_scale * w_scale[c]`, where a file's bias scale differs).
fn exact_bias(conv: &QConv, qb: &QConst) -> std::result::Result<Vec<f32>, String> {
    let co = conv.weights.shape[0];
    if qb.values.len() != co {
        return Err(format!("{} bias values for {co} outputs", qb.values.len()));
    }
    (0..co)
        .map(|c| {
            let unit = conv.input_format(c).scale as f64 * conv.weights.scale[c] as f64;
            let want = (qb.values[c] as f64 * qb.scale(c) as f64 / unit).round_ties_even();
            let mut b = (want * unit) as f32;
            // f32 rounding can land a step off for large integers: walk to the exact one.
            for _ in 0..4 {
                let got = (b as f64 / unit).round_ties_even();
                if got == want {
                    return Ok(b);
                }
                b = if got < want {
                    b.next_up()
                } else {
                    b.next_down()
                };
            }
            Err(format!(
                "bias of output {c} ({want} accumulator units) has no exact f32 form"
            ))
        })
        .collect()
}
