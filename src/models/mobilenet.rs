//! chenyaofo's CIFAR MobileNetV2 (torchvision's, with stride 1 in the stem and the second stage).

use super::builder::{Builder, ConvSpec};
use crate::graph::{Act, Op};

/// torchvision's `_make_divisible` (round to a multiple of 8, never below 90%).
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

pub fn mobilenetv2(width: f64, classes: usize) -> Builder {
    // t (expansion), c (channels), n (repeats), s (stride)
    const SETTING: [[usize; 4]; 7] = [
        [1, 16, 1, 1],
        [6, 24, 2, 1],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ];
    let mut b = Builder::default();
    let x = b.input();
    let mut cin = make_divisible(32.0 * width, 8);
    let last = make_divisible(1280.0 * width.max(1.0), 8);
    let mut x = b.conv_bn(
        "features.0.0",
        "features.0.1",
        x,
        &ConvSpec::same(3, cin, 3, 1),
        Act::Relu6,
    );
    let mut idx = 1;
    for [t, c, n, s] in SETTING {
        let cout = make_divisible(c as f64 * width, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}.conv");
            let hidden = cin * t;
            let mut y = x;
            let mut j = 0;
            if t != 1 {
                y = b.conv_bn(
                    &format!("{p}.0.0"),
                    &format!("{p}.0.1"),
                    y,
                    &ConvSpec::same(cin, hidden, 1, 1),
                    Act::Relu6,
                );
                j = 1;
            }
            y = b.conv_bn(
                &format!("{p}.{j}.0"),
                &format!("{p}.{j}.1"),
                y,
                &ConvSpec::depthwise(hidden, 3, stride),
                Act::Relu6,
            );
            y = b.conv_bn(
                &format!("{p}.{}", j + 1),
                &format!("{p}.{}", j + 2),
                y,
                &ConvSpec::same(hidden, cout, 1, 1),
                Act::Identity,
            );
            x = if stride == 1 && cin == cout {
                b.op(
                    &format!("features.{idx}.add"),
                    Op::Add { act: Act::Identity },
                    &[x, y],
                )
            } else {
                y
            };
            cin = cout;
            idx += 1;
        }
    }
    let x = b.conv_bn(
        &format!("features.{idx}.0"),
        &format!("features.{idx}.1"),
        x,
        &ConvSpec::same(cin, last, 1, 1),
        Act::Relu6,
    );
    let x = b.gap(x);
    b.linear("classifier.1", x, last, classes, Act::Identity);
    b
}

#[cfg(test)]
mod tests {
    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(super::make_divisible(32.0 * 1.4, 8), 48);
        assert_eq!(super::make_divisible(16.0 * 0.5, 8), 8);
        assert_eq!(super::make_divisible(24.0 * 0.75, 8), 24); // 18 -> 16 < 0.9*18 -> 24
        assert_eq!(super::make_divisible(1280.0 * 1.4, 8), 1792);
    }
}
