//! Adapter selection and the `Gpu` context every op runs on.

use super::pipeline::PipelineCache;
use super::pool::BufferPool;
use crate::error::{Error, Result};
use std::sync::Arc;

const INSTALL_HINT: &str =
    "synthcal needs a Vulkan, Metal or DX12 GPU, or Mesa's CPU Vulkan driver (lavapipe).\n\
On Debian/Ubuntu: sudo apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1";

/// Which adapter to use: `--adapter` or `SYNTHCAL_ADAPTER`, e.g. `llvmpipe`, `vulkan`, `vulkan:nvidia`.
#[derive(Debug, Clone, Default)]
pub struct AdapterChoice {
    /// Case-insensitive substring of the adapter name.
    pub name: Option<String>,
    /// Restrict to one backend.
    pub backend: Option<wgpu::Backend>,
}

impl AdapterChoice {
    /// Parses `[backend][:name]`: `vulkan`, `metal`, `dx12`, `gl`, or any other text as a name substring.
    pub fn parse(spec: &str) -> Self {
        let spec = spec.trim();
        let (first, rest) = match spec.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (spec, None),
        };
        match parse_backend(first) {
            Some(b) => AdapterChoice {
                backend: Some(b),
                name: rest.filter(|s| !s.is_empty()).map(str::to_string),
            },
            None if spec.is_empty() => AdapterChoice::default(),
            None => AdapterChoice {
                backend: None,
                name: Some(spec.to_string()),
            },
        }
    }

    /// `--adapter` if given, else `SYNTHCAL_ADAPTER`, else any.
    pub fn from_flag_or_env(flag: Option<&str>) -> Self {
        match flag {
            Some(s) => Self::parse(s),
            None => std::env::var("SYNTHCAL_ADAPTER")
                .map(|s| Self::parse(&s))
                .unwrap_or_default(),
        }
    }
}

fn parse_backend(s: &str) -> Option<wgpu::Backend> {
    match s.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Some(wgpu::Backend::Vulkan),
        "metal" => Some(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Some(wgpu::Backend::Dx12),
        "gl" | "opengl" | "gles" => Some(wgpu::Backend::Gl),
        _ => None,
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "  {} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}

/// What GPU timestamps between passes need.
const TIMESTAMP_FEATURES: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

/// Everything a kernel launch needs: device, queue, limits, buffer pool and pipeline cache.
pub struct Gpu {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's name, backend and type.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with.
    pub limits: wgpu::Limits,
    /// The WGSL `packed_4x8_integer_dot_product` extension (dot4I8Packed); naga polyfills it where
    /// the driver lacks the native instruction, so this reports the native path when known.
    pub dot4_packed: bool,
    /// Subgroup operations with at least 8 lanes per subgroup (kernels that share loads across
    /// 8 lanes by broadcasts; lavapipe pays per lane for each load).
    pub subgroups: bool,
    pub(crate) pool: BufferPool,
    pub(crate) pipelines: PipelineCache,
    pub(crate) kernel_times: super::kernel_times::KernelTimes,
}

impl Gpu {
    /// Picks an adapter (discrete, then integrated, then CPU) honouring `choice`, and opens it.
    pub fn new(choice: &AdapterChoice) -> Result<Arc<Gpu>> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        match choice.backend {
            Some(b) => desc.backends = wgpu::Backends::from(b),
            // Probing GL on a headless box prints EGL errors; GL is opt-in (`--adapter gl`).
            None if std::env::var_os("WGPU_BACKEND").is_none() => {
                desc.backends = wgpu::Backends::PRIMARY
            }
            None => {}
        }
        let desc_backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(desc_backends));
        let found: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
        let mut fitting: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                choice.backend.is_none_or(|b| info.backend == b)
                    && choice
                        .name
                        .as_ref()
                        .is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()))
                    && a.get_downlevel_capabilities()
                        .flags
                        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .collect();
        fitting.sort_by_key(|a| {
            let i = a.get_info();
            // Prefer real hardware, and Vulkan/Metal/DX12 over GL for the same device.
            (type_rank(i.device_type), i.backend == wgpu::Backend::Gl)
        });
        let Some(adapter) = fitting.into_iter().next() else {
            let reason = match (&choice.backend, &choice.name) {
                (None, None) => "no adapter with compute shaders".to_string(),
                (b, n) => format!("none matches backend {b:?} and name {n:?}"),
            };
            let found = if found.is_empty() {
                "  (none)".to_string()
            } else {
                found.join("\n")
            };
            return Err(Error::NoAdapter {
                reason,
                found,
                hint: INSTALL_HINT,
            });
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let dot4_packed = instance
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let subgroups =
            adapter.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("synthcal"),
            // Timestamps where offered, for the per-layer profile.
            required_features: adapter.features() & (TIMESTAMP_FEATURES | wgpu::Features::SUBGROUP),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("request_device on {}: {e}", info.name)))?;
        log::info!("using adapter {}", describe(&info).trim());
        Ok(Arc::new(Gpu {
            pool: BufferPool::new(device.clone(), super::pool::MAX_IDLE_BYTES),
            pipelines: PipelineCache::new(device.clone()),
            device,
            queue,
            info,
            limits,
            dot4_packed,
            subgroups,
            kernel_times: Default::default(),
        }))
    }

    /// The default adapter (honours `SYNTHCAL_ADAPTER`).
    pub fn default_adapter() -> Result<Arc<Gpu>> {
        Gpu::new(&AdapterChoice::from_flag_or_env(None))
    }

    /// Largest storage binding a single tensor may occupy.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Whether GPU timestamps can be written between passes (the per-layer profile's clock).
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(TIMESTAMP_FEATURES)
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))
    }

    /// Number of compiled pipelines (for tests of the cache).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// Bytes held by idle pooled buffers.
    pub fn pool_idle_bytes(&self) -> u64 {
        self.pool.idle_bytes()
    }

    /// Releases idle pooled buffers (e.g. between models); returns the bytes freed.
    pub fn trim_pool(&self) -> u64 {
        self.pool.trim()
    }

    /// A human-readable description for `synthcal info`.
    pub fn describe(&self) -> String {
        let l = &self.limits;
        let i = &self.info;
        format!(
            "adapter:      {}\nbackend:      {:?}\ndevice type:  {:?}\ndriver:       {} {}\n\
             limits:\n  max_storage_buffer_binding_size: {} MiB\n  max_buffer_size: {} MiB\n  \
             max_compute_workgroup_storage_size: {} B\n  max_compute_invocations_per_workgroup: {}\n  \
             max_compute_workgroup_size: {}x{}x{}\n  max_compute_workgroups_per_dimension: {}\n  \
             max_storage_buffers_per_shader_stage: {}\n\
             packed 4x8 integer dot product (dot4I8Packed): {}",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroups_per_dimension,
            l.max_storage_buffers_per_shader_stage,
            if self.dot4_packed {
                "available in WGSL"
            } else {
                "not available (unpack + multiply fallback)"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_adapter_specs() {
        let c = AdapterChoice::parse("vulkan:llvmpipe");
        assert_eq!(c.backend, Some(wgpu::Backend::Vulkan));
        assert_eq!(c.name.as_deref(), Some("llvmpipe"));
        let c = AdapterChoice::parse("NVIDIA");
        assert_eq!(c.backend, None);
        assert_eq!(c.name.as_deref(), Some("NVIDIA"));
        assert!(AdapterChoice::parse("").name.is_none());
    }

    #[test]
    fn unknown_adapter_lists_what_was_found() {
        let err = match Gpu::new(&AdapterChoice::parse("no-such-adapter-xyz")) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an adapter matched a nonsense name"),
        };
        assert!(err.contains("adapters found"), "{err}");
        assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    }
}
