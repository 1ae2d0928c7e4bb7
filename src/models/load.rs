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
    let a = match arch_name.or(meta.get("arch").map(String::as_str)) {
        Some(n) => arch(n).map_err(in_file)?,
        None => detect_arch(&params).map_err(in_file)?,
    };
    let file_err = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg,
    };
    let mut model = Model::new(a, params).map_err(in_file)?;
    model.arch.norm = norm_from_meta(&meta, model.arch.norm).map_err(file_err)?;
    if let Some(names) = class_names_from_meta(&meta, model.num_classes()).map_err(file_err)? {
        model.class_names = names;
    }
    Ok(model)
}

/// Converts a checkpoint to safetensors: its tensors under their original names, plus
/// metadata (architecture, input normalization, class names, source file). Returns the model.
pub fn import(ckpt: &Path, out: &Path, arch_name: Option<&str>) -> Result<Model> {
    io::check_output_file(out, &[ckpt])?;
    let model = load_model(ckpt, arch_name)?;
    model.write(out, Some(ckpt))?;
    Ok(model)
}

impl Model {
    /// Writes the weights as safetensors (atomically), with the architecture, input
    /// normalization and class names in the metadata, so [`Model::load`] reads it back as is.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.write(path.as_ref(), None)
    }

    fn write(&self, out: &Path, source: Option<&Path>) -> Result<()> {
        // A safetensors file names its architecture, which loading looks up in the zoo: a
        // graph from elsewhere (ONNX) would be written but could not be read back.
        if arch(&self.arch.name).is_err() {
            return Err(Error::File {
                path: out.to_path_buf(),
                msg: format!(
                    "`{}` is not a zoo architecture, so a safetensors file could not be loaded \
                     back; keep it as ONNX (`synthcal export`, `onnx::write`)",
                    self.arch.name
                ),
            });
        }
        let norm = self.arch.norm;
        let mut meta = BTreeMap::new();
        meta.insert("arch".to_string(), self.arch.name.clone());
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

    /// A model whose architecture is not the zoo's (an ONNX import) is not written as a
    /// safetensors file that could not be loaded back.
    #[test]
    fn a_graph_from_elsewhere_is_not_saved_as_safetensors() {
        let mut m = Model::random("resnet20", 1).unwrap();
        let p = std::env::temp_dir().join(format!("synthcal-save-{}.st", std::process::id()));
        m.save(&p).unwrap();
        assert_eq!(
            load_model(&p, None).unwrap().params.tensors,
            m.params.tensors
        );
        std::fs::remove_file(&p).unwrap();
        m.arch.name = "mynet".into();
        let e = m.save(&p).unwrap_err().to_string();
        assert!(e.contains("mynet") && e.contains("ONNX"), "{e}");
        assert!(!p.exists());
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
        import(&a, &b, None).unwrap();
        let back = load_model(&b, None).unwrap();
        assert_eq!(back.arch.norm, m.arch.norm);
        assert_eq!(back.class_names, names);
        // Without metadata: the architecture's normalization and the CIFAR-10 names.
        write_model(&a, &[]);
        let plain = load_model(&a, None).unwrap();
        assert_eq!(plain.arch.norm, super::super::CIFAR_NORM);
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
