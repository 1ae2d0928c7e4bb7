use super::super::cursor::Batches;
use super::*;
use crate::array::Array;
use crate::graph::exec::{Held, Runner};
use crate::graph::{Graph, Op, Params};
use crate::ops::fake_quant::{forward_cpu, step_grad_cpu};
use crate::ops::skip_without_gpu;
use crate::ops::Act;
use crate::quant::scheme::activation_format_bits;
use crate::testing::gpu;

fn conv(w: &str, ci_co: usize, act: Act) -> (Op, Vec<usize>) {
    let op = Op::Conv2d {
        weight: format!("{w}.weight"),
        bias: Some(format!("{w}.bias")),
        stride: 1,
        pad: 1.into(),
        dilation: [1, 1],
        groups: 1,
        act,
    };
    (op, vec![ci_co, ci_co, 3, 3])
}

/// A residual block `relu(b(relu(a(x))) + x)` of 4 channels, its parameters and 4-bit weights.
fn tiny_block() -> (Graph, Params, Vec<QWeights>) {
    let mut g = Graph::default();
    let x = g.push("x", Op::Input, &[]);
    let (ca, sa) = conv("a", 4, Act::Relu);
    let a = g.push("a", ca, &[x]);
    let (cb, sb) = conv("b", 4, Act::Identity);
    let b = g.push("b", cb, &[a]);
    g.push("add", Op::Add { act: Act::Relu }, &[b, x]);
    let mut params = Params::default();
    let mut qw = Vec::new();
    for (k, (name, shape)) in [("a", sa), ("b", sb)].into_iter().enumerate() {
        let w = Array::random(&shape, 20 + k as u64).map(|v| 0.3 * v);
        qw.push(QWeights::quantize_bits(&w, 4, crate::quant::WeightRange::MinMax).unwrap());
        params.insert(format!("{name}.weight"), w);
        params.insert(
            format!("{name}.bias"),
            Array::random(&[4], 30 + k as u64).map(|v| 0.1 * v),
        );
    }
    (g, params, qw)
}

/// The block with quantizers at a's input (signed), b's input (unsigned) and the add's output,
/// or with none (`fq` false).
fn block_quant(params: &Params, qw: &[QWeights], fq: bool) -> BlockQuant {
    let quantizers = vec![
        Quantizer {
            value: 0,
            fmt: activation_format_bits(-1.0, 1.0, 4),
        },
        Quantizer {
            value: 1,
            fmt: activation_format_bits(0.0, 1.2, 4),
        },
        Quantizer {
            value: 3,
            fmt: activation_format_bits(0.0, 1.8, 4),
        },
    ];
    let layers = ["a", "b"]
        .iter()
        .zip(qw)
        .map(|(n, q)| {
            (
                q.clone(),
                params.get(&format!("{n}.weight")).unwrap().data.clone(),
            )
        })
        .collect();
    BlockQuant {
        block: Block {
            input: 0,
            output: 3,
            nodes: vec![1, 2, 3],
            layers: vec![1, 2],
        },
        layers,
        quantizers: if fq { quantizers } else { Vec::new() },
        inputs: if fq {
            [(1, 0), (2, 1)].into()
        } else {
            HashMap::new()
        },
        outputs: if fq { [(3, 2)].into() } else { HashMap::new() },
    }
}

/// Naive 3x3 conv (padding 1) plus bias, in f64.
fn conv_cpu(x: &[f64], shape: [usize; 4], w: &[f64], bias: &[f32]) -> Vec<f64> {
    let [n, c, h, wd] = shape;
    let mut y = vec![0f64; x.len()];
    for b in 0..n {
        for o in 0..c {
            for i in 0..h {
                for j in 0..wd {
                    let mut acc = bias[o] as f64;
                    for ci in 0..c {
                        for u in 0..3 {
                            for v in 0..3 {
                                let (ii, jj) = ((i + u) as isize - 1, (j + v) as isize - 1);
                                if ii < 0 || jj < 0 || ii >= h as isize || jj >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ci) * h + ii as usize) * wd + jj as usize];
                                acc += xv * w[((o * c + ci) * 3 + u) * 3 + v];
                            }
                        }
                    }
                    y[((b * c + o) * h + i) * wd + j] = acc;
                }
            }
        }
    }
    y
}

/// f64 fake quantization: the value rounded to f32, then the CPU reference.
fn fq_cpu(x: &[f64], fmt: Option<QFormat>) -> Vec<f64> {
    match fmt {
        None => x.to_vec(),
        Some(f) => {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            forward_cpu(&x32, f).iter().map(|&v| v as f64).collect()
        }
    }
}

const SHAPE: [usize; 4] = [2, 4, 5, 5];

/// The block's loss on the CPU in f64 with V `vs` per layer, and the add's output before its
/// quantizer.
fn loss_cpu(
    params: &Params,
    bq: &BlockQuant,
    vs: &[Vec<f64>],
    x: &[f32],
    t: &[f32],
) -> (f64, Vec<f64>) {
    let fmt = |k: usize| bq.quantizers.get(k).map(|q| q.fmt);
    let soft = |li: usize| {
        let (qw, w) = &bq.layers[li];
        let (floor, _) = k::init(w, &qw.scale, 36);
        k::soft_weight_cpu(&floor, &vs[li], &qw.scale, 36, (-7, 7))
    };
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let xa = fq_cpu(&x64, fmt(0));
    let ya: Vec<f64> = conv_cpu(&xa, SHAPE, &soft(0), &params.get("a.bias").unwrap().data)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let xb = fq_cpu(&ya, fmt(1));
    let yb = conv_cpu(&xb, SHAPE, &soft(1), &params.get("b.bias").unwrap().data);
    let pre: Vec<f64> = yb.iter().zip(&x64).map(|(a, b)| (a + b).max(0.0)).collect();
    let y = fq_cpu(&pre, fmt(2));
    let div = (SHAPE[0] * SHAPE[2] * SHAPE[3]) as f64;
    let l = y
        .iter()
        .zip(t)
        .map(|(a, &b)| (a - b as f64).powi(2))
        .sum::<f64>()
        / div;
    (l, pre)
}

/// The block's loss on the GPU tape, the gradients of every V and of the add's step.
fn loss_gpu(
    gpu: &Arc<Gpu>,
    (g, params): (&Graph, &Params),
    bq: &BlockQuant,
    vs: &[Vec<f32>],
    (x, t): (&[f32], &[f32]),
    learn: bool,
    drop: Option<(u32, u32)>,
) -> (f64, Vec<Vec<f32>>, Option<f32>) {
    let mut frozen = Frozen::new(gpu, "tiny", g.clone(), params.clone());
    let (mut sqs, mut vt) = (Vec::new(), Vec::new());
    for ((qw, w), v) in bq.layers.iter().zip(vs) {
        let (floor, _) = k::init(w, &qw.scale, 36);
        sqs.push(SoftQuant::new(gpu, &floor, &qw.scale, &qw.shape, (-7, 7)).unwrap());
        vt.push(gpu.upload_f32(&qw.shape, v).unwrap());
    }
    let fmts: Vec<QFormat> = bq.quantizers.iter().map(|q| q.fmt).collect();
    let steps = fixed_steps(gpu, &fmts).unwrap();
    let mut s = gpu.stream();
    let mut tape = Tape::new();
    let xv = tape.leaf(gpu.upload_f32(&SHAPE, x).unwrap(), false);
    let tt = gpu.upload_f32(&SHAPE, t).unwrap();
    let mut hooks = Replay::new(bq, Weights::Soft(&sqs, &vt), &steps, learn);
    if let Some((thr, seed)) = drop {
        hooks = hooks.with_drop(thr, seed);
    }
    let y = frozen
        .replay_block(&mut tape, &mut s, &bq.block, xv, &mut hooks)
        .unwrap();
    let yv = tape.value(y);
    let div = positions(yv);
    let e = k::sq_err_partials(&mut s, yv, &tt).unwrap();
    let dy = k::recon_grad(&mut s, yv, &tt, 2.0 / div).unwrap();
    let grads = tape.backward_seeded(&mut s, &[(y, dy)], &[]).unwrap();
    let loss = k::sum(&s.submit_and_read(&[&e]).unwrap()[0]) / div as f64;
    let gv = hooks
        .v
        .iter()
        .map(|v| gpu.read_f32(grads.get(v.unwrap()).unwrap()).unwrap())
        .collect();
    let gs = hooks
        .step_vars
        .get(2)
        .and_then(|v| grads.get((*v)?))
        .map(|g| gpu.read_f32(g).unwrap()[0]);
    (loss, gv, gs)
}

fn data() -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    let x = Array::random(&SHAPE, 1).data;
    let t = Array::random(&SHAPE, 2).map(|v| v.max(0.0) * 1.5).data;
    // V away from its start, so that the rounding is partly decided.
    let vs = (0..2)
        .map(|k| Array::random(&[4 * 36], 40 + k).map(|v| 2.0 * v).data)
        .collect();
    (x, t, vs)
}

/// The block's loss (fake quantization included) matches an f64 CPU computation, and the
/// add's learned step gets LSQ's gradient.
#[test]
fn block_loss_and_step_gradient_match_the_cpu() {
    skip_without_gpu!();
    let g = gpu();
    let (graph, params, qw) = tiny_block();
    let bq = block_quant(&params, &qw, true);
    let (x, t, vs) = data();
    let v64: Vec<Vec<f64>> = vs
        .iter()
        .map(|v| v.iter().map(|&a| a as f64).collect())
        .collect();
    let (want, pre) = loss_cpu(&params, &bq, &v64, &x, &t);
    let (got, _, _) = loss_gpu(&g, (&graph, &params), &bq, &vs, (&x, &t), false, None);
    assert!((got - want).abs() <= 1e-4 * want, "loss {got} vs {want}");
    // The step gradient: dL/dy at the quantizer's output, through LSQ's formula.
    let (_, _, gs) = loss_gpu(&g, (&graph, &params), &bq, &vs, (&x, &t), true, None);
    let fmt = bq.quantizers[2].fmt;
    let pre32: Vec<f32> = pre.iter().map(|&v| v as f32).collect();
    let yq = forward_cpu(&pre32, fmt);
    let div = (SHAPE[0] * SHAPE[2] * SHAPE[3]) as f32;
    let dy: Vec<f32> = yq
        .iter()
        .zip(&t)
        .map(|(a, b)| 2.0 * (a - b) / div)
        .collect();
    let want = step_grad_cpu(&pre32, &dy, fmt);
    let gs = gs.expect("a learned step has a gradient") as f64;
    assert!(
        (gs - want).abs() <= 1e-3 * want.abs().max(1e-3),
        "step gradient {gs} vs {want}"
    );
}

/// QDrop in the replay: dropping everything is the block without quantizers (loss and V
/// gradients), dropping nothing the plain block, and half lies strictly between neither.
#[test]
fn qdrop_replay_spans_no_quantizers_to_all() {
    skip_without_gpu!();
    use crate::ops::fake_quant::drop_threshold;
    let g = gpu();
    let (graph, params, qw) = tiny_block();
    let (with, without) = (
        block_quant(&params, &qw, true),
        block_quant(&params, &qw, false),
    );
    let (x, t, vs) = data();
    let run = |bq: &BlockQuant, p: Option<f32>| {
        let drop = p.map(|p| (drop_threshold(p).unwrap(), 77));
        loss_gpu(&g, (&graph, &params), bq, &vs, (&x, &t), false, drop)
    };
    let plain = run(&with, None);
    let none = run(&without, None);
    assert!(
        (plain.0 - none.0).abs() > 1e-3 * none.0,
        "quantizers change the loss"
    );
    let all = run(&with, Some(1.0));
    assert_eq!(all.0, none.0);
    assert_eq!(all.1, none.1);
    let zero = run(&with, Some(0.0));
    assert_eq!(zero.0, plain.0);
    assert_eq!(zero.1, plain.1);
    let half = run(&with, Some(0.5));
    assert!(half.0 != plain.0 && half.0 != none.0);
}

/// Gradients w.r.t. every layer's V through the whole block match central differences of the
/// f64 CPU loss (fake quantization off: its rounding has no useful derivative).
#[test]
fn v_gradients_through_the_block_match_finite_differences() {
    skip_without_gpu!();
    let g = gpu();
    let (graph, params, qw) = tiny_block();
    let bq = block_quant(&params, &qw, false);
    let (x, t, vs) = data();
    let (_, gv, _) = loss_gpu(&g, (&graph, &params), &bq, &vs, (&x, &t), false, None);
    let v64: Vec<Vec<f64>> = vs
        .iter()
        .map(|v| v.iter().map(|&a| a as f64).collect())
        .collect();
    let eps = 1e-6;
    for li in 0..2 {
        let top = gv[li].iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        assert!(top > 0.0);
        for i in (0..v64[li].len()).step_by(7) {
            let f = |d: f64| {
                let mut v = v64.clone();
                v[li][i] += d;
                loss_cpu(&params, &bq, &v, &x, &t).0
            };
            let fd = (f(eps) - f(-eps)) / (2.0 * eps);
            assert!(
                (gv[li][i] as f64 - fd).abs() <= 1e-4 * top,
                "layer {li} V[{i}]: {} vs {fd}",
                gv[li][i]
            );
        }
    }
}

/// A small random residual network: stem conv, a residual block, the classifier.
fn small_model() -> Model {
    let mut g = Graph::default();
    let x = g.push("x", Op::Input, &[]);
    let mut params = Params::default();
    let mut layer = |g: &mut Graph, name: &str, ci: usize, co: usize, act: Act, input| {
        let w =
            Array::random(&[co, ci, 3, 3], name.len() as u64 * 7).map(|v| v / (ci as f32).sqrt());
        params.insert(format!("{name}.weight"), w);
        params.insert(
            format!("{name}.bias"),
            Array::random(&[co], 3).map(|v| 0.1 * v),
        );
        let op = Op::Conv2d {
            weight: format!("{name}.weight"),
            bias: Some(format!("{name}.bias")),
            stride: 1,
            pad: 1.into(),
            dilation: [1, 1],
            groups: 1,
            act,
        };
        g.push(name, op, &[input])
    };
    let stem = layer(&mut g, "stem", 3, 8, Act::Relu, x);
    let a = layer(&mut g, "block.a", 8, 8, Act::Relu, stem);
    let b = layer(&mut g, "block.bb", 8, 8, Act::Identity, a);
    let add = g.push("block.add", Op::Add { act: Act::Relu }, &[b, stem]);
    let p = g.push("pool", Op::GlobalAvgPool, &[add]);
    let f = g.push("flat", Op::Flatten, &[p]);
    params.insert("fc.weight", Array::random(&[10, 8], 5));
    params.insert("fc.bias", Array::random(&[10], 6).map(|v| 0.1 * v));
    let fc = Op::Linear {
        weight: "fc.weight".into(),
        bias: Some("fc.bias".into()),
        act: Act::Identity,
    };
    g.push("fc", fc, &[f]);
    let arch = crate::models::Arch::from_graph("small", g, &params, [3, 8, 8]).unwrap();
    Model::new(arch, params).unwrap()
}

/// Images nearly constant over space: the taps' rounding errors add up in every output, so
/// choosing them jointly beats rounding each to nearest (with independent pixels
/// round-to-nearest is close to optimal, as in AdaRound's test).
fn small_calib(n: usize) -> Dataset {
    let level = Array::random(&[n * 3], 9).data;
    let noise = Array::random(&[n * 3 * 64], 10).data;
    let px: Vec<u8> = noise
        .iter()
        .enumerate()
        .map(|(i, v)| ((level[i / 64] + 0.1 * v + 1.0) * 120.0) as u8)
        .collect();
    let images = crate::data::Images::new(px, 8, 8).unwrap();
    let names = crate::models::classes::default_class_names(10);
    Dataset::from_images(images, vec![0; n], names, "random").unwrap()
}

/// End to end at W4A4: every block's output error with learned rounding and steps is below
/// round-to-nearest's; Ctrl-C (the cancel token) stops it with `Cancelled`.
#[test]
fn brecq_beats_round_to_nearest_on_every_block_and_cancels() {
    skip_without_gpu!();
    let g = gpu();
    let model = small_model();
    let calib = small_calib(128);
    let mut opts = small_opts(AdaRoundOptions::brecq().qdrop);
    let (q, reports) = brecq(&g, &model, &calib, &opts).unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[1].layers, ["block.a", "block.bb"]);
    for r in &reports {
        assert!(
            r.mse < r.rtn_mse,
            "{:?}: learned {} vs nearest {}",
            r.layers,
            r.mse,
            r.rtn_mse
        );
        assert!(r.changed > 0, "{:?}", r.layers);
    }
    assert!(reports
        .iter()
        .any(|r| r.steps.iter().any(|(_, a, b)| a != b)));
    // The learned steps are the model's formats now.
    let (name, _, learned) = &reports[1].steps[0];
    let v = (0..q.graph.nodes.len())
        .find(|&v| q.graph.nodes[v].name == *name)
        .unwrap();
    let fmts: Vec<f32> = q
        .layers
        .iter()
        .filter(|(&l, _)| q.graph.nodes[l].inputs[0] == v)
        .map(|(_, l)| l.input.scale)
        .chain(q.values.get(&v).map(|f| f.scale))
        .collect();
    assert!(
        !fmts.is_empty() && fmts.iter().all(|s| s == learned),
        "{fmts:?} vs {learned}"
    );
    let cancel = crate::progress::Cancel::new();
    opts.hooks = crate::progress::Hooks::new(std::sync::Arc::new(CancelAt(cancel.clone(), 40)))
        .with_cancel(cancel);
    assert!(matches!(
        brecq(&g, &model, &calib, &opts),
        Err(Error::Cancelled)
    ));
}

/// End to end with QDrop (the FP32 block inputs mixed in, the stem's being the image): every
/// block still ends below round to nearest, and the result differs from plain BRECQ's.
#[test]
fn brecq_with_qdrop_beats_round_to_nearest_on_every_block() {
    skip_without_gpu!();
    let g = gpu();
    let model = small_model();
    let calib = small_calib(128);
    let (_, plain) = brecq(&g, &model, &calib, &small_opts(0.0)).unwrap();
    let (_, reports) = brecq(&g, &model, &calib, &small_opts(0.5)).unwrap();
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert!(
            r.mse < r.rtn_mse,
            "{:?}: {} vs {}",
            r.layers,
            r.mse,
            r.rtn_mse
        );
    }
    assert!(reports.iter().zip(&plain).all(|(a, b)| a.mse != b.mse));
}

/// Each block's data from the cursor (each block run alone from the values held at its input)
/// is bit for bit what whole forwards from the images give, while "learning" changes every
/// block's weights between blocks, and with `scale` != 1 every value's format too (so held
/// int8 values go stale and are recomputed from the images).
#[test]
fn cursor_block_data_matches_whole_forwards() {
    skip_without_gpu!();
    let restarts = [1.0, 1.25].map(cursor_against_whole_forwards);
    assert_eq!(restarts[0], 0, "unchanged formats: no restart");
    assert!(restarts[1] > 0, "changed formats: a restart");
}

/// The cursor's restarts in the test above.
fn cursor_against_whole_forwards(scale: f32) -> usize {
    let (g, model, opts, (mut q, calib, fp)) = cursor_setup(0.5);
    let blocks = q.graph.blocks(|v| q.layers.contains_key(&v));
    assert_eq!(blocks.len(), 3);
    let mut cursor = Cursor::start(&g, &q.graph, &calib, &model, &opts).unwrap();
    let images = f32_batches(&cursor.images);
    let mut held_int8 = false;
    for block in &blocks {
        let quant = q.runner(&g).unwrap();
        let data = cursor
            .block_data((&fp, &quant), block, &opts, true)
            .unwrap();
        held_int8 |= cursor
            .quant
            .held()
            .iter()
            .any(|h| matches!(h, Held::Int8(_)));
        let (mut x, mut x_fp, mut t) = (Vec::new(), Vec::new(), Vec::new());
        for img in &images {
            let mut s = g.stream();
            let f = fp
                .forward(&mut s, img, &[block.input, block.output])
                .unwrap();
            let o = quant.forward(&mut s, img, &[block.input]).unwrap();
            s.submit();
            let read = |v| g.read_f32(&f.kept[&v]).unwrap();
            x.extend(g.read_f32(&o.kept[&block.input]).unwrap());
            x_fp.extend(read(block.input));
            t.extend(read(block.output));
        }
        assert_eq!(bits(&g.read_f32(&data.x).unwrap()), bits(&x), "{block:?}");
        let fs = data.x_fp.as_ref().unwrap();
        assert_eq!(bits(&g.read_f32(fs).unwrap()), bits(&x_fp), "{block:?}");
        assert_eq!(
            bits(&g.read_f32(&data.target).unwrap()),
            bits(&t),
            "{block:?}"
        );
        // What learning may change: the block's weights and any format.
        for l in &block.layers {
            let w = &mut q.layers.get_mut(l).unwrap().weights.q;
            w.iter_mut().step_by(3).for_each(|v| *v = (*v / 2).max(-7));
        }
        for f in q.values.values_mut() {
            f.scale *= scale;
        }
    }
    assert!(held_int8, "no block input was held as int8");
    // A value that depends on the input other than through `from` is refused.
    let (a, add) = (blocks[1].layers[0], blocks[1].output);
    let mut s = g.stream();
    let x = cursor.quant.held()[0].clone();
    assert!(fp.forward_from(&mut s, a, &x, add).is_err());
    cursor.restarts
}

/// The small model at W4A4 as learned rounding starts from it, on 40 images in batches of 16.
fn cursor_setup(
    qdrop: f32,
) -> (
    Arc<Gpu>,
    Model,
    QuantOptions,
    (QuantizedModel, Dataset, Runner),
) {
    let g = gpu();
    let model = small_model();
    let mut opts = small_opts(qdrop);
    opts.batch = 16;
    let start = learned_rounding_start(&g, &model, &small_calib(40), &opts).unwrap();
    (g, model, opts, start)
}

/// The batches of f32 values (the images).
fn f32_batches(b: &Batches) -> Vec<Tensor> {
    b.held()
        .iter()
        .map(|h| match h {
            Held::F32(t) => t.clone(),
            Held::Int8(_) => panic!("int8 values"),
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// AdaRound's layer data from its cursor (each layer's input and output run from the last cut
/// point before it) is bit for bit what whole forwards give, while the layers learned so far
/// change between layers.
#[test]
fn adaround_layer_data_matches_whole_forwards() {
    skip_without_gpu!();
    use super::super::adaround::{layer_data, LayerCursor};
    use crate::ops::qconv;
    let (g, model, opts, (mut q, calib, fp)) = cursor_setup(0.0);
    let images = Batches::images(&g, &q.graph, &calib, &model, opts.batch).unwrap();
    let mut cursor = LayerCursor {
        cuts: q.graph.cut_points(),
        fp: images.clone(),
        quant: images.clone(),
        images,
    };
    let ids: Vec<ValueId> = q.layers.keys().copied().collect();
    assert_eq!(ids.len(), 4);
    let mut moved = false;
    for (i, &l) in ids.iter().enumerate() {
        let done: HashMap<_, _> = ids[..i].iter().map(|d| (*d, q.layers[d].clone())).collect();
        let quant = Runner::with_quantized(g.clone(), q.graph.clone(), &q.params, &done).unwrap();
        let layer = q.layers[&l].clone();
        let (x, t) = layer_data((&fp, &quant), (l, &layer), &mut cursor, &opts).unwrap();
        moved |= cursor.quant.at() != cursor.images.at();
        let input = q.graph.nodes[l].inputs[0];
        let qc = qconv::QConv2d::new(&g, &layer).unwrap();
        let (mut xr, mut tr) = (Vec::new(), Vec::new());
        for img in &f32_batches(&cursor.images) {
            let mut s = g.stream();
            let f = fp.forward(&mut s, img, &[l]).unwrap();
            let o = quant.forward(&mut s, img, &[input]).unwrap();
            let qx = qc.quantize_input(&mut s, &o.kept[&input]).unwrap();
            let xd = qconv::dequantize(&mut s, &qx).unwrap();
            s.submit();
            xr.extend(g.read_f32(&xd).unwrap());
            tr.extend(g.read_f32(&f.kept[&l]).unwrap());
        }
        let name = &q.graph.nodes[l].name;
        assert_eq!(bits(&g.read_f32(&x).unwrap()), bits(&xr), "{name}");
        assert_eq!(bits(&g.read_f32(&t).unwrap()), bits(&tr), "{name}");
        let w = &mut q.layers.get_mut(&l).unwrap().weights.q;
        w.iter_mut().step_by(3).for_each(|v| *v = (*v / 2).max(-7));
    }
    assert!(moved, "the cursor never left the images");
}

/// W4A4 BRECQ with enough steps and a high enough rate for the small model's blocks.
fn small_opts(qdrop: f32) -> QuantOptions {
    QuantOptions {
        algorithm: super::super::Algorithm::Brecq,
        wbits: 4,
        abits: 4,
        adaround: AdaRoundOptions {
            iters: 400,
            lr: 3e-3,
            batch: 16,
            per_submit: 50,
            qdrop,
            ..AdaRoundOptions::brecq()
        },
        ..QuantOptions::default()
    }
}

/// Cancels its token once the task has made `.1` steps.
struct CancelAt(crate::progress::Cancel, u64);

impl crate::progress::Progress for CancelAt {
    fn set(&self, done: u64) {
        if done >= self.1 {
            self.0.cancel();
        }
    }
}
