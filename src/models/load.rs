//! Loading classifiers from safetensors or PyTorch checkpoints, and `synthcal import`.

use super::{arch, arch_names, detect_arch, Model, CIFAR10_CLASSES};
use crate::cpu::Array;
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
/// from matching the tensor names and shapes against the zoo.
pub fn load_model(path: &Path, arch_name: Option<&str>) -> Result<Model> {
    let (params, meta) = read_params(path)?;
    let in_file = |e: Error| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let a = match arch_name.or(meta.get("arch").map(String::as_str)) {
        Some(n) => arch(n).map_err(in_file)?,
        None => detect_arch(&params).map_err(in_file)?,
    };
    Model::new(a, params).map_err(in_file)
}

/// `synthcal import`: writes the checkpoint's tensors under their original names, plus
/// metadata (architecture, input normalization, class names, source file).
pub fn import(ckpt: &Path, out: &Path, arch_name: Option<&str>) -> Result<()> {
    let model = load_model(ckpt, arch_name)?;
    let norm = model.arch.norm;
    let mut meta = BTreeMap::new();
    meta.insert("arch".to_string(), model.arch.name.clone());
    meta.insert("norm_mean".to_string(), format!("{:?}", norm.mean));
    meta.insert("norm_std".to_string(), format!("{:?}", norm.std));
    meta.insert("class_names".to_string(), CIFAR10_CLASSES.join(","));
    meta.insert("source".to_string(), ckpt.display().to_string());
    let tensors: Vec<(&str, &[usize], &[f32])> = model
        .params
        .tensors
        .iter()
        .map(|(n, a)| (n.as_str(), a.shape.as_slice(), a.data.as_slice()))
        .collect();
    io::write_safetensors(out, &tensors, &meta)?;
    println!(
        "{} -> {} ({}, {} tensors, {} parameters)",
        ckpt.display(),
        out.display(),
        model.arch.name,
        tensors.len(),
        model.arch.param_count()
    );
    Ok(())
}

/// `synthcal models`.
pub fn print_zoo() {
    println!(
        "{:<26} {:>12}  normalization (mean / std)",
        "architecture", "parameters"
    );
    for n in arch_names() {
        if let Ok(a) = arch(&n) {
            println!(
                "{:<26} {:>12}  {:?} / {:?}",
                n,
                a.param_count(),
                a.norm.mean,
                a.norm.std
            );
        }
    }
}
