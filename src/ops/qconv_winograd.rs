//! INT8 conv 3x3 (stride 1, dilation 1, groups 1) by Winograd F(4x4, 3x3) in wrapping i32
//! arithmetic (`shaders/qwinograd.wgsl`, which explains why the sums are exact): bit-identical
//! to the direct kernel, with a quarter of its multiplies. Meant for CPU adapters, where
//! `dot4I8Packed` is emulated one byte at a time; GPUs with DP4a keep the direct kernel.

use super::super::winograd::{self, FusedWeight};
use super::*;
use crate::gpu::Bind;

/// The module with its weight-load, row-load and store preludes.
macro_rules! qfused {
    ($name:literal, [$($loads:literal),+], $row6:literal, $store:literal) => {
        crate::shader!(
            $name,
            "winograd_rows",
            $row6,
            $($loads,)+
            $store,
            "winograd_tile",
            "qint",
            "qwinograd"
        )
    };
}
// Indexed [weights: plain loads, subgroup loads, subgroup texture of the int8 kernels, each
// lane transforming its channel's] [rows and stores: any shape, aligned].
const QFUSED: [[Shader; 2]; 3] = [
    [
        qfused!(
            "qwinograd",
            ["winograd_u_loads"],
            "winograd_row6",
            "qwinograd_store"
        ),
        qfused!(
            "qwinograd_aligned",
            ["winograd_u_loads"],
            "winograd_row6_aligned",
            "qwinograd_store_vec4"
        ),
    ],
    [
        qfused!(
            "qwinograd_subgroup",
            ["winograd_u_subgroup", "winograd_u_broadcast"],
            "winograd_row6",
            "qwinograd_store"
        ),
        qfused!(
            "qwinograd_subgroup_aligned",
            ["winograd_u_subgroup", "winograd_u_broadcast"],
            "winograd_row6_aligned",
            "qwinograd_store_vec4"
        ),
    ],
    [
        qfused!(
            "qwinograd_texture",
            ["winograd_u_raw", "winograd_u_broadcast"],
            "winograd_row6",
            "qwinograd_store"
        ),
        qfused!(
            "qwinograd_texture_aligned",
            ["winograd_u_raw", "winograd_u_broadcast"],
            "winograd_row6_aligned",
            "qwinograd_store_vec4"
        ),
    ],
];

/// Where a layer that has the Winograd form runs it; every choice gives the same integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradUse {
    /// Always the direct kernel.
    Never,
    /// Calls of at least `MIN_WINOGRAD_PIXELS` output pixels (smaller ones leave the CPU's
    /// threads idle, as FP32's Winograd forms do).
    LargeCalls,
    /// Every call (tests).
    Always,
}

impl WinogradUse {
    /// Large calls on CPU adapters, which emulate `dot4I8Packed` a byte at a time; the direct
    /// kernel elsewhere. `SYNTHCAL_INT8_CONV=direct` or `winograd` (large calls on any
    /// adapter) overrides it.
    pub fn auto(gpu: &Gpu) -> Self {
        match std::env::var("SYNTHCAL_INT8_CONV").as_deref() {
            Ok("direct") => WinogradUse::Never,
            Ok("winograd") => WinogradUse::LargeCalls,
            _ if gpu.info.device_type == wgpu::DeviceType::Cpu => WinogradUse::LargeCalls,
            _ => WinogradUse::Never,
        }
    }
}

/// Whether the Winograd form computes layer `desc` exactly: a dense stride-1 3x3 conv whose
/// every output sum has |sum| < 2^25, i.e. 128 x sum |w| < 2^25 per output channel (stored
/// inputs have |x| <= 128).
pub fn winograd_exact(desc: &QConv) -> bool {
    let w = &desc.weights;
    let [_, _, kh, kw] = w.shape;
    let per = w.shape[1..].iter().product::<usize>().max(1);
    kh == 3
        && kw == 3
        && desc.stride == 1
        && desc.dilation == [1, 1]
        && desc.groups == 1
        && w.q.chunks(per).all(|row| {
            let l1: i64 = row.iter().map(|&v| (v as i64).abs()).sum();
            l1 * 128 < 1 << 25
        })
}

/// U' = G' g G'^T of the layer's integer weights, input channels padded to whole words.
pub(super) fn weights(gpu: &Gpu, desc: &QConv) -> Result<FusedWeight> {
    let [co, ci, _, _] = desc.weights.shape;
    let cip = ci.next_multiple_of(4);
    let mut data = vec![0.0f32; co * cip * 9];
    for (i, &q) in desc.weights.q.iter().enumerate() {
        let (o, rest) = (i / (ci * 9), i % (ci * 9));
        data[o * cip * 9 + rest] = q as f32;
    }
    winograd::fused_weight_int(gpu, co, cip, &data)
}

/// Kernel parameters; field order matches `Params` in qwinograd.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WinoParams {
    n: u32,
    c4: u32,
    h: u32,
    w: u32,
    co: u32,
    co4: u32,
    oh: u32,
    ow: u32,
    pad_h: i32,
    pad_w: i32,
    tiles_h: u32,
    tiles_w: u32,
    tiles: u32,
    pad_word: u32,
    lo: i32,
    hi: i32,
    out_offset: i32,
    slope: f32,
    _pad: [u32; 2],
    add: AddConsts,
}

impl QConv2d {
    /// The layer where the Winograd form runs as `winograd` says, its weights made if the
    /// layer has the form (`winograd_exact`) and it may run.
    pub fn with_winograd(mut self, gpu: &Gpu, winograd: WinogradUse) -> Result<QConv2d> {
        self.set_winograd(gpu, winograd)?;
        Ok(self)
    }

    /// Sets where the Winograd form runs (making its weights on first need).
    pub fn set_winograd(&mut self, gpu: &Gpu, winograd: WinogradUse) -> Result<()> {
        if winograd != WinogradUse::Never && self.winograd_u.is_none() && winograd_exact(&self.desc)
        {
            self.winograd_u = Some(weights(gpu, &self.desc)?);
        }
        self.winograd = winograd;
        Ok(())
    }

    /// Whether the layer has the Winograd form's weights (it may run the form).
    pub fn has_winograd(&self) -> bool {
        self.winograd_u.is_some()
    }

    /// The Winograd weights where `forward` runs that form for a call of `pixels` output pixels
    /// (images x map): smaller calls keep the direct kernel, as FP32's do.
    pub(super) fn winograd_for(&self, pixels: usize) -> Option<&FusedWeight> {
        let run = match self.winograd {
            WinogradUse::Never => false,
            WinogradUse::LargeCalls => pixels >= crate::ops::conv_select::MIN_WINOGRAD_PIXELS,
            WinogradUse::Always => true,
        };
        self.winograd_u.as_ref().filter(|_| run)
    }

    /// The Winograd form of `forward` (the caller has checked the input's format and shape),
    /// with a fused residual add where `res` is given.
    pub(super) fn forward_winograd(
        &self,
        s: &mut Stream,
        x: &QTensor,
        u: &FusedWeight,
        out: &QOut,
        res: Option<(&QTensor, AddConsts)>,
    ) -> Result<()> {
        let d = &self.desc;
        let [n, c, h, w] = x.shape;
        let [_, co, oh, ow] = d.out_shape("qconv", x.shape)?;
        let (tiles_h, tiles_w) = (oh.div_ceil(4), ow.div_ceil(4));
        let tiles = n * tiles_h * tiles_w;
        let slope = d.act.code().1;
        let p = WinoParams {
            n: n as u32,
            c4: c.div_ceil(4) as u32,
            h: h as u32,
            w: w as u32,
            co: co as u32,
            co4: co.div_ceil(4) as u32,
            oh: oh as u32,
            ow: ow as u32,
            pad_h: d.pad.begin[0] as i32,
            pad_w: d.pad.begin[1] as i32,
            tiles_h: tiles_h as u32,
            tiles_w: tiles_w as u32,
            tiles: tiles as u32,
            pad_word: pad_word(d.input),
            lo: self.lo,
            hi: self.hi,
            out_offset: d.output.map_or(0, |f| f.offset()),
            slope,
            _pad: [0; 2],
            add: res.map(|r| r.1).unwrap_or_default(),
        };
        let sg = self.subgroups && s.gpu().subgroups;
        let cpu = s.gpu().info.device_type == wgpu::DeviceType::Cpu;
        // The FP32 kernel's rule as with subgroups: whole blocks of 8 (the packed output's
        // words need channel blocks in multiples of 4), 16 on CPU adapters where Co allows.
        let cob = winograd::channels_per_invocation(co, true, cpu);
        let texture = u.texture.as_ref().filter(|_| sg && self.texture_weights);
        let loads = if texture.is_some() { 2 } else { sg as usize };
        let mut grid = grid_1d(tiles, WG);
        grid[2] = co.div_ceil(cob) as u32;
        let mut bound = vec![
            Bind::Tensor(&x.data),
            texture.map_or(Bind::Tensor(&u.buffer), Bind::Texture),
            Bind::Tensor(&self.bias),
            Bind::Tensor(&self.scale),
            Bind::Tensor(out.tensor()),
        ];
        let aligned =
            self.aligned_rows && w.is_multiple_of(4) && ow.is_multiple_of(4) && d.pad.begin[1] == 1;
        if aligned {
            bound.push(Bind::Tensor(&x.data)); // binding 6: the input's vec4 view
        }
        // The residual (any tensor where there is none; the shader does not read it then).
        bound.push(Bind::Tensor(res.map_or(&x.data, |r| &r.0.data)));
        let [mode, act, has_res] = epilogue_consts(d, res.is_some());
        s.dispatch_bound(
            QFUSED[loads][aligned as usize],
            "qfused4",
            &[
                ("WG", WG as f64),
                ("COB", cob as f64),
                ("LANES", c.min(4) as f64),
                mode,
                act,
                has_res,
            ],
            bytes_of(&p),
            &bound,
            grid,
        )
    }
}
