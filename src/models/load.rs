//! Loading classifiers from safetensors or PyTorch checkpoints, and `synthcal import`.

use super::classes::{class_names_from_meta, norm_from_meta};
use super::{arch, detect_arch, Model};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::Params;
use crate::io::{self, Format};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads the tensors of any supported weights file; integer counters such as BatchNorm's
/// `num_batches_tracked` are dropped since inference never reads them.
pub fn read_params(path: &Path) -> Result<(Params, BTreeMap<String, String>)> {
    let (tensors, meta) = match io::detect_format(path)? {
        Format::Safetensors => io::read_safetensors(path)?,
        Format::TorchZip | Format::TorchLegacy => {
            (io::load_torch_checkpoint(path)?, BTreeMap::new())
        }
    };
    let mut params = Params::default();
    for (name, t) in tensors {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        params.insert(name, Array::new(&t.shape, t.to_f32()));
    }
    params.validate().map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok((params, meta))
}

/// Loads a classifier; the architecture comes from `arch`, else the file's metadata, else
/// from matching the tensor names and shapes against the zoo. The metadata's `norm_mean`,
/// `norm_std` and `class_names` (as `import` writes them) override the architecture's
/// defaults, and are validated.
pub fn load_model(path: &Path, arch_name: Option<&str>) -> Result<Model> {
    // ONNX files carry their own graph, so no architecture is looked up.
    if crate::onnx::is_onnx_path(path) {
        return crate::onnx::load(path);
    }
    let (params, meta) = read_params(path)?;
    let in_file = |e: Error| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let file_err = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg,
    };
    // synthcal's other files hold tensors too; say what they are rather than which
    // architecture they fail to match.
    match meta.get("format").map(String::as_str) {
        Some(crate::gan::GENERATOR_FORMAT) => {
            return Err(file_err(
                "a DiStyleGAN generator, not a classifier (it goes to `--calib gan:FILE` or \
                 `generate --generator FILE`)"
                    .into(),
            ))
        }
        Some(crate::quant::model::FORMAT) => {
            return Err(file_err(
                "an INT8 model, where the FP32 classifier is needed (the one it was quantized \
                 from)"
                    .into(),
            ))
        }
        _ => {}
    }
    let a = match (meta.get("graph"), arch_name) {
        (Some(_), Some(n)) => {
            return Err(file_err(format!(
                "the file carries its own graph, so it cannot be read as the zoo's `{n}`"
            )))
        }
        (Some(g), None) => graph_from_meta(&meta, g, &params).map_err(file_err)?,
        (None, _) => match arch_name.or(meta.get("arch").map(String::as_str)) {
            Some(n) => arch(n).map_err(in_file)?,
            None => detect_arch(&params).map_err(in_file)?,
        },
    };
    let mut model = Model::new(a, params).map_err(in_file)?;
    model.arch.norm = norm_from_meta(&meta, model.arch.norm.clone()).map_err(file_err)?;
    if let Some(names) = class_names_from_meta(&meta, model.num_classes()).map_err(file_err)? {
        model.class_names = names;
    }
    Ok(model)
}

/// A metadata value as JSON.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}

/// The architecture a file describes with its own `graph` and `input_size` metadata (a model
/// from outside the zoo, e.g. an ONNX import), checked against its tensors.
fn graph_from_meta(
    meta: &BTreeMap<String, String>,
    graph: &str,
    params: &Params,
) -> std::result::Result<super::Arch, String> {
    let graph = serde_json::from_str(graph).map_err(|e| format!("metadata `graph`: {e}"))?;
    let size = meta
        .get("input_size")
        .ok_or("metadata `input_size` missing (a file with its own graph needs it)")?;
    let [h, w]: [usize; 2] =
        serde_json::from_str(size).map_err(|e| format!("metadata `input_size`: {e}"))?;
    // Absent: an RGB model, as every file before other channel counts.
    let c = match meta.get("input_channels") {
        Some(c) => c
            .parse()
            .map_err(|_| format!("metadata `input_channels` {c:?} is not a count"))?,
        None => 3,
    };
    let name = meta.get("arch").map_or("model", String::as_str);
    super::Arch::from_graph(name, graph, params, [c, h, w]).map_err(|e| format!("graph: {e}"))
}

/// Converts a checkpoint to safetensors: its tensors under their original names, plus
/// metadata (architecture, input normalization, class names, source file). Returns the model.
pub fn import(
    ckpt: &Path,
    out: &Path,
    arch_name: Option<&str>,
    overrides: &Overrides,
) -> Result<Model> {
    io::check_output_file(out, &[ckpt])?;
    let mut model = load_model(ckpt, arch_name)?;
    overrides.apply(&mut model)?;
    model.write(out, Some(ckpt))?;
    Ok(model)
}

/// What [`import`] stores in place of the file's own (or the architecture's) input
/// normalization and class names.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Per-channel mean of the normalization (one per input channel: R, G, B for RGB).
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation.
    pub std: Option<Vec<f32>>,
    /// One name per output.
    pub class_names: Option<Vec<String>>,
}

impl Overrides {
    /// Sets what is given on `model`, checked (one finite mean and one positive deviation
    /// per input channel, one unique name per output).
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let c = model.arch.input_channels;
        for (flag, v) in [("--mean", &self.mean), ("--std", &self.std)] {
            if let Some(v) = v.as_ref().filter(|v| v.len() != c) {
                return Err(Error::Invalid(format!(
                    "{flag}: {} values for a model of {c} input channel{}; give one per channel",
                    v.len(),
                    if c == 1 { "" } else { "s" }
                )));
            }
        }
        let norm = super::Normalization {
            mean: self.mean.clone().unwrap_or(model.arch.norm.mean.clone()),
            std: self.std.clone().unwrap_or(model.arch.norm.std.clone()),
        };
        super::classes::check_norm(&norm).map_err(Error::Invalid)?;
        model.arch.norm = norm;
        if let Some(names) = &self.class_names {
            super::classes::check_class_names(names, model.num_classes())
                .map_err(Error::Invalid)?;
            model.class_names = names.clone();
        }
        Ok(())
    }
}

/// Class names from a text file: one per line, in output order (blank lines and surrounding
/// spaces ignored).
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let file_err = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| file_err(e.to_string()))?
        .len();
    // A million classes of a few words would still fit; anything larger is not a list.
    if len > 64 << 20 {
        return Err(file_err(format!(
            "{len} bytes is too large for a class list"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let names: Vec<String> = crate::data::names_per_line(&text);
    if names.is_empty() {
        return Err(file_err("no class names (one per line)".into()));
    }
    Ok(names)
}

impl Model {
    /// Writes the weights as safetensors (atomically), with the architecture, input
    /// normalization and class names in the metadata, so [`Model::load`] reads it back as is.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.write(path.as_ref(), None)
    }

    fn write(&self, out: &Path, source: Option<&Path>) -> Result<()> {
        let norm = &self.arch.norm;
        let mut meta = BTreeMap::new();
        meta.insert("arch".to_string(), self.arch.name.clone());
        // A zoo architecture is looked up by name on load; any other graph (an ONNX import,
        // or a zoo name on another graph) travels in the file.
        let same = |a: super::Arch| {
            json(&a.graph).ok() == json(&self.arch.graph).ok()
                && a.input_size == self.arch.input_size
                && a.input_channels == self.arch.input_channels
        };
        if !arch(&self.arch.name).is_ok_and(same) {
            meta.insert("graph".to_string(), json(&self.arch.graph)?);
            meta.insert("input_size".to_string(), json(&self.arch.input_size)?);
            if self.arch.input_channels != 3 {
                let c = self.arch.input_channels.to_string();
                meta.insert("input_channels".to_string(), c);
            }
        }
        meta.insert("norm_mean".to_string(), format!("{:?}", norm.mean));
        meta.insert("norm_std".to_string(), format!("{:?}", norm.std));
        let names = serde_json::to_string(&self.class_names)
            .map_err(|e| Error::Invalid(format!("class names: {e}")))?;
        meta.insert("class_names".to_string(), names);
        if let Some(src) = source {
            meta.insert("source".to_string(), src.display().to_string());
        }
        let tensors: Vec<(&str, &[usize], &[f32])> = self
            .params
            .tensors
            .iter()
            .map(|(n, a)| (n.as_str(), a.shape.as_slice(), a.data.as_slice()))
            .collect();
        Ok(io::write_safetensors(out, &tensors, &meta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose graph is not the zoo's (an ONNX import, or a zoo name on another graph)
    /// is saved with its graph and input size, and loads back as the same model; a file's
    /// own graph is checked on load and is not read as a zoo architecture.
    #[test]
    fn a_graph_from_elsewhere_travels_in_the_file() {
        let dir = std::env::temp_dir().join(format!("synthcal-graphfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.safetensors");
        let mut m = Model::random("resnet20", 1).unwrap();
        m.save(&p).unwrap();
        let (_, meta) = read_params(&p).unwrap();
        assert!(!meta.contains_key("graph"), "a zoo model is stored by name");
        m.arch.name = "mynet".into();
        m.class_names[0] = "plane".into();
        m.save(&p).unwrap();
        let back = load_model(&p, None).unwrap();
        assert_eq!(back.arch.name, "mynet");
        assert_eq!(back.params.tensors, m.params.tensors);
        assert_eq!(back.class_names, m.class_names);
        assert_eq!(back.arch.input_size, m.arch.input_size);
        let g = |m: &Model| serde_json::to_string(&m.arch.graph).unwrap();
        assert_eq!(g(&back), g(&m));
        let e = load_model(&p, Some("resnet20")).err().unwrap().to_string();
        assert!(
            e.contains("own graph") && e.contains("m.safetensors"),
            "{e}"
        );
        // The zoo's name on another graph: its own graph is kept, not the zoo's.
        let mut other = Model::random("resnet20", 1).unwrap();
        other.arch.graph.nodes.pop();
        other.arch.graph.output = other.arch.graph.nodes.len() - 1;
        other.save(&p).unwrap();
        assert_eq!(g(&load_model(&p, None).unwrap()), g(&other));
        // A graph that reads past its nodes is refused, naming the file.
        let (params, mut meta) = read_params(&p).unwrap();
        let bad = meta["graph"].replacen("\"inputs\":[0]", "\"inputs\":[999]", 1);
        assert_ne!(bad, meta["graph"]);
        meta.insert("graph".into(), bad);
        let t: Vec<(&str, &[usize], &[f32])> = params
            .tensors
            .iter()
            .map(|(n, a)| (n.as_str(), a.shape.as_slice(), a.data.as_slice()))
            .collect();
        io::write_safetensors(&p, &t, &meta).unwrap();
        let e = load_model(&p, None).err().unwrap().to_string();
        assert!(e.contains("m.safetensors") && e.contains("graph"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A random ResNet-20 written as safetensors with `meta`.
    fn write_model(path: &Path, meta: &[(&str, &str)]) {
        let p = crate::models::random_params(&arch("resnet20").unwrap(), 3);
        let t: Vec<(&str, &[usize], &[f32])> = p
            .tensors
            .iter()
            .map(|(n, a)| (n.as_str(), &a.shape[..], &a.data[..]))
            .collect();
        let meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        io::write_safetensors(path, &t, &meta).unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("synthcal-load-{}-{name}", std::process::id()))
    }

    /// A generator or an INT8 file given as a classifier says what it is; a PyTorch checkpoint
    /// read as safetensors says that.
    #[test]
    fn other_synthcal_files_are_named_for_what_they_are() {
        let p = tmp("kind.safetensors");
        for (format, want) in [
            (crate::gan::GENERATOR_FORMAT, "DiStyleGAN generator"),
            (crate::quant::model::FORMAT, "an INT8 model"),
        ] {
            write_model(&p, &[("format", format)]);
            let e = load_model(&p, None).err().unwrap().to_string();
            assert!(e.contains(want) && e.contains("kind.safetensors"), "{e}");
        }
        let torch = tmp("legacy.th");
        let mut bytes = vec![0x80, 0x02, 0x8a, 0x0a];
        bytes.extend_from_slice(&crate::io::torch::LEGACY_MAGIC);
        bytes.resize(64, 0);
        std::fs::write(&torch, &bytes).unwrap();
        let e = io::read_safetensors(&torch).err().unwrap().to_string();
        assert!(e.contains("a PyTorch checkpoint"), "{e}");
        std::fs::remove_file(&p).unwrap();
        std::fs::remove_file(&torch).unwrap();
    }

    #[test]
    fn metadata_norm_and_class_names_are_used_and_round_trip() {
        let (a, b) = (tmp("meta-a.safetensors"), tmp("meta-b.safetensors"));
        let names: Vec<String> = (0..10).map(|i| format!("kind{i}")).collect();
        let json = serde_json::to_string(&names).unwrap();
        let meta = [
            ("norm_mean", "[0.5, 0.25, 0.125]"),
            ("norm_std", "[0.3, 0.2, 0.1]"),
            ("class_names", json.as_str()),
        ];
        write_model(&a, &meta);
        let m = load_model(&a, None).unwrap();
        assert_eq!(m.arch.norm.mean, [0.5, 0.25, 0.125]);
        assert_eq!(m.arch.norm.std, [0.3, 0.2, 0.1]);
        assert_eq!(m.class_names, names);
        // `import` writes what it read; loading its output gives the same again.
        import(&a, &b, None, &Overrides::default()).unwrap();
        let back = load_model(&b, None).unwrap();
        assert_eq!(back.arch.norm, m.arch.norm);
        assert_eq!(back.class_names, names);
        // Without metadata: the architecture's normalization and the CIFAR-10 names.
        write_model(&a, &[]);
        let plain = load_model(&a, None).unwrap();
        assert_eq!(plain.arch.norm, super::super::cifar_norm());
        assert_eq!(plain.class_names[0], "airplane");
        std::fs::remove_file(&a).ok();
        std::fs::remove_file(&b).ok();
    }

    #[test]
    fn bad_metadata_is_refused_naming_the_file() {
        let a = tmp("bad-meta.safetensors");
        for (k, v, want) in [
            ("norm_mean", "[0.5, 0.5]", "2 values"),
            ("norm_std", "[0.2, 0, 0.2]", "positive"),
            (
                "class_names",
                "a,b,c",
                "3 class names for a model with 10 outputs",
            ),
            ("class_names", "a,b,c,d,e,f,g,h,i,j,k", "11 class names"),
        ] {
            write_model(&a, &[(k, v)]);
            let e = load_model(&a, None).err().unwrap().to_string();
            assert!(e.contains("bad-meta.safetensors") && e.contains(k), "{e}");
            assert!(e.contains(want), "{e}");
        }
        std::fs::remove_file(&a).ok();
    }
}
