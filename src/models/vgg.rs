//! chenyaofo's CIFAR VGG-BN: conv(bias)+BN+ReLU stacks with 2x2 max pools, 3-layer classifier.

use super::builder::{Builder, ConvSpec};
use crate::graph::{Act, Op};

/// 0 marks a max pool.
pub fn config(depth: usize) -> Option<&'static [usize]> {
    const A: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
    const B: &[usize] = &[
        64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
    ];
    const D: &[usize] = &[
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ];
    const E: &[usize] = &[
        64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
    ];
    Some(match depth {
        11 => A,
        13 => B,
        16 => D,
        19 => E,
        _ => return None,
    })
}

pub fn vgg_bn(cfg: &[usize], classes: usize) -> Builder {
    let mut b = Builder::default();
    let mut x = b.input();
    let (mut cin, mut idx) = (3, 0);
    for &v in cfg {
        if v == 0 {
            let op = Op::MaxPool {
                kernel: 2,
                stride: 2,
                pad: 0.into(),
                ceil: false,
                dilation: [1, 1],
            };
            x = b.op(&format!("features.{idx}"), op, &[x]);
            idx += 1;
        } else {
            let spec = ConvSpec::same(cin, v, 3, 1).with_bias();
            x = b.conv_bn(
                &format!("features.{idx}"),
                &format!("features.{}", idx + 1),
                x,
                &spec,
                Act::Relu,
            );
            idx += 3;
            cin = v;
        }
    }
    let x = b.op("flatten", Op::Flatten, &[x]);
    let x = b.linear("classifier.0", x, 512, 512, Act::Relu);
    let x = b.linear("classifier.3", x, 512, 512, Act::Relu);
    b.linear("classifier.6", x, 512, classes, Act::Identity);
    b
}
