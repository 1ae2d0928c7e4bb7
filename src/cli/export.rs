//! `synthcal export`: an FP32 classifier to ONNX.

use crate::eval::Classifier;
use std::path::Path;

/// Exports `model` to `output`; an INT8 model is refused until QDQ export exists.
pub fn run(model: &Path, output: &Path) -> anyhow::Result<()> {
    crate::io::check_output_file(output, &[model])?;
    let m = match Classifier::load(model, None)? {
        Classifier::Fp32(m) => m,
        Classifier::Int8(_) => anyhow::bail!(
            "{}: an INT8 model; not yet: QDQ export is not implemented (export its FP32 source)",
            model.display()
        ),
    };
    crate::onnx::write(&m, output)?;
    println!(
        "{} -> {} ({}, {} nodes, opset {})",
        model.display(),
        output.display(),
        m.arch.name,
        m.arch.graph.nodes.len(),
        crate::onnx::OPSET
    );
    Ok(())
}
