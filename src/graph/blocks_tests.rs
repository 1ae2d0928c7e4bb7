use super::*;
use crate::graph::Node;
use crate::models::Model;
use crate::ops::Act;

fn is_layer(g: &Graph) -> impl Fn(ValueId) -> bool + '_ {
    |v| matches!(g.nodes[v].op, Op::Conv2d { .. } | Op::Linear { .. })
}

/// The inference graph quantization works on (BatchNorm folded, activations fused).
fn folded(name: &str) -> Graph {
    let m = Model::random(name, 1).unwrap();
    crate::quant::default::prepare(&m).unwrap().0
}

fn count(g: &Graph, b: &Block, f: impl Fn(&Op) -> bool) -> usize {
    b.nodes.iter().filter(|&&v| f(&g.nodes[v].op)).count()
}

/// Blocks follow each other, read nothing from outside but their input, and hold every
/// layer exactly once.
fn check_partition(g: &Graph, blocks: &[Block]) {
    let mut prev = 0;
    let mut layers: Vec<ValueId> = Vec::new();
    for b in blocks {
        assert_eq!(b.input, prev);
        assert_eq!(b.nodes.last(), Some(&b.output));
        for &v in &b.nodes {
            for &u in &g.nodes[v].inputs {
                assert!(
                    u == b.input || b.nodes.contains(&u),
                    "{} reads {u}",
                    g.nodes[v].name
                );
            }
        }
        assert!(!b.layers.is_empty());
        layers.extend(&b.layers);
        prev = b.output;
    }
    let all: Vec<ValueId> = (0..g.nodes.len()).filter(|&v| is_layer(g)(v)).collect();
    assert_eq!(layers, all);
}

#[test]
fn resnet20_blocks_are_basic_blocks() {
    for (name, downsample_layers) in [("akamaster_resnet20", 2), ("resnet20", 3)] {
        let g = folded(name);
        let blocks = g.blocks(is_layer(&g));
        check_partition(&g, &blocks);
        let sizes: Vec<usize> = blocks.iter().map(|b| b.layers.len()).collect();
        let mut want = vec![1];
        for stage in 0..3 {
            for i in 0..3 {
                want.push(if stage > 0 && i == 0 {
                    downsample_layers
                } else {
                    2
                });
            }
        }
        want.push(1);
        assert_eq!(sizes, want, "{name}");
        for b in &blocks[1..10] {
            assert_eq!(count(&g, b, |o| matches!(o, Op::Add { .. })), 1, "{name}");
            assert!(matches!(g.nodes[b.output].op, Op::Add { act: Act::Relu }));
        }
        // Option A: the two downsampling blocks hold the shortcut.
        let short = blocks
            .iter()
            .map(|b| count(&g, b, |o| matches!(o, Op::ShortcutA { .. })));
        let want = if downsample_layers == 2 { 2 } else { 0 };
        assert_eq!(short.sum::<usize>(), want, "{name}");
        let last = blocks.last().unwrap();
        assert_eq!(count(&g, last, |o| matches!(o, Op::GlobalAvgPool)), 1);
        assert!(matches!(g.nodes[last.output].op, Op::Linear { .. }));
    }
}

#[test]
fn mobilenet_and_shufflenet_blocks_follow_their_skips() {
    let g = folded("mobilenetv2_x0_5");
    let blocks = g.blocks(is_layer(&g));
    check_partition(&g, &blocks);
    // The ten residual blocks hold expand, depthwise and project convs; a block without a
    // skip is a chain, one layer per block.
    let adds: Vec<&Block> = blocks
        .iter()
        .filter(|b| count(&g, b, |o| matches!(o, Op::Add { .. })) > 0)
        .collect();
    assert_eq!(adds.len(), 10);
    assert!(adds.iter().all(|b| b.layers.len() == 3));
    assert!(blocks
        .iter()
        .filter(|b| count(&g, b, |o| matches!(o, Op::Add { .. })) == 0)
        .all(|b| b.layers.len() == 1));

    let g = folded("shufflenetv2_x0_5");
    let blocks = g.blocks(is_layer(&g));
    check_partition(&g, &blocks);
    let units: Vec<&Block> = blocks
        .iter()
        .filter(|b| count(&g, b, |o| matches!(o, Op::Concat)) > 0)
        .collect();
    assert_eq!(units.len(), 16);
    // A unit ends at its concat; the shuffle after it (no layer) opens the next block.
    for b in units {
        assert_eq!(count(&g, b, |o| matches!(o, Op::Concat)), 1);
        assert!(matches!(g.nodes[b.output].op, Op::Concat));
    }
}

#[test]
fn a_chain_is_one_block_per_layer() {
    let conv = |w: &str| Op::relu_conv(w, 1);
    let mut g = Graph::default();
    let x = g.push("x", Op::Input, &[]);
    let a = g.push("a", conv("a"), &[x]);
    let b = g.push("b", conv("b"), &[a]);
    let r = g.push("r", Op::Act(Act::Relu), &[b]);
    let p = g.push("p", Op::GlobalAvgPool, &[r]);
    let f = g.push("f", Op::Flatten, &[p]);
    let fc = g.push(
        "fc",
        Op::Linear {
            weight: "fc".into(),
            bias: None,
            act: Act::Identity,
        },
        &[f],
    );
    g.push("sm", Op::Softmax, &[fc]);
    // A dead branch off the path changes nothing.
    g.nodes.insert(
        g.nodes.len() - 1,
        Node {
            name: "dead".into(),
            op: conv("d"),
            inputs: vec![a],
        },
    );
    let sm = g.nodes.len() - 1;
    g.nodes[sm].inputs = vec![fc];
    g.output = sm;
    assert_eq!(
        g.cut_points(),
        (0..g.nodes.len()).filter(|&v| v != 7).collect::<Vec<_>>()
    );
    let blocks = g.blocks(|v| v != 7 && is_layer(&g)(v));
    let spans: Vec<(ValueId, ValueId, Vec<ValueId>)> = blocks
        .iter()
        .map(|b| (b.input, b.output, b.nodes.clone()))
        .collect();
    // The layerless ReLU, pool and flatten join the classifier; the softmax is left out.
    assert_eq!(
        spans,
        [(x, a, vec![a]), (a, b, vec![b]), (b, fc, vec![r, p, f, fc])]
    );
}
