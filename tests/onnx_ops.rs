//! Hand-built ONNX graphs for the ops the backend data does not cover (auto_pad, HardSwish,
//! HardSigmoid, PRelu, per-channel constant arithmetic, Sum, Split, AveragePool,
//! GlobalMaxPool, shape chains folded to constants, dilated convs): synthcal's GPU run must
//! match its CPU reference, survive an export/import round trip, and, when
//! `SYNTHCAL_ORT_PYTHON` names a Python with onnxruntime, match ONNX Runtime within 1e-4 of the
//! largest output.

mod common;

use prost::Message;
use synthcal::array::Array;
use synthcal::graph::exec::Runner;
use synthcal::graph::Op;
use synthcal::onnx::proto::{
    data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, TypeTensor, ValueInfoProto,
};
use synthcal::onnx::{self};

const HW: usize = 8;
const BATCH: usize = 2;

/// A small ONNX model under construction: nodes, initializers, one [N, 3, 8, 8] input `x`.
struct B {
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    seed: u64,
}

enum A {
    I(i64),
    F(f32),
    Is(Vec<i64>),
    S(&'static str),
}

impl B {
    fn new() -> B {
        B {
            nodes: Vec::new(),
            init: Vec::new(),
            seed: 1,
        }
    }

    fn node(&mut self, op: &str, ins: &[&str], outs: &[&str], attrs: &[(&str, A)]) {
        let attribute = attrs
            .iter()
            .map(|(k, v)| {
                let mut a = AttributeProto {
                    name: Some(k.to_string()),
                    ..Default::default()
                };
                match v {
                    A::I(i) => (a.i, a.r#type) = (Some(*i), Some(2)),
                    A::F(f) => (a.f, a.r#type) = (Some(*f), Some(1)),
                    A::Is(v) => (a.ints, a.r#type) = (v.clone(), Some(7)),
                    A::S(s) => (a.s, a.r#type) = (Some(s.as_bytes().to_vec()), Some(3)),
                }
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            name: Some(outs[0].to_string()),
            op_type: Some(op.into()),
            attribute,
            ..Default::default()
        });
    }

    fn floats(&mut self, name: &str, dims: &[i64], data: Vec<f32>) {
        self.init.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(data_type::FLOAT),
            float_data: data,
            name: Some(name.into()),
            ..Default::default()
        });
    }

    /// Seeded values in [-0.5, 0.5) times `scale`.
    fn random(&mut self, name: &str, dims: &[i64], scale: f32) {
        let n = dims.iter().product::<i64>() as usize;
        let data = (0..n)
            .map(|_| {
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect();
        self.floats(name, dims, data);
    }

    fn ints(&mut self, name: &str, data: &[i64]) {
        self.init.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: Some(data_type::INT64),
            int64_data: data.to_vec(),
            name: Some(name.into()),
            ..Default::default()
        });
    }

    /// Ends the graph with a 5-class head on `x` (`channels` channels): GlobalAveragePool,
    /// Flatten and a random Gemm (transB), whose output `y` is the model's.
    fn classifier(mut self, x: &str, channels: i64) -> ModelProto {
        self.node("GlobalAveragePool", &[x], &["gap"], &[]);
        self.node("Flatten", &["gap"], &["flat"], &[]);
        self.random("fc", &[5, channels], 1.0);
        self.node("Gemm", &["flat", "fc"], &["y"], &[("transB", A::I(1))]);
        self.model("y")
    }

    fn model(self, output: &str) -> ModelProto {
        let info = |name: &str, dims: Option<&[usize]>| ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeTensor {
                    elem_type: Some(data_type::FLOAT),
                    shape: dims.map(|d| TensorShapeProto {
                        dim: std::iter::once(Dimension {
                            dim_value: None,
                            dim_param: Some("N".into()),
                        })
                        .chain(d.iter().map(|&v| Dimension {
                            dim_value: Some(v as i64),
                            dim_param: None,
                        }))
                        .collect(),
                    }),
                }),
            }),
        };
        ModelProto {
            ir_version: Some(7),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(14),
            }],
            graph: Some(GraphProto {
                node: self.nodes,
                name: Some("handmade".into()),
                initializer: self.init,
                input: vec![info("x", Some(&[3, HW, HW]))],
                output: vec![info(output, None)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// conv (auto_pad SAME_UPPER) -> HardSwish -> x * c + s per channel -> Sum with a
/// PRelu branch -> AveragePool (3x3, pad 1, padding not counted) -> GlobalMaxPool ->
/// Flatten (a Shape/Gather/Unsqueeze/Concat chain) -> Gemm
/// -> Softmax.
fn model_a() -> ModelProto {
    let mut b = B::new();
    b.random("w1", &[8, 3, 3, 3], 1.0);
    b.random("b1", &[8], 0.5);
    b.node(
        "Conv",
        &["x", "w1", "b1"],
        &["c1"],
        &[("auto_pad", A::S("SAME_UPPER"))],
    );
    b.node("HardSwish", &["c1"], &["h1"], &[]);
    b.random("scale", &[8, 1, 1], 2.0);
    b.node("Mul", &["h1", "scale"], &["m1"], &[]);
    b.floats("shift", &[], vec![0.25]);
    b.node("Sub", &["m1", "shift"], &["s1"], &[]);
    b.random("slope", &[8, 1, 1], 1.0);
    b.node("PRelu", &["c1", "slope"], &["p1"], &[]);
    b.node("Sum", &["s1", "p1", "c1"], &["sum"], &[]);
    b.node(
        "AveragePool",
        &["sum"],
        &["avg"],
        &[
            ("kernel_shape", A::Is(vec![3, 3])),
            ("pads", A::Is(vec![1, 1, 1, 1])),
        ],
    );
    b.node("GlobalMaxPool", &["avg"], &["gmp"], &[]);
    b.node("Shape", &["gmp"], &["shape"], &[]);
    b.ints("zero", &[0]);
    b.node("Gather", &["shape", "zero"], &["n"], &[("axis", A::I(0))]);
    b.ints("minus1", &[-1]);
    b.node(
        "Concat",
        &["n", "minus1"],
        &["target"],
        &[("axis", A::I(0))],
    );
    b.node("Reshape", &["gmp", "target"], &["flat"], &[]);
    b.random("fc", &[5, 8], 1.0);
    b.random("fcb", &[5], 1.0);
    b.node(
        "Gemm",
        &["flat", "fc", "fcb"],
        &["logits"],
        &[("transB", A::I(1))],
    );
    b.node("Softmax", &["logits"], &["y"], &[("axis", A::I(1))]);
    b.model("y")
}

/// conv -> LRN (3 channels) -> HardSigmoid(0.3, 0.4) -> AveragePool (3x3, stride 2, pad 1, padding counted) ->
/// Split into 2 + 2 channels -> Add -> Div by a per-channel constant -> the PyTorch HardSwish
/// pattern (x * HardSigmoid(x; 1/6, 1/2)) -> MaxPool (2x2, ceil_mode on an even map) ->
/// GlobalAveragePool -> Flatten -> MatMul.
fn model_b() -> ModelProto {
    let mut b = B::new();
    b.seed = 7;
    b.random("w1", &[4, 3, 3, 3], 2.0);
    let same = [("pads", A::Is(vec![1, 1, 1, 1]))];
    b.node("Conv", &["x", "w1"], &["c1"], &same);
    b.node(
        "LRN",
        &["c1"],
        &["lrn"],
        &[("size", A::I(3)), ("alpha", A::F(0.5)), ("bias", A::F(1.5))],
    );
    b.node(
        "HardSigmoid",
        &["lrn"],
        &["hs"],
        &[("alpha", A::F(0.3)), ("beta", A::F(0.4))],
    );
    b.node(
        "AveragePool",
        &["hs"],
        &["ap"],
        &[
            ("kernel_shape", A::Is(vec![3, 3])),
            ("strides", A::Is(vec![2, 2])),
            ("pads", A::Is(vec![1, 1, 1, 1])),
            ("count_include_pad", A::I(1)),
        ],
    );
    b.ints("sizes", &[2, 2]);
    b.node(
        "Split",
        &["ap", "sizes"],
        &["s0", "s1"],
        &[("axis", A::I(1))],
    );
    b.node("Add", &["s0", "s1"], &["sum"], &[]);
    b.random("div", &[1, 2, 1, 1], 1.0);
    b.node("Add", &["div", "div"], &["div2"], &[]);
    b.node("Div", &["sum", "div2"], &["d"], &[]);
    b.node(
        "HardSigmoid",
        &["d"],
        &["g"],
        &[("alpha", A::F(1.0 / 6.0)), ("beta", A::F(0.5))],
    );
    b.node("Mul", &["d", "g"], &["swish"], &[]);
    b.node(
        "MaxPool",
        &["swish"],
        &["mp"],
        &[
            ("kernel_shape", A::Is(vec![2, 2])),
            ("strides", A::Is(vec![2, 2])),
            ("ceil_mode", A::I(1)),
        ],
    );
    b.node("GlobalAveragePool", &["mp"], &["gap"], &[]);
    b.node("Flatten", &["gap"], &["flat"], &[]);
    b.random("fc", &[2, 3], 1.0);
    b.node("MatMul", &["flat", "fc"], &["y"], &[]);
    b.model("y")
}

/// Dilated convs: 3x3 dilated [2, 3] with pad 2 -> Relu -> grouped, strided 3x3 dilated 2 ->
/// depthwise 3x3 dilated 2 padded 2, or with `same` by auto_pad SAME_UPPER (pads from the
/// dilated window; ONNX Runtime refuses dilation with auto_pad, so it runs the explicit form)
/// -> GlobalAveragePool -> Flatten -> Gemm.
fn model_c(same: bool) -> ModelProto {
    let mut b = B::new();
    b.seed = 11;
    b.random("w1", &[8, 3, 3, 3], 1.0);
    b.random("b1", &[8], 0.5);
    b.node(
        "Conv",
        &["x", "w1", "b1"],
        &["c1"],
        &[
            ("dilations", A::Is(vec![2, 3])),
            ("pads", A::Is(vec![2, 2, 2, 2])),
        ],
    );
    b.node("Relu", &["c1"], &["r1"], &[]);
    b.random("w2", &[8, 4, 3, 3], 1.0);
    b.node(
        "Conv",
        &["r1", "w2"],
        &["c2"],
        &[
            ("group", A::I(2)),
            ("strides", A::Is(vec![2, 2])),
            ("dilations", A::Is(vec![2, 2])),
            ("pads", A::Is(vec![1, 1, 1, 1])),
        ],
    );
    b.random("w3", &[8, 1, 3, 3], 1.0);
    b.node(
        "Conv",
        &["c2", "w3"],
        &["c3"],
        &[
            ("group", A::I(8)),
            ("dilations", A::Is(vec![2, 2])),
            if same {
                ("auto_pad", A::S("SAME_UPPER"))
            } else {
                ("pads", A::Is(vec![2; 4]))
            },
        ],
    );
    b.classifier("c3", 8)
}

/// The dilated convs keep their dilation through import, and the dilated graph's shapes are
/// the ONNX ones: 8x8 -> 8x6 -> 3x2 -> 3x2.
#[test]
fn dilations_are_imported_per_axis() {
    let m = onnx::import(&model_c(true).encode_to_vec(), "c").unwrap();
    let dil: Vec<_> = m
        .arch
        .graph
        .nodes
        .iter()
        .filter_map(|n| n.op.layer().filter(|l| !l.linear))
        .map(|l| (l.dilation, l.pad))
        .collect();
    let same = synthcal::graph::Pads::same;
    assert_eq!(
        dil,
        [([2, 3], same(2)), ([2, 2], same(1)), ([2, 2], same(2))]
    );
    let e = err(single("Conv", &[("dilations", A::Is(vec![0, 1]))], |b| {
        b.random("w", &[4, 3, 3, 3], 1.0)
    }));
    assert!(e.contains("dilations [0, 1]"), "{e}");
}

/// ceil_mode pools whose last window hangs over the end: conv -> MaxPool 3x3 stride 2 (8 -> 4,
/// floor 3) -> AveragePool 3x3 stride 2 pad 1 counting the padding (4 -> 3, the last window
/// divided by its part inside the padded input) -> AveragePool 2x2 stride 2 not counting it
/// (3 -> 2) -> GlobalAveragePool -> Flatten -> Gemm.
fn model_d() -> ModelProto {
    let mut b = B::new();
    b.seed = 13;
    b.random("w1", &[4, 3, 3, 3], 1.0);
    b.node(
        "Conv",
        &["x", "w1"],
        &["c1"],
        &[("pads", A::Is(vec![1; 4]))],
    );
    let ceil = |k: i64, pad: i64| {
        vec![
            ("kernel_shape", A::Is(vec![k, k])),
            ("strides", A::Is(vec![2, 2])),
            ("pads", A::Is(vec![pad; 4])),
            ("ceil_mode", A::I(1)),
        ]
    };
    b.node("MaxPool", &["c1"], &["mp"], &ceil(3, 0));
    let mut counted = ceil(3, 1);
    counted.push(("count_include_pad", A::I(1)));
    b.node("AveragePool", &["mp"], &["ap"], &counted);
    b.node("AveragePool", &["ap"], &["ap2"], &ceil(2, 0));
    b.classifier("ap2", 4)
}

/// The ceil-mode pools import as such (not refused, not floored); their values are checked
/// against the CPU reference and ONNX Runtime in `handmade_graphs_match_...`.
#[test]
fn ceil_mode_pools_keep_their_partial_windows() {
    let m = onnx::import(&model_d().encode_to_vec(), "d").unwrap();
    let pools: Vec<_> = m
        .arch
        .graph
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::MaxPool { ceil, .. } => Some(("max", ceil)),
            Op::AvgPool {
                ceil, count_pad, ..
            } => Some((if count_pad { "avg" } else { "avg real" }, ceil)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pools,
        [("max", true), ("avg", true), ("avg real", true)],
        "{:#?}",
        m.arch.graph.nodes
    );
}

/// Zero Pads folded into the window op after them: Pad 1 (a constant input, opset 14) ->
/// Conv pad 1 (padding 2 in all) -> Relu -> Pad 2 -> AveragePool 3x3 not counting its own
/// (absent) padding, so the Pad's zeros count -> GlobalAveragePool -> Flatten -> Gemm.
fn model_e() -> ModelProto {
    let mut b = B::new();
    b.seed = 17;
    b.ints("p1", &[0, 0, 1, 1, 0, 0, 1, 1]);
    b.node("Pad", &["x", "p1"], &["x1"], &[]);
    b.random("w1", &[4, 3, 3, 3], 1.0);
    b.node(
        "Conv",
        &["x1", "w1"],
        &["c1"],
        &[("pads", A::Is(vec![1; 4]))],
    );
    b.node("Relu", &["c1"], &["r1"], &[]);
    b.ints("p2", &[0, 0, 2, 2, 0, 0, 2, 2]);
    b.node("Pad", &["r1", "p2"], &["x2"], &[]);
    b.node(
        "AveragePool",
        &["x2"],
        &["ap"],
        &[("kernel_shape", A::Is(vec![3, 3]))],
    );
    b.classifier("ap", 4)
}

/// Pads that precede a MaxPool or do not pad H and W with zeros are refused by name; a folded
/// Pad leaves no node of its own.
#[test]
fn pads_fold_into_the_next_window_op_or_are_refused() {
    let m = onnx::import(&model_e().encode_to_vec(), "e").unwrap();
    let pads: Vec<_> = m
        .arch
        .graph
        .nodes
        .iter()
        .filter_map(|n| n.op.layer().filter(|l| !l.linear).map(|l| l.pad))
        .collect();
    let same = synthcal::graph::Pads::same;
    assert_eq!(pads, [same(2), same(2)], "{:#?}", m.arch.graph.nodes);
    let padded = |pads: &[i64], op: &str, attrs: &[(&str, A)]| {
        let mut b = B::new();
        b.ints("p", pads);
        b.node("Pad", &["x", "p"], &["xp"], &[]);
        b.random("w", &[4, 3, 3, 3], 1.0);
        let ins: &[&str] = if op == "Conv" { &["xp", "w"] } else { &["xp"] };
        b.node(op, ins, &["y"], attrs);
        b.model("y")
    };
    let e = err(padded(&[0, 1, 0, 0, 0, 1, 0, 0], "Conv", &[]));
    assert!(e.contains("padding of N or C"), "{e}");
    let e = err(padded(&[0, 0, -1, 0, 0, 0, 0, 0], "Conv", &[]));
    assert!(e.contains("negative pads"), "{e}");
    // What cannot fold is a Pad node of its own: a zero Pad before a MaxPool (zeros are not
    // its -inf padding), or before an AveragePool that leaves its own padding uncounted.
    let pad_nodes = |p: ModelProto| {
        let m = onnx::import(&p.encode_to_vec(), "p").unwrap();
        let g = m.arch.graph;
        g.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Pad { .. }))
            .count()
    };
    let pool = [("kernel_shape", A::Is(vec![2, 2]))];
    assert_eq!(
        pad_nodes(padded(&[0, 0, 1, 1, 0, 0, 1, 1], "MaxPool", &pool)),
        1
    );
    let uncounted = [
        ("kernel_shape", A::Is(vec![3, 3])),
        ("pads", A::Is(vec![1; 4])),
    ];
    let p = padded(&[0, 0, 1, 0, 0, 0, 0, 1], "AveragePool", &uncounted);
    assert_eq!(pad_nodes(p), 1);
    assert_eq!(pad_nodes(padded(&[0, 0, 1, 0, 0, 0, 0, 1], "Conv", &[])), 0);
    // A nonzero fill (an input since opset 11) is not padding the conv can do.
    let mut b = B::new();
    b.ints("p", &[0, 0, 1, 1, 0, 0, 1, 1]);
    b.floats("v", &[], vec![3.5]);
    b.node("Pad", &["x", "p", "v"], &["xp"], &[]);
    b.random("w", &[4, 3, 3, 3], 1.0);
    b.node("Conv", &["xp", "w"], &["y"], &[]);
    assert_eq!(pad_nodes(b.model("y")), 1);
}

/// Standalone Pads: reflect [1, 2, 0, 1] (8x8 -> 9x11) -> Conv 3x3 (-> 7x9) -> Relu -> zero
/// Pad [1, 1, 1, 0] -> MaxPool 2x2 stride 2 (9x10 -> 4x5) -> Pad with 0.5 [0, 1, 2, 0] (->
/// 6x6) -> AveragePool 3x3 (-> 4x4) -> edge Pad [2, 1, 0, 1] (-> 6x6) -> GlobalAveragePool
/// -> Flatten -> Gemm.
fn model_g() -> ModelProto {
    let mut b = B::new();
    b.seed = 23;
    let mode = |m: &'static str| [("mode", A::S(m))];
    b.ints("p1", &[0, 0, 1, 2, 0, 0, 0, 1]);
    b.node("Pad", &["x", "p1"], &["x1"], &mode("reflect"));
    b.random("w1", &[4, 3, 3, 3], 1.0);
    b.node("Conv", &["x1", "w1"], &["c1"], &[]);
    b.node("Relu", &["c1"], &["r1"], &[]);
    b.ints("p2", &[0, 0, 1, 1, 0, 0, 1, 0]);
    b.node("Pad", &["r1", "p2"], &["x2"], &[]);
    let k = |k: i64| ("kernel_shape", A::Is(vec![k, k]));
    b.node(
        "MaxPool",
        &["x2"],
        &["mp"],
        &[k(2), ("strides", A::Is(vec![2, 2]))],
    );
    b.ints("p3", &[0, 0, 0, 1, 0, 0, 2, 0]);
    b.floats("v3", &[], vec![0.5]);
    b.node("Pad", &["mp", "p3", "v3"], &["x3"], &mode("constant"));
    b.node("AveragePool", &["x3"], &["ap"], &[k(3)]);
    b.ints("p4", &[0, 0, 2, 1, 0, 0, 0, 1]);
    b.node("Pad", &["ap", "p4"], &["x4"], &mode("edge"));
    b.classifier("x4", 4)
}

/// Each node of an imported model's graph with its output's [H, W] ([0, 0] for other ranks).
fn ops_with_sizes(m: &synthcal::Model) -> Vec<(&Op, [usize; 2])> {
    let g = &m.arch.graph;
    let shapes = synthcal::graph::validate::shapes(g, &m.params, &|_| None, [3, HW, HW]).unwrap();
    g.nodes
        .iter()
        .zip(&shapes)
        .map(|(n, s)| (&n.op, if s.len() == 4 { [s[2], s[3]] } else { [0, 0] }))
        .collect()
}

/// model_g's Pads import as Pad nodes with their modes, and the shapes are ONNX's.
#[test]
fn standalone_pads_import_with_their_modes() {
    use synthcal::ops::pad2d::PadMode;
    let m = onnx::import(&model_g().encode_to_vec(), "g").unwrap();
    let g = &m.arch.graph;
    let pads: Vec<_> = ops_with_sizes(&m)
        .into_iter()
        .filter_map(|(op, hw)| match *op {
            Op::Pad { pads, mode } => Some((pads.onnx(), mode, hw)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pads,
        [
            ([1, 2, 0, 1], PadMode::Reflect, [9, 11]),
            ([1, 1, 1, 0], PadMode::Constant(0.0), [9, 10]),
            ([0, 1, 2, 0], PadMode::Constant(0.5), [6, 6]),
            ([2, 1, 0, 1], PadMode::Edge, [6, 6]),
        ],
        "{g:#?}"
    );
}

/// Padding that differs per side: Conv 3x3 stride 2 auto_pad SAME_UPPER on 8 pixels (pads
/// [0, 0, 1, 1], as TF/Keras exports make; 8 -> 4) -> Relu -> Conv pads [1, 2, 2, 1] (4x4 ->
/// 5x5) -> MaxPool 2x2 stride 1 SAME_LOWER (pads [1, 1, 0, 0]) -> AveragePool 3x3 stride 2
/// pads [0, 1, 2, 0] not counting them (-> 3x2) -> zero Pad [0, 1, 1, 0] folded into an
/// AveragePool 2x2 counting its own pads [1, 0, 0, 0] (-> 4x2) -> AveragePool 2x2 stride 2
/// ceil_mode pads [1, 0, 0, 0] (-> 3x1, the last row a partial window) -> GlobalAveragePool
/// -> Flatten -> Gemm.
fn model_f() -> ModelProto {
    let mut b = B::new();
    b.seed = 19;
    b.random("w1", &[6, 3, 3, 3], 1.0);
    let same_upper = [
        ("auto_pad", A::S("SAME_UPPER")),
        ("strides", A::Is(vec![2, 2])),
    ];
    b.node("Conv", &["x", "w1"], &["c1"], &same_upper);
    b.node("Relu", &["c1"], &["r1"], &[]);
    b.random("w2", &[6, 6, 3, 3], 1.0);
    b.node(
        "Conv",
        &["r1", "w2"],
        &["c2"],
        &[("pads", A::Is(vec![1, 2, 2, 1]))],
    );
    let k = |k: i64| ("kernel_shape", A::Is(vec![k, k]));
    b.node(
        "MaxPool",
        &["c2"],
        &["mp"],
        &[k(2), ("auto_pad", A::S("SAME_LOWER"))],
    );
    b.node(
        "AveragePool",
        &["mp"],
        &["ap"],
        &[
            k(3),
            ("strides", A::Is(vec![2, 2])),
            ("pads", A::Is(vec![0, 1, 2, 0])),
        ],
    );
    b.ints("p", &[0, 0, 0, 1, 0, 0, 1, 0]);
    b.node("Pad", &["ap", "p"], &["app"], &[]);
    b.node(
        "AveragePool",
        &["app"],
        &["ap2"],
        &[
            k(2),
            ("pads", A::Is(vec![1, 0, 0, 0])),
            ("count_include_pad", A::I(1)),
        ],
    );
    b.node(
        "AveragePool",
        &["ap2"],
        &["ap3"],
        &[
            k(2),
            ("strides", A::Is(vec![2, 2])),
            ("pads", A::Is(vec![1, 0, 0, 0])),
            ("ceil_mode", A::I(1)),
        ],
    );
    b.classifier("ap3", 6)
}

/// Asymmetric pads import per side, the zero Pad folding into the AveragePool after it, and
/// the shapes are ONNX's.
#[test]
fn asymmetric_pads_import_per_side() {
    let m = onnx::import(&model_f().encode_to_vec(), "f").unwrap();
    let g = &m.arch.graph;
    let pads: Vec<_> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d { pad, .. } | Op::MaxPool { pad, .. } | Op::AvgPool { pad, .. } => {
                Some(pad.onnx())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        pads,
        [
            [0, 0, 1, 1],
            [1, 2, 2, 1],
            [1, 1, 0, 0],
            [0, 1, 2, 0],
            [1, 1, 1, 0],
            [1, 0, 0, 0]
        ],
        "{g:#?}"
    );
    let spatial: Vec<_> = ops_with_sizes(&m)
        .into_iter()
        .filter(|(op, _)| op.layer().is_some_and(|l| !l.linear) || op.pool_window().is_some())
        .map(|(_, hw)| hw)
        .collect();
    assert_eq!(
        spatial,
        [[4, 4], [5, 5], [5, 5], [3, 2], [4, 2], [3, 1]],
        "{g:#?}"
    );
}

/// Dilated max pools: Conv 3x3 pad 1 -> MaxPool 3x3 dilations [2, 1] pads [1, 2, 1, 2] (8x8
/// -> 6x10) -> MaxPool 2x2 dilations [2, 2] stride 2 ceil_mode (-> 3x5, the last column a
/// partial window) -> GlobalAveragePool -> Flatten -> Gemm.
fn model_h() -> ModelProto {
    let mut b = B::new();
    b.seed = 29;
    b.random("w1", &[4, 3, 3, 3], 1.0);
    b.node(
        "Conv",
        &["x", "w1"],
        &["c1"],
        &[("pads", A::Is(vec![1; 4]))],
    );
    let k = |k: i64| ("kernel_shape", A::Is(vec![k, k]));
    b.node(
        "MaxPool",
        &["c1"],
        &["mp"],
        &[
            k(3),
            ("dilations", A::Is(vec![2, 1])),
            ("pads", A::Is(vec![1, 2, 1, 2])),
        ],
    );
    b.node(
        "MaxPool",
        &["mp"],
        &["mp2"],
        &[
            k(2),
            ("dilations", A::Is(vec![2, 2])),
            ("strides", A::Is(vec![2, 2])),
            ("ceil_mode", A::I(1)),
        ],
    );
    b.classifier("mp2", 4)
}

/// model_h's pools keep their dilation and take ONNX's shapes.
#[test]
fn dilated_max_pools_import() {
    let m = onnx::import(&model_h().encode_to_vec(), "h").unwrap();
    let g = &m.arch.graph;
    let pools: Vec<_> = ops_with_sizes(&m)
        .into_iter()
        .filter_map(|(op, hw)| match *op {
            Op::MaxPool { dilation, ceil, .. } => Some((dilation, ceil, hw)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pools,
        [([2, 1], false, [6, 10]), ([2, 2], true, [3, 5])],
        "{g:#?}"
    );
}

/// Pads between convs: Conv 3x3 -> Relu -> reflect Pad [1, 0, 1, 2] -> Conv 3x3 -> Relu ->
/// Pad with 0.25 [0, 1, 1, 0] -> edge Pad [1, 1, 0, 0] -> Conv 1x1 -> GlobalAveragePool ->
/// Flatten -> Gemm.
fn model_i() -> ModelProto {
    let mut b = B::new();
    b.seed = 31;
    let mode = |m: &'static str| [("mode", A::S(m))];
    b.random("w1", &[4, 3, 3, 3], 1.0);
    b.node("Conv", &["x", "w1"], &["c1"], &[]);
    b.node("Relu", &["c1"], &["r1"], &[]);
    b.ints("p1", &[0, 0, 1, 0, 0, 0, 1, 2]);
    b.node("Pad", &["r1", "p1"], &["x1"], &mode("reflect"));
    b.random("w2", &[6, 4, 3, 3], 1.0);
    b.node("Conv", &["x1", "w2"], &["c2"], &[]);
    b.node("Relu", &["c2"], &["r2"], &[]);
    b.ints("p2", &[0, 0, 0, 1, 0, 0, 1, 0]);
    b.floats("v2", &[], vec![0.25]);
    b.node("Pad", &["r2", "p2", "v2"], &["x2"], &mode("constant"));
    b.ints("p3", &[0, 0, 1, 1, 0, 0, 0, 0]);
    b.node("Pad", &["x2", "p3"], &["x3"], &mode("edge"));
    b.random("w3", &[4, 6, 1, 1], 1.0);
    b.node("Conv", &["x3", "w3"], &["c3"], &[]);
    b.classifier("c3", 4)
}

/// Conv 3x3 pad 1 -> Relu -> AveragePool 3x3 stride 2 pad 1, padding not counted (8 -> 4) ->
/// Conv 3x3 pad 1 -> Relu -> MaxPool 2x2 padded bottom and right (4 -> 4) -> AveragePool 3x3
/// stride 2 ceil_mode (4 -> 2, the last window partial) -> Flatten (5 channels of 2x2: features across channel words) -> Gemm. (Pools
/// whose every window divides by k^2 import as depthwise convs.)
fn model_j() -> ModelProto {
    let mut b = B::new();
    b.seed = 37;
    let pad1 = ("pads", A::Is(vec![1; 4]));
    b.random("w1", &[6, 3, 3, 3], 1.0);
    b.node("Conv", &["x", "w1"], &["c1"], &[pad1]);
    b.node("Relu", &["c1"], &["r1"], &[]);
    let uncounted = [
        ("kernel_shape", A::Is(vec![3, 3])),
        ("strides", A::Is(vec![2, 2])),
        ("pads", A::Is(vec![1; 4])),
    ];
    b.node("AveragePool", &["r1"], &["a1"], &uncounted);
    b.random("w2", &[5, 6, 3, 3], 1.0);
    b.node(
        "Conv",
        &["a1", "w2"],
        &["c2"],
        &[("pads", A::Is(vec![1; 4]))],
    );
    b.node("Relu", &["c2"], &["r2"], &[]);
    let lower_right = [
        ("kernel_shape", A::Is(vec![2, 2])),
        ("pads", A::Is(vec![0, 0, 1, 1])),
    ];
    b.node("MaxPool", &["r2"], &["m2"], &lower_right);
    let ceil = [
        ("kernel_shape", A::Is(vec![3, 3])),
        ("strides", A::Is(vec![2, 2])),
        ("ceil_mode", A::I(1)),
    ];
    b.node("AveragePool", &["m2"], &["a2"], &ceil);
    b.node("Flatten", &["a2"], &["flat"], &[]);
    b.random("fc", &[5, 20], 1.0);
    b.node("Gemm", &["flat", "fc"], &["y"], &[("transB", A::I(1))]);
    b.model("y")
}

/// `p` imported and quantized with `opts` on 16 patterned 8x8 images of its classes.
fn quantized(
    p: &ModelProto,
    tag: &str,
    opts: &synthcal::quant::QuantOptions,
) -> synthcal::QuantizedModel {
    let m = onnx::import(&p.encode_to_vec(), tag).unwrap();
    let n = 16;
    let px: Vec<u8> = (0..n * 3 * HW * HW).map(|i| (i * 89 % 253) as u8).collect();
    let images = synthcal::Images::new(px, HW, HW).unwrap();
    let classes = m.class_names.clone();
    let labels = (0..n).map(|i| (i % classes.len()) as u16).collect();
    let set = synthcal::Dataset::from_images(images, labels, classes, "test").unwrap();
    synthcal::quant::quantize_with_set(&common::gpu(), &m, &set, opts).unwrap()
}

/// Quantizes `p` with `Int8Ops::All` on 16 8x8 images and checks that the GPU's integer
/// logits equal the CPU integer reference bit for bit, also after a QDQ export and import,
/// and (where `SYNTHCAL_ORT_PYTHON` is set) that ONNX Runtime runs the QDQ file alike; returns the model and the nodes that ran on int8 data.
fn int8_bit_exact(p: &ModelProto, tag: &str) -> (synthcal::QuantizedModel, Vec<usize>) {
    let gpu = common::gpu();
    let opts = synthcal::quant::QuantOptions {
        int8_ops: synthcal::quant::Int8Ops::All,
        ..Default::default()
    };
    let q = quantized(p, tag, &opts);
    let ran = q.runner(&gpu).unwrap().int8_nodes();
    let x = Array::new(&[BATCH, 3, HW, HW], input());
    let got = q
        .runner(&gpu)
        .unwrap()
        .logits(&x.data, BATCH, [HW, HW])
        .unwrap();
    let want = q.cpu_logits(&x).unwrap();
    assert!(
        got.iter()
            .zip(&want.data)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{tag}: GPU and CPU integer logits differ: {got:?} vs {:?}",
        want.data
    );
    // Exported as QDQ and read back, the int8 values keep their formats: the same logits.
    let path = std::env::temp_dir().join(format!("synthcal-qdq-{tag}-{}.onnx", std::process::id()));
    onnx::write_qdq(&q, &path).unwrap();
    let back = synthcal::QuantizedModel::load(&path);
    // ONNX Runtime computes the file as written (each QuantizeLinear in f32): the same
    // logits up to rounding order.
    let theirs = common::ort::python()
        .map(|py| common::ort::logits(&py, &path, &x.data, common::ort::Run::AsWritten));
    std::fs::remove_file(&path).ok();
    let again = back
        .unwrap()
        .runner(&gpu)
        .unwrap()
        .logits(&x.data, BATCH, [HW, HW])
        .unwrap();
    assert_eq!(again, got, "{tag}: QDQ round trip");
    if let Some(theirs) = theirs {
        let (worst, scale) = common::ort::difference(&theirs, &got);
        eprintln!("{tag}: ONNX Runtime vs synthcal {worst} (largest logit {scale})");
        assert!(worst <= 0.02 * scale, "{tag}: {theirs:?} vs {got:?}");
    }
    (q, ran)
}

/// With `Int8Ops::All` the Pads between quantized convs run on int8 data (a constant fill
/// quantized to the value's format), bit-exact on GPU and CPU.
#[test]
fn int8_pads_run_in_integers_bit_exactly() {
    common::skip_without_gpu!();
    let (q, ran) = int8_bit_exact(&model_i(), "pads");
    let pads: Vec<usize> = (0..q.graph.nodes.len())
        .filter(|&i| matches!(q.graph.nodes[i].op, Op::Pad { .. }))
        .collect();
    assert_eq!(pads.len(), 3);
    assert!(pads.iter().all(|p| ran.contains(p)), "{ran:?}");
}

/// Average pools (padding uncounted, a ceil-mode partial window) and a Flatten of a 2x2 map run on int8 data: every
/// node after the input is integer, bit-exact on GPU and CPU, and each pool rounds to a format
/// of its own.
#[test]
fn int8_average_pools_and_flatten_run_in_integers_bit_exactly() {
    common::skip_without_gpu!();
    let (q, ran) = int8_bit_exact(&model_j(), "avgpool");
    let all: Vec<usize> = (1..q.graph.nodes.len()).collect();
    assert_eq!(ran, all, "{:#?}", q.graph.nodes);
    let pools: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| matches!(q.graph.nodes[i].op, Op::AvgPool { .. }))
        .collect();
    assert_eq!(pools.len(), 2, "{:#?}", q.graph.nodes);
    assert!(
        pools.iter().all(|p| q.values.contains_key(p)),
        "{:?}",
        q.values
    );
}

/// Block reconstruction replays every pool of `model_j` on the tape (average pools whose
/// padding does not count, a ceil-mode window, a max pool padded on two sides), so BRECQ runs
/// on it, and its INT8 model stays bit-exact on GPU and CPU.
#[test]
fn brecq_replays_pools_of_any_window() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let opts = synthcal::quant::QuantOptions {
        algorithm: synthcal::quant::Algorithm::Brecq,
        adaround: synthcal::quant::AdaRoundOptions {
            iters: 4,
            batch: 8,
            ..synthcal::quant::AdaRoundOptions::brecq()
        },
        ..Default::default()
    };
    let q = quantized(&model_j(), "j", &opts);
    let x = Array::new(&[BATCH, 3, HW, HW], input());
    let got = q
        .runner(&gpu)
        .unwrap()
        .logits(&x.data, BATCH, [HW, HW])
        .unwrap();
    assert!(got.iter().all(|v| v.is_finite()));
    assert_eq!(got, q.cpu_logits(&x).unwrap().data);
}

fn input() -> Vec<f32> {
    let n = BATCH * 3 * HW * HW;
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 6.0)
        .collect()
}

fn run(m: &synthcal::Model) -> Vec<f32> {
    let gpu = common::gpu();
    let runner = Runner::new(gpu.clone(), m.arch.graph.clone(), &m.params).unwrap();
    let x = gpu.upload_f32(&[BATCH, 3, HW, HW], &input()).unwrap();
    let mut s = gpu.stream();
    let out = runner.forward(&mut s, &x, &[]).unwrap().output;
    s.submit();
    gpu.read_f32(&out).unwrap()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * scale,
            "{what}: output {i} is {x}, expected {y}"
        );
    }
}

fn ort(python: &std::ffi::OsString, p: &ModelProto, tag: &str) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("synthcal-ops-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.onnx");
    std::fs::write(&model, p.encode_to_vec()).unwrap();
    let y = common::ort::logits(python, &model, &input(), common::ort::Run::Fused);
    std::fs::remove_dir_all(&dir).ok();
    y
}

#[test]
fn handmade_graphs_match_cpu_round_trip_and_onnx_runtime() {
    common::skip_without_gpu!();
    let python = common::ort::python();
    let models = [
        ("a", model_a()),
        ("b", model_b()),
        ("c", model_c(false)),
        ("d", model_d()),
        ("e", model_e()),
        ("f", model_f()),
        ("g", model_g()),
        ("h", model_h()),
        ("i", model_i()),
    ];
    for (tag, p) in models {
        let m = onnx::import(&p.encode_to_vec(), tag).unwrap();
        let got = run(&m);
        // The CPU reference executor computes the same graph.
        let x = Array::new(&[BATCH, 3, HW, HW], input());
        let cpu = synthcal::graph::cpu::forward(&m.arch.graph, &m.params, &x).unwrap();
        close(&got, &cpu.data, &format!("{tag}: GPU vs CPU"));
        // Exported back to ONNX (HardSwish as its opset-13 pattern) and imported: same outputs.
        let back = onnx::import(&onnx::export(&m).unwrap(), tag).unwrap();
        close(&run(&back), &got, &format!("{tag}: round trip"));
        if let Some(py) = &python {
            close(
                &got,
                &ort(py, &p, tag),
                &format!("{tag}: synthcal vs ONNX Runtime"),
            );
        }
    }
}

#[test]
fn hardswish_patterns_become_one_activation() {
    let m = onnx::import(&model_b().encode_to_vec(), "b").unwrap();
    let acts: Vec<_> = m
        .arch
        .graph
        .nodes
        .iter()
        .filter(|n| n.op == synthcal::graph::Op::Act(synthcal::graph::Act::HardSwish))
        .collect();
    assert_eq!(acts.len(), 1, "{:#?}", m.arch.graph.nodes);
}

fn err(p: ModelProto) -> String {
    onnx::import(&p.encode_to_vec(), "bad")
        .err()
        .expect("import should fail")
        .to_string()
}

fn single(op: &str, attrs: &[(&str, A)], extra: impl FnOnce(&mut B)) -> ModelProto {
    let mut b = B::new();
    extra(&mut b);
    let ins: Vec<&str> = match op {
        "Conv" => vec!["x", "w"],
        "Mul" => vec!["x", "x"],
        "Add" => vec!["x", "k"],
        _ => vec!["x"],
    };
    b.node(op, &ins, &["y"], attrs);
    b.model("y")
}

#[test]
fn unsupported_settings_are_refused_by_name() {
    // ONNX Runtime's limit: a window of padding alone.
    let e = err(single(
        "AveragePool",
        &[
            ("kernel_shape", A::Is(vec![3, 3])),
            ("pads", A::Is(vec![0, 0, 3, 0])),
        ],
        |_| {},
    ));
    assert!(e.contains("each pad < kernel"), "{e}");
    let e = err(single("Conv", &[("pads", A::Is(vec![1, 1]))], |b| {
        b.random("w", &[4, 3, 3, 3], 1.0)
    }));
    assert!(e.contains("pads [1, 1]: four values"), "{e}");
    let e = err(single("Mul", &[], |_| {}));
    assert!(e.contains("Mul of two computed values"), "{e}");
    // A [C] constant on an image broadcasts along the width in ONNX: not per channel.
    let e = err(single("Add", &[], |b| b.floats("k", &[3], vec![1.0; 3])));
    assert!(e.contains("does not broadcast per channel"), "{e}");
    let e = err(single("Softmax", &[("axis", A::I(1))], |_| {}));
    assert!(e.contains("only over the classes"), "{e}");
    let e = err(single("Split", &[("axis", A::I(2))], |_| {}));
    assert!(e.contains("only channels"), "{e}");
}

/// An imported model with the new ops quantizes: the convs and linears become INT8 layers,
/// while HardSwish, the affines and Softmax run in FP32 (and AveragePool where its input is
/// FP32), and the INT8 model
/// gives finite outputs of the FP32 model's shape. (The generated calibration sources make
/// 32x32 images, so this calibrates on a set of 8x8 ones.)
#[test]
fn imported_graphs_quantize_with_the_new_ops_in_fp32() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let n = 16;
    let px: Vec<u8> = (0..n * 3 * HW * HW).map(|i| (i * 97 % 251) as u8).collect();
    let images = synthcal::Images::new(px, HW, HW).unwrap();
    let models = [
        ("a", model_a()),
        ("b", model_b()),
        ("c", model_c(false)),
        ("f", model_f()),
        ("g", model_g()),
        ("h", model_h()),
    ];
    for (tag, p) in models {
        let m = onnx::import(&p.encode_to_vec(), tag).unwrap();
        let classes: Vec<String> = m.class_names.clone();
        let labels = (0..n).map(|i| (i % classes.len()) as u16).collect();
        let set = synthcal::Dataset::from_images(images.clone(), labels, classes, "test").unwrap();
        let q = synthcal::quant::quantize_with_set(&gpu, &m, &set, &Default::default())
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert!(q.layers.len() >= 2, "{tag}: {} INT8 layers", q.layers.len());
        if tag == "c" {
            // All three dilated convs and the Gemm run on the INT8 kernels.
            assert_eq!(q.layers.len(), 4, "{tag}: {} INT8 layers", q.layers.len());
        }
        let (f, i) = (
            m.predict(&gpu, &images).unwrap(),
            q.predict(&gpu, &images).unwrap(),
        );
        assert_eq!(f.values().len(), i.values().len(), "{tag}");
        assert!(i.values().iter().all(|v| v.is_finite()), "{tag}");
        // The saved INT8 model loads (its layer checks know a dilated window) with the same
        // layers, biases from bias correction on bias-free convs (b, c) included.
        let path = std::env::temp_dir().join(format!("synthcal-{tag}-{}.st", std::process::id()));
        q.save(&path).unwrap();
        let back = synthcal::QuantizedModel::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert!(
            back.layers == q.layers,
            "{tag}: layers differ after a reload"
        );
        assert_eq!(
            back.predict(&gpu, &images).unwrap().values(),
            i.values(),
            "{tag}"
        );
    }
}

/// What a hostile graph gets: an error naming the fault, never a panic or a huge allocation.
fn hostile(build: impl FnOnce(&mut B)) -> Result<(), String> {
    let mut b = B::new();
    build(&mut b);
    let p = b.classifier("x", 3);
    onnx::import(&p.encode_to_vec(), "hostile")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn hostile_constants_are_refused_without_panics() {
    // Squeeze of a dimension that is not 1.
    let e = hostile(|b| {
        b.floats("c", &[2, 3], vec![0.5; 6]);
        b.ints("ax", &[1]);
        b.node("Squeeze", &["c", "ax"], &["s"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("Squeeze axis 1"), "{e}");
    // The smallest int64 divided by -1 overflows.
    let e = hostile(|b| {
        b.ints("lo", &[i64::MIN]);
        b.ints("m1", &[-1]);
        b.node("Div", &["lo", "m1"], &["q"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("smallest int64"), "{e}");
    // An empty constant against a scalar is empty, not a scalar.
    let r = hostile(|b| {
        b.floats("z", &[0], vec![]);
        b.floats("one", &[], vec![1.0]);
        b.node("Add", &["z", "one"], &["e"], &[]);
    });
    assert!(r.is_ok(), "{r:?}");
    // A reshape whose shape product overflows, and a zero-element tensor with vast dimensions.
    let e = hostile(|b| {
        b.floats("z", &[0], vec![]);
        b.ints("shape", &[1 << 32, 1 << 32]);
        b.node("Reshape", &["z", "shape"], &["r"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("overflows"), "{e}");
    let e = hostile(|b| b.floats("vast", &[0, 1 << 62], vec![])).unwrap_err();
    assert!(e.contains("vast") && e.contains("spans more than"), "{e}");
    let e = hostile(|b| {
        b.floats("z", &[0], vec![]);
        b.ints("shape", &[1 << 31, 0]);
        b.node("Reshape", &["z", "shape"], &["r"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("2^30"), "{e}");
    // Split sizes whose sum overflows, and a dilated MaxPool window whose extent does.
    let e = hostile(|b| {
        b.ints("sizes", &[i64::MAX, i64::MAX]);
        b.node(
            "Split",
            &["x", "sizes"],
            &["s0", "s1"],
            &[("axis", A::I(1))],
        );
    })
    .unwrap_err();
    assert!(e.contains("do not cut"), "{e}");
    let r = hostile(|b| {
        let k = 1i64 << 62;
        let attrs = [
            ("kernel_shape", A::Is(vec![k, k])),
            ("dilations", A::Is(vec![2, 2])),
            ("auto_pad", A::S("SAME_UPPER")),
        ];
        b.node("MaxPool", &["x"], &["mp"], &attrs);
    });
    assert!(r.is_err(), "{r:?}");
    // A MatMul weight with a zero dimension.
    let e = hostile(|b| {
        b.node("GlobalAveragePool", &["x"], &["g"], &[]);
        b.node("Flatten", &["g"], &["f"], &[]);
        b.floats("w0", &[3, 0], vec![]);
        b.node("MatMul", &["f", "w0"], &["mm"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("non-zero dimensions"), "{e}");
}

/// An AveragePool window far larger than its input is refused before its weights are made
/// (it asked for kernel^2 x channels floats).
#[test]
fn a_vast_average_pool_window_is_refused_before_allocating() {
    let mut b = B::new();
    let k = 1i64 << 31;
    b.node(
        "AveragePool",
        &["x"],
        &["p"],
        &[("kernel_shape", A::Is(vec![k, k]))],
    );
    let p = b.classifier("p", 3);
    let e = onnx::import(&p.encode_to_vec(), "pool")
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("does not fit"), "{e}");
}

/// Graphs built to exhaust the importer: each is refused (or imported) at once, bounded in
/// memory and time.
#[test]
fn graphs_built_to_exhaust_the_importer_are_bounded() {
    // Repeated Unsqueeze axes, and a zero-element ConstantOfShape with a vast dimension.
    let e = hostile(|b| {
        b.floats("c", &[3], vec![1.0; 3]);
        b.ints("ax", &[0, 0]);
        b.node("Unsqueeze", &["c", "ax"], &["u"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("repeat"), "{e}");
    let e = hostile(|b| {
        b.ints("shape", &[0, 1 << 40]);
        b.node("ConstantOfShape", &["shape"], &["z"], &[]);
    })
    .unwrap_err();
    assert!(e.contains("implausibly large"), "{e}");
    // An integer Concat past the fold bound (each part within it).
    let e = hostile(|b| {
        b.ints("big", &vec![0; 1 << 23]);
        b.node(
            "Concat",
            &["big", "big", "big"],
            &["cat"],
            &[("axis", A::I(0))],
        );
    })
    .unwrap_err();
    assert!(e.contains("Concat of more than"), "{e}");
    // An average pool whose window fits its (padded) input but whose weights would be vast.
    let e = hostile(|b| {
        let (k, p) = (1i64 << 12, 1i64 << 11);
        let attrs = [
            ("kernel_shape", A::Is(vec![k, k])),
            ("pads", A::Is(vec![p, p, p, p])),
            ("count_include_pad", A::I(1)),
        ];
        b.node("AveragePool", &["x"], &["ap"], &attrs);
    })
    .unwrap_err();
    assert!(e.contains("implausibly large"), "{e}");
}

/// A QDQ graph that reads one value twice at every level (`Add(a, a)`, 48 deep) asked
/// whether the quantized value is non-negative once per path, 2^48 times; now once per value.
#[test]
fn a_qdq_graph_with_shared_inputs_imports_in_linear_time() {
    let mut b = B::new();
    b.node("Relu", &["x"], &["a0"], &[]);
    for i in 1..=48 {
        let (prev, out) = (format!("a{}", i - 1), format!("a{i}"));
        b.node("Add", &[&prev, &prev], &[&out], &[]);
    }
    b.floats("s", &[], vec![0.5]);
    b.init.push(TensorProto {
        dims: vec![],
        data_type: Some(data_type::UINT8),
        raw_data: Some(vec![0]),
        name: Some("zp".into()),
        ..Default::default()
    });
    b.node("QuantizeLinear", &["a48", "s", "zp"], &["q"], &[]);
    b.node("DequantizeLinear", &["q", "s", "zp"], &["dq"], &[]);
    let p = b.classifier("dq", 3);
    // Before, this call did not return.
    let r = onnx::import_qdq(&p.encode_to_vec(), "adds").map(|_| ());
    assert!(r.is_ok(), "{r:?}");
}
