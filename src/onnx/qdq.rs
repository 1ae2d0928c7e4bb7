//! INT8 models as QDQ ONNX: each quantized conv/linear reads `DequantizeLinear(QuantizeLinear(x))`
//! in its input format, int8 weights dequantized per output channel (axis 0), and an int32
//! bias at the accumulator scale (`x_scale * w_scale[c]`, zero point 0), so that ONNX Runtime,
//! OpenVINO and TensorRT can fuse them into integer kernels. Each other value synthcal
//! computes in int8 (residual adds, pooling, concat; see `graph::int8`) is followed by a
//! QuantizeLinear/DequantizeLinear pair in its format. Layers kept in FP32 stay float.

use super::export::{encode, f32_tensor, int, Source, Writer};
use super::proto::{data_type, TensorProto};
use crate::error::{Error, Result};
use crate::graph::{Op, ValueId};
use crate::quant::int8::{QConv, QFormat};
use crate::quant::QuantizedModel;
use std::collections::BTreeMap;

/// The INT8 model as a QDQ ONNX file (opset 13), with the FP32 exporter's input, output and
/// metadata conventions.
pub fn export_qdq(qm: &QuantizedModel) -> Result<Vec<u8>> {
    // Only values that synthcal computes in int8 are rounded in the file.
    let layers = qm.layers.iter().map(|(&k, v)| (k, v.clone())).collect();
    let plan = qm.graph.int8_plan(&layers, &qm.values);
    let values: BTreeMap<ValueId, QFormat> = qm
        .values
        .iter()
        .filter(|(v, _)| plan.formats.contains_key(v))
        .map(|(&v, &f)| (v, f))
        .collect();
    encode(&Source {
        name: &qm.arch,
        graph: &qm.graph,
        params: &qm.params,
        norm: qm.norm.clone(),
        input_shape: qm.input_shape(),
        class_names: &qm.class_names,
        layers: Some((&qm.layers, Writer::qdq_layer)),
        values: Some((&values, Writer::qdq_value)),
    })
}

/// An integer tensor of ONNX type `dt` (UINT8, INT8 or INT32), little-endian raw data.
fn int_tensor(name: &str, dt: i32, shape: &[usize], values: &[i32]) -> TensorProto {
    let raw = match dt {
        data_type::INT32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => values.iter().map(|&v| v as u8).collect(),
    };
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(dt),
        name: Some(name.to_string()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

impl Writer {
    /// Quantized layer `name` (node op `op`) reading `ins`.
    pub(super) fn qdq_layer(
        &mut self,
        name: &str,
        op: &Op,
        q: &QConv,
        ins: &[String],
    ) -> Result<()> {
        let fail = |m: String| Error::Invalid(format!("QDQ export: layer `{name}`: {m}"));
        let Some(l) = op.layer() else {
            return Err(fail(
                "an INT8 layer on a node that is not conv/linear".into(),
            ));
        };
        let [x] = ins else {
            return Err(fail(format!(
                "an INT8 layer reads one input, not {}",
                ins.len()
            )));
        };
        let q = QConv {
            output: None,
            ..q.clone()
        };
        let r = q.requant().map_err(|e| fail(e.to_string()))?;
        let x = self.fake_quant(name, x, &q).map_err(fail)?;
        let [co, cig, kh, kw] = q.weights.shape;
        let wshape = if l.linear {
            vec![co, cig * kh * kw]
        } else {
            q.weights.shape.to_vec()
        };
        let wq: Vec<i32> = q.weights.q.iter().map(|&v| v as i32).collect();
        let w = self.dequantized(
            &format!("{name}.weight"),
            int_tensor(&format!("{name}.qweight"), data_type::INT8, &wshape, &wq),
            &q.weights.scale,
            data_type::INT8,
        );
        let mut inputs = vec![x, w];
        if q.bias.is_some() {
            // The accumulator scale as the kernels use it: the f64 product rounded to f32.
            let scale: Vec<f32> = (0..co)
                .map(|c| (q.input_format(c).scale as f64 * q.weights.scale[c] as f64) as f32)
                .collect();
            inputs.push(self.dequantized(
                &format!("{name}.bias"),
                int_tensor(&format!("{name}.qbias"), data_type::INT32, &[co], &r.bias_q),
                &scale,
                data_type::INT32,
            ));
        }
        self.layer(name, &l, &inputs)
    }

    /// Int8 value `name` (an add's, pool's or layer's output) through QuantizeLinear and
    /// DequantizeLinear in its format; returns the dequantized name.
    pub(super) fn qdq_value(&mut self, name: &str, f: QFormat) -> Result<String> {
        let q = QConv::identity(f, crate::graph::Act::Identity);
        self.fake_quant(&format!("{name}:value"), name, &q)
            .map_err(|m| Error::Invalid(format!("QDQ export: value `{name}`: {m}")))
    }

    /// `DequantizeLinear(t, scale, 0)` along axis 0 writing `out`; returns `out`.
    fn dequantized(&mut self, out: &str, t: TensorProto, scale: &[f32], dt: i32) -> String {
        let n = scale.len();
        let q = t.name.clone().unwrap_or_default();
        let (s, z) = (format!("{out}:scale"), format!("{out}:zero_point"));
        self.init.push(t);
        self.init.push(f32_tensor(&s, &[n], scale));
        self.init.push(int_tensor(&z, dt, &[n], &vec![0; n]));
        let axis = vec![int("axis", 0)];
        self.push(
            "DequantizeLinear",
            &format!("{out}:dq"),
            &[q, s, z],
            out,
            axis,
        );
        out.to_string()
    }

    /// `x` through QuantizeLinear and DequantizeLinear in the layer's input format (per
    /// channel, axis 1, for a depthwise layer's channel scales); returns the dequantized name.
    fn fake_quant(
        &mut self,
        name: &str,
        x: &str,
        q: &QConv,
    ) -> std::result::Result<String, String> {
        let f: QFormat = q.input;
        f.check().map_err(|e| format!("input format: {e}"))?;
        let dt = if f.unsigned {
            data_type::UINT8
        } else {
            data_type::INT8
        };
        let (s, z) = (format!("{name}:x_scale"), format!("{name}:x_zero_point"));
        let attrs = match &q.input_channel_scales {
            Some(cs) => {
                if f.bits != 8 {
                    return Err("per-channel input scales with fewer than 8 bits".into());
                }
                self.init.push(f32_tensor(&s, &[cs.len()], cs));
                let zp = vec![f.zero_point; cs.len()];
                self.init.push(int_tensor(&z, dt, &[cs.len()], &zp));
                vec![int("axis", 1)]
            }
            None => {
                self.init.push(f32_tensor(&s, &[], &[f.scale]));
                self.init.push(int_tensor(&z, dt, &[], &[f.zero_point]));
                vec![]
            }
        };
        let (xq, xdq) = (format!("{name}:xq"), format!("{name}:x"));
        let qz = [x.to_string(), s.clone(), z.clone()];
        self.push(
            "QuantizeLinear",
            &format!("{name}:quantize"),
            &qz,
            &xq,
            attrs.clone(),
        );
        let dz = [xq, s, z];
        self.push(
            "DequantizeLinear",
            &format!("{name}:dequantize"),
            &dz,
            &xdq,
            attrs,
        );
        if f.bits == 8 {
            return Ok(xdq);
        }
        // Fewer bits than the 8 stored: clamp the dequantized values to the format's range
        // (the same as saturating the integers, since dequantization is monotonic).
        let (lo, hi) = f.range();
        let (min, max) = (format!("{name}:x_min"), format!("{name}:x_max"));
        self.init.push(f32_tensor(&min, &[], &[f.dequantize(lo)]));
        self.init.push(f32_tensor(&max, &[], &[f.dequantize(hi)]));
        let clipped = format!("{name}:x_clipped");
        self.push(
            "Clip",
            &format!("{name}:clip"),
            &[xdq, min, max],
            &clipped,
            vec![],
        );
        Ok(clipped)
    }
}
