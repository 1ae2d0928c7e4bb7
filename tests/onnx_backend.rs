//! The ONNX package's own backend test data (`onnx/backend/test/data/pytorch-converted` and
//! `pytorch-operator`: small models with inputs and expected outputs): every case synthcal
//! imports must compute the expected outputs (1e-4 relative), and every case it does not
//! support must be refused with an error that says what is missing, never a panic.
//!
//! The data ships with the `onnx` Python package; `SYNTHCAL_ONNX_DATA` names its
//! `backend/test/data` folder (`.ci/run` sets it). Without it the test skips, saying so.

mod common;

use prost::Message;
use std::path::{Path, PathBuf};
use synthcal::graph::exec::Runner;
use synthcal::onnx::{self, proto::TensorProto};

const SUITES: [&str; 2] = ["pytorch-converted", "pytorch-operator"];

/// Cases that must import and match: a refusal of any of them fails the test, so that it
/// cannot pass by refusing everything.
const MUST_PASS: &[&str] = &[
    "test_Conv2d",
    "test_Conv2d_no_bias",
    "test_Conv2d_padding",
    "test_Conv2d_strided",
    "test_Conv2d_dilated",
    "test_BatchNorm2d_eval",
    "test_MaxPool2d",
    "test_AvgPool2d",
    "test_AvgPool2d_stride",
    "test_BatchNorm2d_momentum_eval",
    "test_PReLU_2d",
    "test_PReLU_2d_multiparam",
    "test_ReLU",
    "test_Sigmoid",
    "test_Tanh",
    // Inputs of other channel counts than 3.
    "test_Conv2d_depthwise",
    "test_Conv2d_depthwise_padded",
    "test_Conv2d_depthwise_strided",
    "test_Conv2d_depthwise_with_multiplier",
    "test_Conv2d_groups",
    "test_Conv2d_groups_thnn",
    "test_operator_conv",
    "test_operator_flatten",
];

/// A float tensor of the data set: its dims and values.
fn read_tensor(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = TensorProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
    let dims = t.dims.iter().map(|&d| d as usize).collect();
    let data = match &t.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => t.float_data.clone(),
    };
    (dims, data)
}

enum Outcome {
    Passed,
    Refused(String),
}

/// Imports and runs one case; a wrong output is a test failure (panic) naming the case.
fn run_case(gpu: &std::sync::Arc<synthcal::Gpu>, dir: &Path) -> Outcome {
    let case = dir.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let model = match onnx::import(&bytes, &case) {
        Ok(m) => m,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let set = dir.join("test_data_set_0");
    if set.join("input_1.pb").exists() {
        return Outcome::Refused("imported a graph of several inputs".into());
    }
    let (dims, x) = read_tensor(&set.join("input_0.pb"));
    let (want_dims, want) = read_tensor(&set.join("output_0.pb"));
    let runner = Runner::new(gpu.clone(), model.arch.graph.clone(), &model.params).unwrap();
    let got = (|| {
        let t = gpu.upload_f32(&dims, &x)?;
        let mut s = gpu.stream();
        let out = runner.forward(&mut s, &t, &[])?.output;
        s.submit();
        let shape = out.shape().to_vec();
        Ok::<_, synthcal::Error>((shape, gpu.read_f32(&out)?))
    })();
    let (shape, got) = match got {
        Ok(v) => v,
        // Imported at one input size, run at the data's: a clear error is a refusal.
        Err(e) => return Outcome::Refused(format!("run: {e}")),
    };
    assert_eq!(
        shape.iter().product::<usize>(),
        want_dims.iter().product::<usize>(),
        "{case}: output shape {shape:?}, expected {want_dims:?}"
    );
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale.max(w.abs()),
            "{case}: output {i} is {g}, expected {w}"
        );
    }
    Outcome::Passed
}

#[test]
fn onnx_backend_cases_match_or_are_refused_clearly() {
    common::skip_without_gpu!();
    let Some(root) = std::env::var_os("SYNTHCAL_ONNX_DATA").map(PathBuf::from) else {
        common::skip("SYNTHCAL_ONNX_DATA is not set (the onnx package's backend/test/data)");
        return;
    };
    let gpu = common::gpu();
    let (mut passed, mut refused) = (Vec::new(), Vec::new());
    for suite in SUITES {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join(suite))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(suite).display()))
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        for dir in cases {
            let case = dir.file_name().unwrap().to_string_lossy().into_owned();
            match run_case(&gpu, &dir) {
                Outcome::Passed => passed.push(case),
                Outcome::Refused(why) => refused.push((case, why)),
            }
        }
    }
    eprintln!("ONNX backend data: {} cases pass:", passed.len());
    eprintln!("  {}", passed.join(" "));
    eprintln!("{} refused:", refused.len());
    for (case, why) in &refused {
        eprintln!("  {case}: {}", why.lines().next().unwrap_or(""));
    }
    // A refusal says what is missing: an op, an input form or a setting.
    let unclear: Vec<_> = refused
        .iter()
        .filter(|(_, why)| {
            let lower = why.to_lowercase();
            !["support", "cannot", "must", "needs", "has no op"]
                .iter()
                .any(|w| lower.contains(w))
        })
        .collect();
    assert!(unclear.is_empty(), "unclear refusals: {unclear:?}");
    for must in MUST_PASS {
        assert!(
            passed.iter().any(|p| p == must),
            "{must} must import and match; refused: {:?}",
            refused.iter().find(|(c, _)| c == must)
        );
    }
}
