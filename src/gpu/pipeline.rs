//! Compiled compute pipelines, cached by (shader, entry point, specialization constants):
//! the first dispatch of a new pipeline pays for a JIT compile (a large part of a second on
//! lavapipe), later ones nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A WGSL source file from `shaders/`, embedded with `include_str!`.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// The name in errors and the pipeline cache.
    pub name: &'static str,
    /// The WGSL source.
    pub source: &'static str,
}

/// Declares a `Shader` constant: `shader!("f")` is `shaders/f.wgsl`; `shader!("name", "a", "b",
/// ..., "body")` is `name` made of those files in order (preludes such as load functions or a
/// subgroup or plain form of a helper, then the body). `shaders/activation.wgsl`, the shared
/// activation functions, always comes first.
#[macro_export]
macro_rules! shader {
    ($name:literal) => {
        $crate::shader!($name, $name)
    };
    ($name:literal, $($file:literal),+) => {
        $crate::gpu::Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/shaders/activation.wgsl"
                )),
                $(include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/shaders/",
                    $file,
                    ".wgsl"
                )),)+
            ),
        }
    };
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    shader: &'static str,
    entry: &'static str,
    /// Constant names with the bit patterns of their f64 values (f64 is not `Hash`).
    constants: Vec<(&'static str, u64)>,
}

pub struct PipelineCache {
    device: wgpu::Device,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn new(device: wgpu::Device) -> Self {
        PipelineCache {
            device,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(
        &self,
        shader: Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Arc<wgpu::ComputePipeline> {
        let key = Key {
            shader: shader.name,
            entry,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry(shader.name)
                .or_insert_with(|| {
                    self.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name),
                            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                        })
                })
                .clone()
        };
        let pipeline = Arc::new(self.device.create_compute_pipeline(
            &wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            },
        ));
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipeline.clone());
        pipeline
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }
}
