//! DiStyleGAN: the conditional generator that makes synthcal's calibration images, its
//! discriminator, their training (hinge GAN plus black-box distillation from a teacher's
//! (noise, class, image) triples) and generation.
//!
//! Files:
//! - generator (`synthcal-distylegan-generator-v1`): G's parameters and BatchNorm running
//!   statistics, with `config` (widths) and `recipe` (training options) JSON in the metadata;
//! - checkpoint (`synthcal-distylegan-checkpoint-v1`): `g.*` and `d.*` tensors (with D's
//!   spectral-norm `u` vectors), Adam moments `opt.{g,d}.{m,v}`, the step and the options;
//! - teacher / generated sets: a class-folder PNG dataset plus `noise.safetensors` holding
//!   `noise` `[N, z_dim]` and `labels` `[N]` (i32) in the folder's load order (class by
//!   class, files sorted by name).

pub mod generate;
pub mod guide;
pub mod init;
pub mod model;
pub mod train;

pub use model::{Discriminator, GanConfig, Generator};

use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io;
use std::collections::BTreeMap;
use std::path::Path;

pub const GENERATOR_FORMAT: &str = "synthcal-distylegan-generator-v1";
/// safetensors string metadata.
type Metadata = BTreeMap<String, String>;

pub const CHECKPOINT_FORMAT: &str = "synthcal-distylegan-checkpoint-v1";

/// Writes named f32 arrays and metadata atomically.
pub(crate) fn write_arrays(
    path: &Path,
    arrays: &[(String, Array)],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let t: Vec<(&str, &[usize], &[f32])> = arrays
        .iter()
        .map(|(n, a)| (n.as_str(), &a.shape[..], &a.data[..]))
        .collect();
    io::safetensors_io::write_safetensors(path, &t, meta)?;
    Ok(())
}

/// Reads every tensor of a safetensors file as f32 arrays, with its metadata.
pub(crate) fn read_arrays(path: &Path) -> Result<(Vec<(String, Array)>, Metadata)> {
    let (tensors, meta) = io::safetensors_io::read_safetensors(path)?;
    let arrays = tensors
        .into_iter()
        .map(|(n, t)| {
            let a = Array::new(&t.shape, t.to_f32());
            (n, a)
        })
        .collect::<Vec<(String, Array)>>();
    crate::graph::params::validate_tensors(arrays.iter().map(|(n, a)| (n.as_str(), a))).map_err(
        |e| Error::File {
            path: path.into(),
            msg: e.to_string(),
        },
    )?;
    Ok((arrays, meta))
}

fn meta_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    meta: &BTreeMap<String, String>,
    key: &str,
) -> Result<T> {
    let s = meta.get(key).ok_or_else(|| Error::File {
        path: path.into(),
        msg: format!("metadata has no `{key}`"),
    })?;
    serde_json::from_str(s).map_err(|e| Error::File {
        path: path.into(),
        msg: format!("metadata `{key}`: {e}"),
    })
}

fn check_format(path: &Path, meta: &BTreeMap<String, String>, want: &str) -> Result<()> {
    match meta.get("format") {
        Some(f) if f == want => Ok(()),
        other => Err(Error::File {
            path: path.into(),
            msg: format!("not a {want} file (format: {other:?})"),
        }),
    }
}

/// Writes G (parameters and running statistics) as a generator file.
pub fn save_generator(
    gpu: &Gpu,
    g: &Generator,
    recipe: &serde_json::Value,
    step: u64,
    path: &Path,
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format".into(), GENERATOR_FORMAT.into());
    meta.insert(
        "config".into(),
        serde_json::to_string(&g.cfg).unwrap_or_default(),
    );
    meta.insert("recipe".into(), recipe.to_string());
    meta.insert("step".into(), step.to_string());
    meta.insert(
        "class_names".into(),
        serde_json::to_string(&crate::data::CIFAR10_CLASSES).unwrap_or_default(),
    );
    write_arrays(path, &g.read(gpu)?, &meta)
}

/// Loads a generator file; the metadata's recipe comes back as JSON.
pub fn load_generator(gpu: &Gpu, path: &Path) -> Result<(Generator, serde_json::Value)> {
    let (arrays, meta) = read_arrays(path)?;
    check_format(path, &meta, GENERATOR_FORMAT)?;
    let cfg: GanConfig = meta_json(path, &meta, "config")?;
    let recipe = meta
        .get("recipe")
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(serde_json::Value::Null);
    let (stats, params): (Vec<_>, Vec<_>) = arrays
        .into_iter()
        .partition(|(n, _)| n.contains(".running_"));
    let g = Generator::from_params(gpu, cfg, &params, &stats).map_err(|e| Error::File {
        path: path.into(),
        msg: e.to_string(),
    })?;
    Ok((g, recipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_generator_tensor_is_refused_naming_file_and_tensor() {
        let dir = std::env::temp_dir().join(format!("synthcal-gan-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.safetensors");
        let meta = BTreeMap::new();
        io::write_safetensors(
            &p,
            &[("fc.weight", &[2][..], &[1.0f32, f32::NAN][..])],
            &meta,
        )
        .unwrap();
        let e = read_arrays(&p).unwrap_err().to_string();
        assert!(
            e.contains("g.safetensors") && e.contains("fc.weight"),
            "{e}"
        );
        io::write_safetensors(&p, &[("fc.weight", &[2][..], &[1.0f32, 2.0][..])], &meta).unwrap();
        assert!(read_arrays(&p).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
