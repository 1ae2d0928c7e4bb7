//! chenyaofo's CIFAR ShuffleNetV2 (torchvision's, with conv1 stride 1 and no max pool).

use super::builder::{Builder, ConvSpec};
use crate::graph::{Act, Op, ValueId};

/// Stage output channels for x0.5, x1.0, x1.5, x2.0.
pub fn widths(mult: &str) -> Option<[usize; 5]> {
    Some(match mult {
        "x0_5" => [24, 48, 96, 192, 1024],
        "x1_0" => [24, 116, 232, 464, 1024],
        "x1_5" => [24, 176, 352, 704, 1024],
        "x2_0" => [24, 244, 488, 976, 2048],
        _ => return None,
    })
}

fn unit(b: &mut Builder, p: &str, x: ValueId, inp: usize, oup: usize, stride: usize) -> ValueId {
    let bf = oup / 2;
    let (left, right_in, right_c) = if stride > 1 {
        let l = b.conv_bn(
            &format!("{p}.branch1.0"),
            &format!("{p}.branch1.1"),
            x,
            &ConvSpec::depthwise(inp, 3, stride),
            Act::Identity,
        );
        let l = b.conv_bn(
            &format!("{p}.branch1.2"),
            &format!("{p}.branch1.3"),
            l,
            &ConvSpec::same(inp, bf, 1, 1),
            Act::Relu,
        );
        (l, x, inp)
    } else {
        let l = b.op(
            &format!("{p}.chunk0"),
            Op::SliceChannels { start: 0, len: bf },
            &[x],
        );
        let r = b.op(
            &format!("{p}.chunk1"),
            Op::SliceChannels { start: bf, len: bf },
            &[x],
        );
        (l, r, bf)
    };
    let r = b.conv_bn(
        &format!("{p}.branch2.0"),
        &format!("{p}.branch2.1"),
        right_in,
        &ConvSpec::same(right_c, bf, 1, 1),
        Act::Relu,
    );
    let r = b.conv_bn(
        &format!("{p}.branch2.3"),
        &format!("{p}.branch2.4"),
        r,
        &ConvSpec::depthwise(bf, 3, stride),
        Act::Identity,
    );
    let r = b.conv_bn(
        &format!("{p}.branch2.5"),
        &format!("{p}.branch2.6"),
        r,
        &ConvSpec::same(bf, bf, 1, 1),
        Act::Relu,
    );
    let cat = b.op(&format!("{p}.cat"), Op::Concat, &[left, r]);
    b.op(
        &format!("{p}.shuffle"),
        Op::ChannelShuffle { groups: 2 },
        &[cat],
    )
}

pub fn shufflenetv2(w: [usize; 5], classes: usize) -> Builder {
    let mut b = Builder::default();
    let x = b.input();
    let mut x = b.conv_bn(
        "conv1.0",
        "conv1.1",
        x,
        &ConvSpec::same(3, w[0], 3, 1),
        Act::Relu,
    );
    let mut cin = w[0];
    for (s, (repeats, cout)) in [4usize, 8, 4].into_iter().zip(&w[1..4]).enumerate() {
        for i in 0..repeats {
            let p = format!("stage{}.{i}", s + 2);
            let stride = if i == 0 { 2 } else { 1 };
            x = unit(&mut b, &p, x, cin, *cout, stride);
            cin = *cout;
        }
    }
    let x = b.conv_bn(
        "conv5.0",
        "conv5.1",
        x,
        &ConvSpec::same(cin, w[4], 1, 1),
        Act::Relu,
    );
    let x = b.gap(x);
    b.linear("fc", x, w[4], classes, Act::Identity);
    b
}
