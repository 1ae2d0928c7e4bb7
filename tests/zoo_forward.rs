//! Every architecture family runs on the GPU engine and matches the CPU reference executor,
//! with random weights, both as published (separate BatchNorm) and after the inference passes.

mod common;

use synthcal::array::Array;
use synthcal::graph::{cpu, exec::Runner, passes};
use synthcal::models::{arch, random_params};

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    synthcal::array::worst(
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0)),
    )
}

fn check(name: &str) {
    let gpu = common::gpu();
    let a = arch(name).unwrap();
    let params = random_params(&a, 7);
    let x = Array::random(&[2, 3, 32, 32], 99);
    let want = cpu::forward(&a.graph, &params, &x).unwrap();
    assert_eq!(want.shape, vec![2, 10], "{name}");

    let runner = Runner::new(gpu.clone(), a.graph.clone(), &params).unwrap();
    let got = runner.logits(&x.data, 2, [32, 32]).unwrap();
    let e = max_rel(&got, &want.data);
    assert!(e < 1e-4, "{name}: GPU vs CPU max rel err {e}");

    let mut p2 = params.clone();
    let g2 = passes::optimize_for_inference(&a.graph, &mut p2).unwrap();
    assert!(
        g2.nodes.len() < a.graph.nodes.len(),
        "{name}: passes fused nothing"
    );
    let folded_cpu = cpu::forward(&g2, &p2, &x).unwrap();
    let e = max_rel(&folded_cpu.data, &want.data);
    assert!(
        e < 1e-4,
        "{name}: optimized graph (CPU) vs original max rel err {e}"
    );
    let got2 = Runner::new(gpu, g2, &p2)
        .unwrap()
        .logits(&x.data, 2, [32, 32])
        .unwrap();
    let e = max_rel(&got2, &want.data);
    assert!(
        e < 1e-4,
        "{name}: optimized graph (GPU) vs original max rel err {e}"
    );
}

#[test]
fn akamaster_resnet() {
    common::skip_without_gpu!();
    check("akamaster_resnet20");
}

#[test]
fn chenyaofo_resnet() {
    common::skip_without_gpu!();
    check("resnet20");
}

#[test]
fn shufflenetv2() {
    common::skip_without_gpu!();
    check("shufflenetv2_x0_5");
}

#[test]
fn mobilenetv2() {
    common::skip_without_gpu!();
    check("mobilenetv2_x0_5");
}

#[test]
fn vgg_bn() {
    common::skip_without_gpu!();
    check("vgg11_bn");
}

#[test]
fn repvgg_train_and_deploy_forms() {
    common::skip_without_gpu!();
    check("repvgg_a0");
    check("repvgg_a0_deploy");
}

#[test]
fn repvgg_fuses_into_its_deploy_form() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let a = arch("repvgg_a0").unwrap();
    // BN statistics away from the identity so that every branch matters.
    let mut params = random_params(&a, 11);
    for (n, t) in params.tensors.iter_mut() {
        if n.ends_with("running_var") {
            t.data.iter_mut().for_each(|v| *v = v.abs() + 0.5);
        }
    }
    let model = synthcal::models::Model::new(a, params).unwrap();
    let fused = synthcal::models::repvgg::fuse_to_deploy(&model).unwrap();
    assert_eq!(fused.arch.name, "repvgg_a0_deploy");
    let x = Array::random(&[2, 3, 32, 32], 5);
    let run = |m: &synthcal::models::Model| {
        Runner::new(gpu.clone(), m.arch.graph.clone(), &m.params)
            .unwrap()
            .logits(&x.data, 2, [32, 32])
            .unwrap()
    };
    let (want, got) = (run(&model), run(&fused));
    let e = max_rel(&got, &want);
    assert!(e < 1e-3, "fused vs train-time max rel err {e}");
}
