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
