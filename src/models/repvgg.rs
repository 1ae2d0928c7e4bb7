//! chenyaofo's CIFAR RepVGG-A0/A1/A2: train-time blocks (3x3 conv-BN + 1x1 conv-BN + identity BN,
//! summed, ReLU) or the fused deploy form (`rbr_reparam`: one 3x3 conv with bias).

use super::builder::{Builder, ConvSpec};
use crate::graph::{Act, Op, ValueId};

/// (blocks per stage, width multipliers) of A0/A1/A2.
pub fn variant(name: &str) -> Option<[f64; 4]> {
    Some(match name {
        "a0" => [0.75, 0.75, 0.75, 2.5],
        "a1" => [1.0, 1.0, 1.0, 2.5],
        "a2" => [1.5, 1.5, 1.5, 2.75],
        _ => return None,
    })
}

fn block(
    b: &mut Builder,
    p: &str,
    x: ValueId,
    cin: usize,
    cout: usize,
    stride: usize,
    deploy: bool,
) -> ValueId {
    if deploy {
        let y = b.conv(
            &format!("{p}.rbr_reparam"),
            x,
            &ConvSpec::same(cin, cout, 3, stride).with_bias(),
        );
        return b.op(&format!("{p}.relu"), Op::Act(Act::Relu), &[y]);
    }
    let dense = b.conv_bn(
        &format!("{p}.rbr_dense.conv"),
        &format!("{p}.rbr_dense.bn"),
        x,
        &ConvSpec::same(cin, cout, 3, stride),
        Act::Identity,
    );
    let one = ConvSpec {
        pad: 0,
        ..ConvSpec::same(cin, cout, 1, stride)
    };
    let onebyone = b.conv_bn(
        &format!("{p}.rbr_1x1.conv"),
        &format!("{p}.rbr_1x1.bn"),
        x,
        &one,
        Act::Identity,
    );
    if cin == cout && stride == 1 {
        let id = b.bn(&format!("{p}.rbr_identity"), x, cin, Act::Identity);
        let s = b.op(
            &format!("{p}.add1"),
            Op::Add { act: Act::Identity },
            &[dense, onebyone],
        );
        b.op(&format!("{p}.add2"), Op::Add { act: Act::Relu }, &[s, id])
    } else {
        b.op(
            &format!("{p}.add"),
            Op::Add { act: Act::Relu },
            &[dense, onebyone],
        )
    }
}

pub fn repvgg(width: [f64; 4], deploy: bool, classes: usize) -> Builder {
    let mut b = Builder::default();
    let x = b.input();
    let mut cin = (64.0 * width[0]).min(64.0) as usize;
    let mut x = block(&mut b, "stage0", x, 3, cin, 1, deploy);
    let planes = [
        64.0 * width[0],
        128.0 * width[1],
        256.0 * width[2],
        512.0 * width[3],
    ];
    for (s, (blocks, planes)) in [2usize, 4, 14, 1].into_iter().zip(planes).enumerate() {
        for i in 0..blocks {
            let stride = if i == 0 && s > 0 { 2 } else { 1 };
            x = block(
                &mut b,
                &format!("stage{}.{i}", s + 1),
                x,
                cin,
                planes as usize,
                stride,
                deploy,
            );
            cin = planes as usize;
        }
    }
    let x = b.gap(x);
    b.linear("linear", x, cin, classes, Act::Identity);
    b
}

/// Re-parameterizes a train-time RepVGG (`repvgg_aN`) into its deploy form (`repvgg_aN_deploy`):
/// each block's 3x3 conv-BN, 1x1 conv-BN (centred in a 3x3 kernel) and identity BN (a 3x3
/// kernel with the BN scale at the centre of channel o -> o) fold into one 3x3 conv with bias,
/// as RepVGG's `get_equivalent_kernel_bias`. Quantization runs on the fused form.
pub fn fuse_to_deploy(model: &super::Model) -> crate::Result<super::Model> {
    use crate::array::Array;
    let deploy = super::arch(&format!("{}_deploy", model.arch.name))?;
    let p = &model.params;
    // (kernel scale per output channel, bias) of a BN with eps 1e-5.
    let bn = |prefix: &str| -> crate::Result<(Vec<f32>, Vec<f32>)> {
        let [g, b, m, v] =
            crate::graph::bn_names(prefix).map(|n| p.get(&n).map(|a| a.data.clone()));
        let (g, b, m, v) = (g?, b?, m?, v?);
        let scale: Vec<f32> = g
            .iter()
            .zip(&v)
            .map(|(g, v)| g / (v + 1e-5).sqrt())
            .collect();
        let bias = b
            .iter()
            .zip(&m)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok((scale, bias))
    };
    let mut out = crate::graph::Params::default();
    for (name, shape) in &deploy.expected {
        let Some(block) = name.strip_suffix(".rbr_reparam.weight") else {
            if let Some(block) = name.strip_suffix(".rbr_reparam.bias") {
                let mut bias = bn(&format!("{block}.rbr_dense.bn"))?.1;
                for extra in [
                    format!("{block}.rbr_1x1.bn"),
                    format!("{block}.rbr_identity"),
                ] {
                    if p.tensors.contains_key(&format!("{extra}.weight")) {
                        bias.iter_mut()
                            .zip(bn(&extra)?.1)
                            .for_each(|(a, b)| *a += b);
                    }
                }
                out.insert(name.clone(), Array::new(shape, bias));
            } else {
                out.insert(name.clone(), p.get(name)?.clone());
            }
            continue;
        };
        let (co, ci) = (shape[0], shape[1]);
        let mut k = p
            .get(&format!("{block}.rbr_dense.conv.weight"))?
            .data
            .clone();
        let (s3, _) = bn(&format!("{block}.rbr_dense.bn"))?;
        let (s1, _) = bn(&format!("{block}.rbr_1x1.bn"))?;
        let k1 = &p.get(&format!("{block}.rbr_1x1.conv.weight"))?.data;
        let id = if p
            .tensors
            .contains_key(&format!("{block}.rbr_identity.weight"))
        {
            Some(bn(&format!("{block}.rbr_identity"))?.0)
        } else {
            None
        };
        for o in 0..co {
            for c in 0..ci {
                let base = (o * ci + c) * 9;
                for t in 0..9 {
                    k[base + t] *= s3[o];
                }
                k[base + 4] += k1[o * ci + c] * s1[o];
                if let Some(sid) = &id {
                    if o == c {
                        k[base + 4] += sid[o];
                    }
                }
            }
        }
        out.insert(name.clone(), Array::new(shape, k));
    }
    super::Model::new(deploy, out)
}
