//! Launch planning: the launch shape of each scan kernel from a [`KernelConfig`], the sizes
//! and the device's properties.

use super::config::KernelConfig;
use crate::input::Dims;
use burn::tensor::DType;
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};
use cubecl::CubeCount;
use cubecl::features::Plane;

/// Launch table entry: steps per unit, largest number of units per channel (a power of two,
/// at least the plane width; units per channel are `next_pow2(L / items)` clamped to it),
/// channels per cube, and (forward) whether B and C are staged in shared memory.
#[derive(Clone, Copy, Debug)]
struct Launch {
    items: usize,
    max_units: usize,
    chans: usize,
    stage: bool,
    /// forward: two states per pass (where the launch is one plane per channel)
    pair: bool,
}

/// The launch table of the scalar kernels, by direction, sequence length and storage width,
/// chosen from the measured table in `docs/kernels.md` (history: `docs/lab/kernels-history.md`).
/// A segment of 32 units is one plane on CUDA, where the scans need no shared memory and no
/// barrier (`one_plane`).
/// - Forward, L <= 128: 4 steps x 32 units (one plane on CUDA), 4 channels, staged.
/// - Forward, L <= 512: 8 steps x 32 units, 4 channels, staged.
/// - Forward, longer, 4-byte storage: 8 steps x 32 units, 4 channels, staged, two states per
///   pass. Two-byte storage: 8 x 32, one channel, unstaged.
/// - Backward, L <= 128: 4 steps x 32 units (one plane on CUDA), 4 channels.
/// - Backward, longer: 8 steps x 32 units (one plane), 16 channels.
fn default_launch(backward: bool, len: usize, half: bool) -> Launch {
    let l = |items, max_units, chans, stage, pair| Launch {
        items,
        max_units,
        chans,
        stage,
        pair,
    };
    match (backward, len) {
        (false, 0..=128) => l(4, 256, 4, true, false),
        (false, 129..=512) => l(8, 32, 4, true, false),
        (false, _) if half => l(8, 32, 1, false, false),
        (false, _) => l(8, 32, 4, true, true),
        (true, 0..=128) => l(4, 256, 4, false, false),
        (true, _) => l(8, 32, 16, false, false),
    }
}

/// `items` if it is a valid number of steps per unit.
fn valid_items(items: Option<usize>) -> Option<usize> {
    items.filter(|i| matches!(i, 1 | 2 | 4 | 8 | 16))
}

/// Whether the cube scans use plane shuffles: the config, else the device's report.
fn use_plane<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    cfg: &KernelConfig,
) -> bool {
    cfg.plane
        .unwrap_or_else(|| client.properties().features.plane.contains(Plane::Ops))
}

/// Launch of the vectorised forward or backward.
pub(crate) struct VecCfg {
    /// steps per unit (a multiple of `vec`)
    pub(crate) items: usize,
    /// elements per vector load
    pub(crate) vec: usize,
    /// units per channel (a segment): the plane width, or for short sequences the least
    /// power of two whose chunk (`seg` x `items` steps) covers L, so that `plane / seg`
    /// channels share a plane (capped by [`KernelConfig::vec_seg_fwd`] / `_bwd`)
    pub(crate) seg: usize,
    /// channels per cube (a multiple of `plane / seg`: whole planes)
    pub(crate) chans: usize,
    /// backward with several channels per cube: their dB / dC terms summed in shared
    /// memory before the atomic adds ([`KernelConfig::vec_cube_sum`])
    pub(crate) cube_sum: bool,
    /// cubes in (group, channel block, batch) order instead of (batch, group, channel
    /// block) ([`KernelConfig::vec_batch_order`])
    pub(crate) batch_inner: bool,
    /// forward: load B_{n+1} during state n ([`KernelConfig::vec_prefetch`])
    pub(crate) prefetch: Option<bool>,
}

impl VecCfg {
    /// The launch the config and the device give for these sizes (before the tensors'
    /// layout is checked), `None` where the vectorised kernel is off or cannot run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan<R: CubeRuntime>(
        client: &cubecl::client::ComputeClient<R>,
        kc: &KernelConfig,
        dim: usize,
        groups: usize,
        len: usize,
        n_state: usize,
        dtype: DType,
        backward: bool,
    ) -> Option<Self> {
        let on = if backward {
            kc.vec_backward
        } else {
            kc.vec_forward
        };
        let props = client.properties();
        let hw = &props.hardware;
        let plane = use_plane(client, kc);
        let lanes = hw.plane_size_max as usize;
        if !on || !plane || hw.plane_size_min != hw.plane_size_max || !lanes.is_power_of_two() {
            return None;
        }
        let elem = dtype.size();
        // 8 steps per unit at every L: short sequences get short segments instead of fewer
        // steps per unit
        let items = valid_items(if backward {
            kc.vec_items_bwd
        } else {
            kc.vec_items_fwd
        })
        .unwrap_or(8);
        // 16-byte vectors, at most a unit's steps (bf16 at L <= 128: 4 x 2 bytes, so that
        // 32 units of 4 steps cover L = 128); WGSL has no vectors of more than 4 elements
        let wide = R::name(client).contains("cuda");
        let vec = kc
            .vec_width
            .filter(|v| v.is_power_of_two() && *v * elem <= 16 && (wide || *v <= 4))
            .unwrap_or(if wide { (16 / elem).min(items) } else { 4 });
        let items = items.max(vec);
        if !len.is_multiple_of(vec) {
            return None;
        }
        // the segment: the least power of two of units whose chunk covers L, at most a plane
        // (and at most the configured cap)
        let cap = if backward {
            kc.vec_seg_bwd
        } else {
            kc.vec_seg_fwd
        }
        .filter(|s| s.is_power_of_two())
        .unwrap_or(lanes);
        let seg = len.div_ceil(items).next_power_of_two().min(lanes).min(cap);
        let per_plane = lanes / seg;
        let per_group = dim / groups.max(1);
        // planes per cube: the backward up to L 512 two planes, their dB / dC terms summed
        // per cube (`cube_sum`); else one plane
        let planes = if backward {
            kc.vec_chans_bwd
        } else {
            kc.vec_chans_fwd
        };
        let mut planes = planes
            .unwrap_or(if backward && len <= 512 { 2 } else { 1 })
            .clamp(1, 16)
            .min(per_group.div_ceil(per_plane).max(1))
            .min((hw.max_units_per_cube as usize / lanes).max(1));
        if backward {
            // the dB / dC exchange buffers (2 x 2 chunks of f32 padded by one word per
            // segment) and the carries (N f32) per channel, 48 KiB at most
            let chunk = seg * items;
            let per_chan = 16 * (chunk + chunk / seg) + 4 * n_state;
            planes = planes
                .min((hw.max_shared_memory_size.min(48 * 1024) / (per_chan * per_plane)).max(1));
        }
        let chans = planes * per_plane;
        Some(VecCfg {
            items,
            vec,
            seg,
            chans,
            // the sums' step offsets are compile-time constants when the cube's units
            // divide the chunk
            cube_sum: kc.vec_cube_sum && items.is_multiple_of(chans),
            // default: the backward in batch order above L 512 (one plane per cube: its
            // atomics otherwise pile onto one batch row's dB / dC), in channel order up to
            // it (two planes summed per cube); the forward in batch order on short segments
            batch_inner: kc.vec_batch_order.unwrap_or(if backward {
                len > 512
            } else {
                seg < lanes
            }),
            prefetch: kc.vec_prefetch,
        })
    }

    /// [`VecCfg::plan`], if the tensors fit the vector loads: unit stride along L, the other
    /// strides multiples of the vector width, starts aligned to a vector.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<R: CubeRuntime, const K: usize>(
        client: &cubecl::client::ComputeClient<R>,
        kc: &KernelConfig,
        dim: usize,
        groups: usize,
        len: usize,
        n_state: usize,
        dtype: DType,
        backward: bool,
        tensors: [&CubeTensor<R>; K],
    ) -> Option<Self> {
        let cfg = Self::plan(client, kc, dim, groups, len, n_state, dtype, backward)?;
        let elem = dtype.size();
        for t in tensors {
            let strides = t.meta.strides();
            let rank = strides.len();
            let offset = t.handle.offset_start.unwrap_or(0) as usize;
            if strides[rank - 1] != 1
                || strides[..rank - 1]
                    .iter()
                    .any(|s| !s.is_multiple_of(cfg.vec))
                || !offset.is_multiple_of(cfg.vec * elem)
            {
                return None;
            }
        }
        Some(cfg)
    }

    /// Whether every segment of every cube has a channel (the group's channels a multiple of
    /// the channels per cube): the kernels then treat every segment as active at compile
    /// time (fewer registers).
    pub(crate) fn all_active(&self, dim: usize, groups: usize) -> bool {
        (dim / groups.max(1)).is_multiple_of(self.chans)
    }

    /// The compile-time arguments shared by the vectorised forward and backward kernels.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn common(
        &self,
        n_state: usize,
        has_d: bool,
        has_z: bool,
        has_bias: bool,
        delta_softplus: bool,
        dim: usize,
        groups: usize,
    ) -> super::vectorised::VecCommon {
        super::vectorised::VecCommon {
            n_state,
            items: self.items,
            vec: self.vec,
            seg: self.seg,
            chans: self.chans,
            has_d,
            has_z,
            has_bias,
            delta_softplus,
            batch_inner: self.batch_inner,
            all_active: self.all_active(dim, groups),
        }
    }

    /// Cube count: one cube per (batch, group, block of `chans` channels).
    pub(crate) fn count<R: CubeRuntime>(
        &self,
        client: &cubecl::client::ComputeClient<R>,
        batch: usize,
        dim: usize,
        groups: usize,
    ) -> CubeCount {
        let per_group = dim / groups.max(1);
        let cubes = batch * groups * per_group.div_ceil(self.chans);
        let cx = cubes
            .min(client.properties().hardware.max_cube_count.0 as usize)
            .max(1);
        CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1)
    }
}

/// Launch shape of the scalar forward and backward kernels.
pub(crate) struct LaunchCfg {
    pub(crate) count: CubeCount,
    /// units per channel
    pub(crate) units: u32,
    /// channels per cube
    pub(crate) chans: usize,
    pub(crate) items: usize,
    pub(crate) smem_len: usize,
    pub(crate) plane: bool,
    /// drop the barriers that other barriers already cover ([`KernelConfig::lean_sync`])
    pub(crate) lean: bool,
    /// forward: stage B and C of a chunk in shared memory, once per cube
    /// ([`KernelConfig::stage_fwd`])
    pub(crate) stage: bool,
    /// backward: keep B_t in registers from the recompute for the gradient loop
    /// ([`KernelConfig::keep_b`])
    pub(crate) keep_b: bool,
    /// backward: B and C staged in shared memory, double-buffered ([`KernelConfig::stage_bwd`])
    pub(crate) stage_bwd: bool,
    /// one plane per channel: cube scans by plane shuffles only ([`KernelConfig::one_plane`])
    pub(crate) one_plane: bool,
    /// backward: the dB and dC sums split between all units ([`KernelConfig::red_split`])
    pub(crate) red_split: bool,
    /// backward: the `fold` gradient loop ([`KernelConfig::backward_fold`])
    pub(crate) fold: bool,
    /// forward: two states per pass (one-plane launches with an even N only;
    /// [`KernelConfig::pair_states`])
    pub(crate) pair: bool,
}

impl LaunchCfg {
    /// The compile-time arguments shared by the scalar forward and backward kernels.
    pub(crate) fn common(
        &self,
        n_state: usize,
        has_d: bool,
        has_z: bool,
        has_bias: bool,
        delta_softplus: bool,
    ) -> super::device::ScanCommon {
        super::device::ScanCommon {
            n_state,
            items: self.items,
            cube_units: self.units as usize,
            chans: self.chans,
            smem_len: self.smem_len,
            has_d,
            has_z,
            has_bias,
            delta_softplus,
            use_plane: self.plane,
            lean: self.lean,
            one_plane: self.one_plane,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<R: CubeRuntime>(
        client: &cubecl::client::ComputeClient<R>,
        kc: &KernelConfig,
        batch: usize,
        dim: usize,
        groups: usize,
        len: usize,
        n_state: usize,
        backward: bool,
        dtype: DType,
    ) -> Self {
        let props = client.properties();
        let hw = &props.hardware;
        let plane = use_plane(client, kc);
        // a 1-D cube (CUDA derives plane indices from x): `chans` segments, each a power of two
        // of full planes
        let table = default_launch(backward, len, dtype.size() == 2);
        let items =
            valid_items(if backward { kc.items_bwd } else { kc.items_fwd }).unwrap_or(table.items);
        let max_cube = hw.max_units_per_cube.min(hw.max_cube_dim.0) as usize;
        let cap = if backward { kc.bwd_threads } else { max_cube }.min(max_cube);
        let per_group = dim / groups.max(1);
        let min_units = hw.plane_size_max as usize;
        let mut chans = if backward { kc.chans_bwd } else { kc.chans_fwd }
            .unwrap_or(table.chans)
            .clamp(1, 16)
            .min(per_group.max(1))
            .min((cap / min_units).max(1));
        let max_units = if backward {
            kc.max_units_bwd
        } else {
            kc.max_units_fwd
        }
        .map_or(table.max_units, |u| u.max(1).next_power_of_two());
        let max_units = max_units.min(prev_pow2(cap / chans)).max(min_units);
        let mut units = len
            .div_ceil(items)
            .next_power_of_two()
            .clamp(min_units, max_units);
        let smem_len = |chans: usize, units: usize| {
            if plane {
                (chans * units / hw.plane_size_min.max(1) as usize).max(1)
            } else {
                chans * units
            }
        };
        // shared memory (f32 words) of the kernel: scan scratch, unit states, carries and,
        // in the backward, the dB/dC buffers of a chunk per channel (see `device.rs`)
        let stage_bwd = backward && kc.stage_bwd;
        let stage = !backward && kc.stage_fwd.unwrap_or(table.stage);
        let pair = !backward && kc.pair_states.unwrap_or(table.pair) && n_state.is_multiple_of(2);
        let words = |chans: usize, units: usize| {
            let chunk = units * items;
            let red = if backward {
                2 * chans * (chunk + chunk / 32)
                    + if stage_bwd {
                        4 * (chunk + chunk / 32)
                    } else {
                        0
                    }
            } else if stage {
                // two buffers (state parity), two states each with `pair`
                4 * (chunk + chunk / 32) * if pair { 2 } else { 1 }
            } else {
                0
            };
            2 * smem_len(chans, units) + chans * (units + n_state) + red
        };
        // fit the device's shared memory: fewer units per channel first, then fewer channels
        // (at most 48 KiB: more needs an opt-in at launch)
        while words(chans, units) * 4 > hw.max_shared_memory_size.min(48 * 1024) {
            if units > min_units {
                units /= 2;
            } else if chans > 1 {
                chans /= 2;
            } else {
                break;
            }
        }
        let smem_len = smem_len(chans, units);
        // a channel's segment is exactly one plane: scans by shuffles alone (no shared
        // memory, no barriers); needs a fixed plane width
        let one_plane = plane
            && hw.plane_size_min == hw.plane_size_max
            && units == hw.plane_size_max as usize
            && kc.one_plane;
        let cubes = batch * groups * per_group.div_ceil(chans);
        let cx = cubes.min(hw.max_cube_count.0 as usize).max(1);
        let cy = cubes.div_ceil(cx);
        LaunchCfg {
            count: CubeCount::Static(cx as u32, cy as u32, 1),
            units: units as u32,
            chans,
            items,
            smem_len,
            plane,
            lean: kc.lean_sync,
            stage,
            stage_bwd,
            one_plane,
            pair: pair && one_plane,
            keep_b: kc.keep_b,
            red_split: kc.red_split,
            fold: backward && kc.backward_fold,
        }
    }
}

/// The backward's chunk (its launch for these sizes) when the forward, whose units own
/// `fwd_items` steps, can save the states at its starts (a unit's last step ends on each
/// chunk start but the first) and there are several chunks; else 0.
pub(crate) fn save_chunk<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    kc: &KernelConfig,
    dims: Dims,
    dtype: DType,
    fwd_items: usize,
) -> usize {
    let Dims {
        batch,
        dim,
        len,
        state,
        groups,
    } = dims;
    // the vectorised backward's chunk where it is planned (should the tensors' layout send
    // the backward to the scalar kernel after all, the saved states' length differs from
    // what it expects: all chunks are powers of two, so two launches with several chunks
    // never have the same count; it then recomputes them)
    let chunk = match VecCfg::plan(client, kc, dim, groups, len, state, dtype, true) {
        Some(v) => v.seg * v.items,
        None => {
            let bwd = LaunchCfg::new(client, kc, batch, dim, groups, len, state, true, dtype);
            bwd.units as usize * bwd.items
        }
    };
    // a multiple of 16 too: the vectorised forward's units (up to 16 steps) end on it as
    // well, so the length announced before the launch is chosen does not depend on it
    if len > chunk && chunk.is_multiple_of(fwd_items) && chunk.is_multiple_of(16) {
        chunk
    } else {
        0
    }
}

/// The length of the saved chunk-start states of the training forward for these sizes
/// (`None`: nothing saved).
pub(crate) fn saved_len<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    kc: &KernelConfig,
    dims: Dims,
    dtype: DType,
) -> Option<usize> {
    if !kc.save_states {
        return None;
    }
    let Dims {
        batch,
        dim,
        len,
        state,
        groups,
    } = dims;
    let fwd = LaunchCfg::new(client, kc, batch, dim, groups, len, state, false, dtype);
    let chunk = save_chunk(client, kc, dims, dtype, fwd.items);
    (chunk > 0).then(|| batch * dim * len.div_ceil(chunk) * state)
}

fn prev_pow2(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}
