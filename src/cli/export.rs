//! `synthcal export`: a classifier to ONNX (FP32 as float ops, INT8 in the QDQ format).

use crate::eval::Classifier;
use std::path::Path;

/// Exports `model` to `output`.
pub fn run(model: &Path, output: &Path) -> anyhow::Result<()> {
    super::defaults::check_models([model])?;
    crate::io::check_output_file(output, &[model])?;
    let mut wide = false;
    let (arch, nodes, form) = match Classifier::load(model, None)? {
        Classifier::Fp32(m) => {
            crate::onnx::write(&m, output)?;
            (m.arch.name, m.arch.graph.nodes.len(), "FP32")
        }
        Classifier::Int8(q) => {
            crate::onnx::write_qdq(&q, output)?;
            wide = q.layer_bits().iter().any(|b| b.weights == 8);
            (q.arch, q.graph.nodes.len(), "INT8 as QDQ")
        }
    };
    println!(
        "{} -> {} ({arch}, {form}, {nodes} nodes, opset {})",
        model.display(),
        output.display(),
        crate::onnx::OPSET
    );
    if wide {
        println!(
            "note: ONNX Runtime's integer kernels on x86 CPUs without VNNI (AVX2 only) can \
             overflow on 8-bit weights and lose accuracy; for such a target, quantize with \
             --wbits 7"
        );
    }
    Ok(())
}
