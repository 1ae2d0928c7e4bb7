//! The model zoo: CIFAR classifiers as graphs over the authors' own tensor names.

#[doc(hidden)]
pub mod builder;
pub mod classes;
mod load;
#[doc(hidden)]
pub mod mobilenet;
#[doc(hidden)]
pub mod repvgg;
#[doc(hidden)]
pub mod resnet;
#[doc(hidden)]
pub mod shufflenet;
#[doc(hidden)]
pub mod vgg;

#[doc(hidden)]
pub use builder::{Builder, ConvSpec};
pub use classes::default_class_names;
pub use load::{import, load_model, read_class_names, read_params, Overrides};

use crate::error::{Error, Result};
use crate::graph::{Graph, Params};

/// Per-channel input normalization on [0, 1] values: x = (v / 255 - mean) / std, one mean
/// and one deviation per input channel (R, G, B for an RGB model).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Per-channel mean (of [0, 1] values).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl Normalization {
    /// An RGB model's normalization.
    pub fn rgb(mean: [f32; 3], std: [f32; 3]) -> Normalization {
        Normalization {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    /// Input channels it normalizes.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// A default for a `channels`-channel import: `rgb` itself for 3 channels, else the
    /// average of its means and of its deviations on every channel.
    pub fn for_channels(rgb: &Normalization, channels: usize) -> Normalization {
        if channels == rgb.channels() {
            return rgb.clone();
        }
        let avg = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        Normalization {
            mean: vec![avg(&rgb.mean); channels],
            std: vec![avg(&rgb.std); channels],
        }
    }
}

/// akamaster's trainer.py normalizes with the ImageNet statistics (mean, std).
pub const IMAGENET_NORM: [[f32; 3]; 2] = [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]];
/// chenyaofo's training code uses these CIFAR-10 statistics (mean, std).
pub const CIFAR_NORM: [[f32; 3]; 2] = [[0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]];

/// [`CIFAR_NORM`] as a [`Normalization`].
pub fn cifar_norm() -> Normalization {
    Normalization::rgb(CIFAR_NORM[0], CIFAR_NORM[1])
}

pub use crate::data::CIFAR10_CLASSES;

/// An architecture: its graph, the tensors it expects, its input size and normalization.
#[derive(Clone)]
pub struct Arch {
    /// The zoo name (e.g. `resnet20`).
    pub name: String,
    /// The FP32 computation.
    pub graph: Graph,
    /// Every tensor the graph reads, with its shape.
    pub expected: Vec<(String, Vec<usize>)>,
    /// The input normalization the weights were trained with.
    pub norm: Normalization,
    /// The input images' planes (3 for RGB, 1 for gray).
    pub input_channels: usize,
    /// The input images' size, `[height, width]`.
    pub input_size: [usize; 2],
}

impl Arch {
    /// An architecture that is not the zoo's (an ONNX import): `graph` is checked against
    /// `params` at `input` (`[channels, height, width]`: indices, arity, shapes), and every
    /// tensor it reads must be there. The normalization starts as CIFAR-10's (its average on
    /// every channel when there are not 3); callers set the file's own.
    pub fn from_graph(
        name: &str,
        graph: Graph,
        params: &Params,
        input: [usize; 3],
    ) -> std::result::Result<Arch, String> {
        let [channels, h, w] = input;
        if channels == 0 {
            return Err("an input of 0 channels".into());
        }
        if h == 0 || w == 0 {
            return Err("an input side of 0 pixels".into());
        }
        crate::graph::validate::validate(&graph, params, &|_| None, input)?;
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        for p in graph.param_names() {
            if !expected.iter().any(|(n, _)| *n == p) {
                let shape = params.get(&p).map_err(|e| e.to_string())?.shape.clone();
                expected.push((p, shape));
            }
        }
        Ok(Arch {
            name: name.to_string(),
            graph,
            expected,
            norm: Normalization::for_channels(&cifar_norm(), channels),
            input_channels: channels,
            input_size: [h, w],
        })
    }

    /// Parameter count (weights and biases, not BN running statistics), as publishers count it.
    pub fn param_count(&self) -> usize {
        self.expected
            .iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Every architecture name the zoo knows.
pub fn arch_names() -> Vec<String> {
    let mut v = Vec::new();
    for d in [20, 32, 44, 56] {
        v.push(format!("akamaster_resnet{d}"));
        v.push(format!("resnet{d}"));
    }
    for m in ["x0_5", "x1_0", "x1_5", "x2_0"] {
        v.push(format!("shufflenetv2_{m}"));
    }
    for m in ["x0_5", "x0_75", "x1_0", "x1_4"] {
        v.push(format!("mobilenetv2_{m}"));
    }
    for d in [11, 13, 16, 19] {
        v.push(format!("vgg{d}_bn"));
    }
    for a in ["a0", "a1", "a2"] {
        v.push(format!("repvgg_{a}"));
        v.push(format!("repvgg_{a}_deploy"));
    }
    v
}

/// Builds an architecture by name (10 classes). chenyaofo's names are used as published
/// (`resnet20`, `vgg16_bn`, ...); akamaster's ResNets are `akamaster_resnetNN`.
pub fn arch(name: &str) -> Result<Arch> {
    arch_with_classes(name, 10)
}

/// The zoo architecture `name` with a final layer of `classes` outputs.
pub fn arch_with_classes(name: &str, classes: usize) -> Result<Arch> {
    if !(1..=crate::data::MAX_CLASSES).contains(&classes) {
        return Err(Error::Invalid(format!(
            "{classes} classes; 1 to {} are supported",
            crate::data::MAX_CLASSES
        )));
    }
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_prefix("cifar10_").unwrap_or(&n).to_string();
    let n = n.strip_prefix("chenyaofo_").unwrap_or(&n).to_string();
    let unknown = || {
        Error::Invalid(format!(
            "unknown model architecture `{name}`; known: {}",
            arch_names().join(", ")
        ))
    };
    let (b, norm) = if let Some(d) = n.strip_prefix("akamaster_resnet") {
        let d = resnet_depth(d).ok_or_else(unknown)?;
        (
            resnet::resnet(d, resnet::Shortcut::OptionA, classes),
            IMAGENET_NORM,
        )
    } else if let Some(d) = n.strip_prefix("resnet") {
        let d = resnet_depth(d).ok_or_else(unknown)?;
        (
            resnet::resnet(d, resnet::Shortcut::Conv1x1, classes),
            CIFAR_NORM,
        )
    } else if let Some(m) = n.strip_prefix("shufflenetv2_") {
        let w = shufflenet::widths(m).ok_or_else(unknown)?;
        (shufflenet::shufflenetv2(w, classes), CIFAR_NORM)
    } else if let Some(m) = n.strip_prefix("mobilenetv2_") {
        let w = match m {
            "x0_5" => 0.5,
            "x0_75" => 0.75,
            "x1_0" => 1.0,
            "x1_4" => 1.4,
            _ => return Err(unknown()),
        };
        (mobilenet::mobilenetv2(w, classes), CIFAR_NORM)
    } else if let Some(d) = n.strip_prefix("vgg").and_then(|s| s.strip_suffix("_bn")) {
        let cfg = d.parse().ok().and_then(vgg::config).ok_or_else(unknown)?;
        (vgg::vgg_bn(cfg, classes), CIFAR_NORM)
    } else if let Some(v) = n.strip_prefix("repvgg_") {
        let (v, deploy) = match v.strip_suffix("_deploy") {
            Some(v) => (v, true),
            None => (v, false),
        };
        let w = repvgg::variant(v).ok_or_else(unknown)?;
        (repvgg::repvgg(w, deploy, classes), CIFAR_NORM)
    } else {
        return Err(unknown());
    };
    Ok(Arch {
        name: n,
        graph: b.g,
        expected: b.shapes,
        norm: Normalization::rgb(norm[0], norm[1]),
        // The zoo is CIFAR's.
        input_channels: 3,
        input_size: [crate::data::IMG_SIDE; 2],
    })
}

fn resnet_depth(s: &str) -> Option<usize> {
    s.parse().ok().filter(|d| [20, 32, 44, 56].contains(d))
}

/// The zoo architecture whose expected tensors match `params` exactly (names and shapes).
pub fn detect_arch(params: &Params) -> Result<Arch> {
    let classes = params
        .tensors
        .iter()
        .find(|(n, _)| {
            [
                "fc.bias",
                "linear.bias",
                "classifier.1.bias",
                "classifier.6.bias",
            ]
            .contains(&n.as_str())
        })
        .map(|(_, a)| a.numel())
        .unwrap_or(10);
    // The closest architecture (fewest differing tensors) and its first difference.
    let mut closest: Option<(usize, String, String)> = None;
    for name in arch_names() {
        let a = arch_with_classes(&name, classes)?;
        let (count, first) = differences(params, &a.expected);
        if count == 0 {
            return Ok(a);
        }
        if closest.as_ref().is_none_or(|c| count < c.0) {
            closest = Some((count, name, first));
        }
    }
    let near = closest.map_or(String::new(), |(count, name, first)| {
        format!("; closest is {name} ({count} differing tensor(s), first: {first})")
    });
    Err(Error::Invalid(format!(
        "the checkpoint's {} tensors match no known architecture{near}; name the architecture (known: {})",
        params.tensors.len(),
        arch_names().join(", ")
    )))
}

/// How many tensors differ from `expected` (missing, misshapen or unexpected), and a
/// description of the first, in the architecture's order.
fn differences(params: &Params, expected: &[(String, Vec<usize>)]) -> (usize, String) {
    let mut diffs = Vec::new();
    for (name, shape) in expected {
        match params.tensors.get(name) {
            None => diffs.push(format!("`{name}` missing (expected shape {shape:?})")),
            Some(a) if &a.shape != shape => diffs.push(format!(
                "`{name}` expected shape {shape:?}, found {:?}",
                a.shape
            )),
            Some(_) => {}
        }
    }
    for (name, a) in &params.tensors {
        if !expected.iter().any(|(n, _)| n == name) {
            diffs.push(format!("unexpected `{name}` of shape {:?}", a.shape));
        }
    }
    let count = diffs.len();
    (count, diffs.into_iter().next().unwrap_or_default())
}

/// Random weights scaled like He initialization so activations stay O(1) through deep nets,
/// BatchNorm variances positive: for architecture tests and benchmarks without checkpoints.
pub fn random_params(a: &Arch, seed: u64) -> Params {
    let mut p = Params::default();
    for (i, (name, shape)) in a.expected.iter().enumerate() {
        let r = crate::array::Array::random(shape, seed + i as u64);
        let v = if name.ends_with("running_var") {
            r.map(|v| 0.5 + v.abs())
        } else if name.ends_with("weight") && shape.len() > 1 {
            let fan_in: usize = shape[1..].iter().product();
            let s = (3.0 / fan_in as f32).sqrt();
            r.map(|v| v * s)
        } else {
            r.map(|v| v * 0.1 + if name.ends_with(".weight") { 1.0 } else { 0.0 })
        };
        p.insert(name.clone(), v);
    }
    p
}

/// A classifier ready to run: architecture plus validated weights.
#[derive(Clone)]
pub struct Model {
    /// The architecture.
    pub arch: Arch,
    /// The weights, by the authors' tensor names.
    pub params: Params,
    /// One name per output, in output order.
    pub class_names: Vec<String>,
}

impl Model {
    /// Class names default to [`default_class_names`] of the output width.
    pub fn new(arch: Arch, params: Params) -> Result<Model> {
        params.check(&arch.expected)?;
        let width = classes::output_width(&arch.graph, |_, w| {
            params.get(w).ok().and_then(|a| a.shape.first().copied())
        })
        .unwrap_or(CIFAR10_CLASSES.len());
        Ok(Model {
            arch,
            params,
            class_names: default_class_names(width),
        })
    }

    /// The zoo architecture `arch` (see [`arch_names`]) with seeded random weights: a
    /// stand-in for tests and examples (a trained model comes from [`Model::load`]).
    pub fn random(arch: &str, seed: u64) -> Result<Model> {
        let a = self::arch(arch)?;
        let params = random_params(&a, seed);
        Model::new(a, params)
    }

    /// The number of logits per image (the class count).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter counts (millions) from the publisher's table in shared/models/README.md.
    #[test]
    fn parameter_counts_match_published() {
        let published = [
            ("resnet20", 0.27),
            ("resnet32", 0.47),
            ("resnet44", 0.66),
            ("resnet56", 0.86),
            ("akamaster_resnet20", 0.27),
            ("akamaster_resnet56", 0.85), // akamaster README: 0.85M (no downsample convs)
            ("vgg11_bn", 9.76),
            ("vgg13_bn", 9.94),
            ("vgg16_bn", 15.25),
            ("vgg19_bn", 20.57),
            ("mobilenetv2_x0_5", 0.70),
            ("mobilenetv2_x0_75", 1.37),
            ("mobilenetv2_x1_0", 2.24),
            ("mobilenetv2_x1_4", 4.33),
            ("shufflenetv2_x0_5", 0.35),
            ("shufflenetv2_x1_0", 1.26),
            ("shufflenetv2_x1_5", 2.49),
            ("shufflenetv2_x2_0", 5.37),
            ("repvgg_a0", 7.84),
            ("repvgg_a1", 12.82),
            ("repvgg_a2", 26.82),
        ];
        let mut bad = vec![];
        for (name, m) in published {
            let n = arch(name).unwrap().param_count() as f64 / 1e6;
            if (n - m).abs() >= 0.006 {
                bad.push(format!("{name}: {n:.4}M vs published {m}M"));
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn unknown_arch_is_a_clear_error() {
        let e = arch("resnet21").err().unwrap().to_string();
        assert!(
            e.contains("unknown model architecture") && e.contains("resnet20"),
            "{e}"
        );
    }

    #[test]
    fn failed_detection_names_the_closest_arch_and_tensor() {
        let a = arch("resnet20").unwrap();
        let mut p = random_params(&a, 3);
        p.insert(
            "layer2.1.conv2.weight",
            crate::array::Array::zeros(&[32, 32, 5, 5]),
        );
        let e = detect_arch(&p).err().unwrap().to_string();
        assert!(
            e.contains("closest is resnet20 (1 differing tensor(s)")
                && e.contains(
                    "`layer2.1.conv2.weight` expected shape [32, 32, 3, 3], found [32, 32, 5, 5]"
                ),
            "{e}"
        );
        assert_eq!(detect_arch(&random_params(&a, 3)).unwrap().name, "resnet20");
    }

    #[test]
    fn every_name_builds() {
        for n in arch_names() {
            let a = arch(&n).unwrap();
            assert!(a.graph.nodes.len() > 5, "{n}");
        }
    }
}
