//! ONNX Runtime as the independent reference, through `tools/ort_logits.py` and the Python
//! that `SYNTHCAL_ORT_PYTHON` names (CI installs one with onnxruntime and numpy).

use std::ffi::OsString;
use std::path::Path;

/// How ONNX Runtime runs a quantized (QDQ) file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Run {
    /// Its default: QDQ pairs fused into integer kernels. On x86 without VNNI these sum
    /// pairs of u8 x s8 products into saturating 16-bit lanes, so results depend on the CPU.
    Fused,
    /// Graph optimizations off: every QuantizeLinear/DequantizeLinear computed in float as
    /// the file states it, the same on any CPU.
    AsWritten,
}

/// The test Python, or None after a skip note.
pub fn python() -> Option<OsString> {
    let p = std::env::var_os("SYNTHCAL_ORT_PYTHON");
    if p.is_none() {
        super::skip("SYNTHCAL_ORT_PYTHON is not set (a Python with onnxruntime and numpy)");
    }
    p
}

/// ONNX Runtime's outputs for `model` on `input` (NCHW f32, the model's input shape per
/// image); the input and output files go beside the model.
pub fn logits(python: &OsString, model: &Path, input: &[f32], run: Run) -> Vec<f32> {
    let (src, dst) = (model.with_extension("x.f32"), model.with_extension("y.f32"));
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&src, bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/ort_logits.py");
    let mut cmd = std::process::Command::new(python);
    cmd.args([
        script.as_ref(),
        model.as_os_str(),
        src.as_os_str(),
        dst.as_os_str(),
    ]);
    if run == Run::AsWritten {
        cmd.arg("--as-written");
    }
    let st = cmd.status().unwrap();
    assert!(
        st.success(),
        "{}: onnxruntime failed: {st}",
        model.display()
    );
    std::fs::read(&dst)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// ONNX Runtime's outputs for a QDQ file against synthcal's.
#[derive(Debug)]
pub struct Comparison {
    /// The largest |difference| from the as-written run.
    pub written: f32,
    /// The largest |logit| of synthcal's.
    pub scale: f32,
    /// The largest |difference| from the fused run.
    pub fused: f32,
    /// Rows whose top-1 is the same in the fused run and synthcal's.
    pub agree: usize,
}

/// Runs `model` both ways on `input` and compares each with `ours` (rows of `k` logits).
pub fn compare(
    python: &OsString,
    model: &Path,
    input: &[f32],
    ours: &[f32],
    k: usize,
) -> Comparison {
    let written = logits(python, model, input, Run::AsWritten);
    let (written, scale) = difference(&written, ours);
    let fused = logits(python, model, input, Run::Fused);
    Comparison {
        written,
        scale,
        fused: difference(&fused, ours).0,
        agree: same_top1(&fused, ours, k),
    }
}

/// The largest |difference| between two logit sets and the largest |logit| of `ours`.
pub fn difference(theirs: &[f32], ours: &[f32]) -> (f32, f32) {
    assert_eq!(theirs.len(), ours.len());
    let worst = synthcal::array::worst(theirs.iter().zip(ours).map(|(p, q)| (p - q).abs()));
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    (worst, scale)
}

/// How many rows of `k` logits have the same first largest class in both sets.
pub fn same_top1(theirs: &[f32], ours: &[f32], k: usize) -> usize {
    use synthcal::infer::argmax_rows;
    let (a, b) = (argmax_rows(theirs, k), argmax_rows(ours, k));
    a.iter().zip(&b).filter(|(p, q)| p == q).count()
}

/// Whether ONNX Runtime's fused integer kernels may saturate 8-bit weights on this CPU: x86
/// without VNNI sums pairs of u8 x s8 products into 16 bits (255 x 127 x 2 > 32767; ORT's
/// quantization guide gives 7-bit weights, its `reduce_range`, as the remedy).
pub fn fused_may_saturate() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}
