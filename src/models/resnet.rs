//! CIFAR ResNet-20/32/44/56 in the two published variants.

use super::builder::{Builder, ConvSpec};
use crate::graph::{Act, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// akamaster: stride-2 subsample plus zero channel padding (no parameters).
    OptionA,
    /// chenyaofo: 1x1 conv + BN `downsample`.
    Conv1x1,
}

/// depth = 6n + 2; stages of 16, 32, 64 channels.
pub fn resnet(depth: usize, shortcut: Shortcut, classes: usize) -> Builder {
    let n = (depth - 2) / 6;
    let mut b = Builder::default();
    let x = b.input();
    let mut x = b.conv_bn("conv1", "bn1", x, &ConvSpec::same(3, 16, 3, 1), Act::Relu);
    let mut cin = 16;
    for (stage, planes) in [16usize, 32, 64].into_iter().enumerate() {
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", stage + 1);
            let y = b.conv_bn(
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                x,
                &ConvSpec::same(cin, planes, 3, stride),
                Act::Relu,
            );
            let y = b.conv_bn(
                &format!("{p}.conv2"),
                &format!("{p}.bn2"),
                y,
                &ConvSpec::same(planes, planes, 3, 1),
                Act::Identity,
            );
            let short = if stride != 1 || cin != planes {
                match shortcut {
                    Shortcut::OptionA => b.op(
                        &format!("{p}.shortcut"),
                        Op::ShortcutA { pad: planes / 4 },
                        &[x],
                    ),
                    Shortcut::Conv1x1 => b.conv_bn(
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        x,
                        &ConvSpec::same(cin, planes, 1, stride),
                        Act::Identity,
                    ),
                }
            } else {
                x
            };
            x = b.op(&format!("{p}.add"), Op::Add { act: Act::Relu }, &[y, short]);
            cin = planes;
        }
    }
    let x = b.gap(x);
    let fc = match shortcut {
        Shortcut::OptionA => "linear",
        Shortcut::Conv1x1 => "fc",
    };
    b.linear(fc, x, 64, classes, Act::Identity);
    b
}
