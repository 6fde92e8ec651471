//! The cubecl selective-scan kernel for Burn's `CubeBackend` (CUDA, wgpu).
//!
//! Forward and backward kernels run on the device (`MAMBA_SSM_HOST_BACKWARD=1` runs the CPU
//! backward on host copies instead). With this crate's `fusion` feature the same kernels serve
//! Burn's `Fusion<CubeBackend>`. Design and measurements: `docs/kernels.md`.

mod conv;
mod device;
mod vectorised;

pub use conv::{set_conv_backward_splits, set_conv_poison_outputs};

use crate::SelectiveScanBackend;
use crate::input::{Dims, ScanGrads, ScanInputs, ScanOutput};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    ops::numeric::empty_device_dtype, tensor::CubeTensor,
};
use cubecl::features::Plane;
use cubecl::{CubeCount, CubeDim};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

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

/// The launch table, by direction, sequence length and storage width (H200, d_inner 1536,
/// N 16; `docs/lab/kernel-notes.md`). A segment of 32 units is one plane on CUDA, where
/// the scans need no shared memory and no barrier (`one_plane`).
/// - Forward, L <= 128: 4 steps x 32 units (one plane), 4 channels, staged (3.08 ms at
///   L 128 x 512; 4 steps x 32 units without one-plane scans 3.79, 8 steps 6.14).
/// - Forward, L <= 512: 8 steps x 32 units, 4 channels, staged (3.44 ms fp32 at L 512 x 128;
///   4 x 128 units 5.88 with the double-buffered staging, 4.44 in the previous build; 16 steps
///   4.49).
/// - Forward, longer, fp32: 8 steps x 32 units, 4 channels, staged (3.54 / 3.99 ms at
///   L 2048 / 8192; 4 x 256 units, one channel unstaged: 4.67 / 4.96; 8 x 32 one
///   channel unstaged: 5.23 / 5.26), two states per pass (3.37-3.46 / 3.71-3.79 ms against
///   3.56-3.59 / 3.96-4.03 with one; at L <= 512 and in bf16 two states are slower:
///   3.37-3.39 vs 2.97-3.01 ms at L 128 fp32, 4.12-4.22 vs 3.97-3.99 at L 512 bf16). Two-byte storage: 8 x 32, one channel, unstaged
///   (3.78-3.88 / 3.97-4.01 ms; staged with 4 channels 3.98 / 4.56; 4 x 256: 4.99 / 5.05).
/// - Backward, L <= 128: 4 steps x 32 units (one plane), 4 channels (fwd+bwd 12.1 ms at
///   L 128 x 512; previous build 15.5).
/// - Backward, longer: 8 steps x 32 units (one plane), 16 channels (backward alone 10.4 /
///   11.35 / 11.7 ms at L 512 / 2048 / 8192 in fp32, previous build 13.8 / 15.5 / 16.8;
///   16 x 32 with 8 channels 12.1 at L 512; 8 channels 14.4 at L 512; 4 x 32 with 16
///   channels 12.1; two planes (64 units) with 8 channels 13.7 at L 2048). At L 128, 4
///   channels beat 8 and 16 (fwd+bwd 11.9 vs 13.0 / 13.9 ms).
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
/// Default largest backward cube (all channels' units together): 1024 units, which also makes
/// the compiler keep the backward at 64 registers (128 at 512 units, 25% occupancy).
const BWD_THREADS: usize = 1024;

static PLANE_MODE: AtomicU8 = AtomicU8::new(0);
static SAVE_MODE: AtomicU8 = AtomicU8::new(0);
static CHANS_FWD_OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static CHANS_BWD_OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static ITEMS_OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static UNITS_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// Launch shape for tuning, both kernels: `items` steps per unit (1, 2, 4, 8 or 16) and the
/// largest number of units per channel `max_units` (a power of two). `None` restores the
/// default (the launch table, or `MAMBA_SSM_ITEMS_FWD/BWD`, `MAMBA_SSM_UNITS_FWD/BWD`).
/// Channels get `next_pow2(L / items)` units, clamped to [plane width, max_units].
pub fn set_launch_config(items: Option<usize>, max_units: Option<usize>) {
    ITEMS_OVERRIDE.store(items.unwrap_or(0), Ordering::Relaxed);
    UNITS_OVERRIDE.store(max_units.unwrap_or(0), Ordering::Relaxed);
}

/// Channels per cube for the forward and the backward kernel (each 1 to 16; `None` restores
/// the default, or the environment variables `MAMBA_SSM_CHANS_FWD` / `MAMBA_SSM_CHANS_BWD`).
/// For the vectorised kernels the same numbers count planes per cube (a plane holds one
/// channel, or several on short sequences; `MAMBA_SSM_VEC_CHANS` / `_VEC_BWD_CHANS`).
/// The channels of a cube share one (batch, group); the backward sums their dB and dC terms
/// in shared memory before its atomic adds. A cube has at most 256 units per channel and at
/// most 1024 in all (`MAMBA_SSM_BWD_THREADS` lowers that for the backward). Default: the
/// launch table (`default_launch`, measured on the H200): forward 4 with B and C staged in
/// shared memory (1 unstaged for two-byte storage above L = 512); backward 4 up to L = 128,
/// else 16.
pub fn set_channels_per_cube(fwd: Option<usize>, bwd: Option<usize>) {
    CHANS_FWD_OVERRIDE.store(fwd.unwrap_or(0), Ordering::Relaxed);
    CHANS_BWD_OVERRIDE.store(bwd.unwrap_or(0), Ordering::Relaxed);
}

static SEG_FWD_OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static SEG_BWD_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// The largest segment (units per channel, a power of two) of the vectorised forward and
/// backward: below the plane width, `plane / seg` channels share a plane and a channel's
/// sequence runs in more, shorter chunks. `None` restores the default (the environment
/// variables `MAMBA_SSM_VEC_SEG` / `MAMBA_SSM_VEC_BWD_SEG`, else the plane width). Whatever
/// the cap, a segment is no longer than the least power of two whose chunk covers L.
pub fn set_vec_segment(fwd: Option<usize>, bwd: Option<usize>) {
    SEG_FWD_OVERRIDE.store(fwd.unwrap_or(0), Ordering::Relaxed);
    SEG_BWD_OVERRIDE.store(bwd.unwrap_or(0), Ordering::Relaxed);
}

/// A `MAMBA_SSM_*` environment variable, read once per process: every launch consults
/// several of them, and `std::env::var` locks and scans the environment each time (host
/// overhead that shows at batch 1, where a launch takes tens of microseconds).
fn env(name: &str) -> Option<&'static str> {
    static VARS: std::sync::OnceLock<std::collections::HashMap<String, String>> =
        std::sync::OnceLock::new();
    VARS.get_or_init(|| {
        // `vars_os`: `vars` panics on any variable that is not Unicode, ours or not
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("MAMBA_SSM_"))
            .collect()
    })
    .get(name)
    .map(String::as_str)
}

fn env_usize(name: &str) -> Option<usize> {
    env(name).and_then(|v| v.parse().ok())
}

fn chans(backward: bool, table: Launch) -> usize {
    let (o, var, default) = if backward {
        (&CHANS_BWD_OVERRIDE, "MAMBA_SSM_CHANS_BWD", table.chans)
    } else {
        (&CHANS_FWD_OVERRIDE, "MAMBA_SSM_CHANS_FWD", table.chans)
    };
    match o.load(Ordering::Relaxed) {
        0 => env_usize(var).unwrap_or(default),
        k => k,
    }
    .clamp(1, 16)
}

/// Steps per unit: [`set_launch_config`], else `MAMBA_SSM_ITEMS_FWD` / `MAMBA_SSM_ITEMS_BWD`,
/// else the default.
fn launch_items(backward: bool, table: Launch) -> usize {
    let var = if backward {
        "MAMBA_SSM_ITEMS_BWD"
    } else {
        "MAMBA_SSM_ITEMS_FWD"
    };
    match ITEMS_OVERRIDE.load(Ordering::Relaxed) {
        i @ (1 | 2 | 4 | 8 | 16) => i,
        _ => match env_usize(var) {
            Some(i @ (1 | 2 | 4 | 8 | 16)) => i,
            _ => table.items,
        },
    }
}

/// Largest number of units per channel: [`set_launch_config`], else `MAMBA_SSM_UNITS_FWD` /
/// `MAMBA_SSM_UNITS_BWD`, else the default.
fn launch_max_units(backward: bool, table: Launch) -> u32 {
    let var = if backward {
        "MAMBA_SSM_UNITS_BWD"
    } else {
        "MAMBA_SSM_UNITS_FWD"
    };
    match UNITS_OVERRIDE.load(Ordering::Relaxed) {
        0 => env_usize(var).map_or(table.max_units as u32, |u| {
            (u.max(1) as u32).next_power_of_two()
        }),
        u => (u as u32).next_power_of_two(),
    }
}

/// Which cube-wide scan the kernel uses: `None` (default) follows the device's report of
/// plane operations; `Some(true)` forces plane shuffles (lavapipe runs them but does not
/// report them); `Some(false)` forces the shared-memory path. Also read from the environment
/// variable `MAMBA_SSM_PLANE=0|1` when not set here.
pub fn set_plane_mode(mode: Option<bool>) {
    PLANE_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

/// Whether the training forward (`selective_scan_train`, what `Autodiff` runs) saves the
/// states at the backward's chunk starts, so that the backward skips its checkpoint sweep:
/// `None` (default) follows `MAMBA_SSM_SAVE=0|1`, else on.
pub fn set_save_states(mode: Option<bool>) {
    SAVE_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

fn save_states() -> bool {
    match SAVE_MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => env("MAMBA_SSM_SAVE").is_none_or(|v| v != "0"),
    }
}

static PAIR_MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the forward runs two states per pass (interleaved scans, one staging barrier for
/// both) where it can (one plane per channel, even N): `None` (default) follows
/// `MAMBA_SSM_PAIR=0|1`, else the launch table (fp32 above L = 512).
pub fn set_pair_states(mode: Option<bool>) {
    PAIR_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

fn pair_states(table: Launch) -> bool {
    match PAIR_MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => match env("MAMBA_SSM_PAIR") {
            Some("1") => true,
            Some("0") => false,
            _ => table.pair,
        },
    }
}

static FOLD_MODE: AtomicU8 = AtomicU8::new(0);

/// The backward's gradient loop variant: `Some(true)` runs `fold` (the B u term of
/// d delta summed over the states once per step, as u dus, instead of per (step, state); dt u
/// kept in place of u; the reverse composition's product taken from the forward one: four
/// instructions fewer per (step, state)), `Some(false)` the plain loop. `None` (default)
/// runs `fold` unless `MAMBA_SSM_BWD=plain`. On the H200 `fold` took 1.0-3.4% off the
/// forward + backward at L 512-8192 (fp32 and bf16) and was even at L 128 fp32
/// (docs/lab/kernel-notes.md), so it is the default.
pub fn set_backward_fold(mode: Option<bool>) {
    FOLD_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

fn backward_fold() -> bool {
    match FOLD_MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => env("MAMBA_SSM_BWD").is_none_or(|v| v != "plain"),
    }
}

fn use_plane(reported: bool) -> bool {
    match PLANE_MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => match env("MAMBA_SSM_PLANE") {
            Some("1") => true,
            Some("0") => false,
            _ => reported,
        },
    }
}

fn prim<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

/// `t`'s primitive in storage type `dtype` (cast when it differs).
fn as_dtype<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
    dtype: DType,
) -> B::FloatTensorPrimitive {
    if t.dtype() == dtype {
        prim(t)
    } else {
        prim(t.cast(dtype))
    }
}

/// `t` with unit stride along its last dimension (L), copied when it is not. The kernels walk
/// L with consecutive units on consecutive steps, so a strided L (a transposed view, e.g. the
/// gradient of `out_proj`'s input, `[b, L, d]` swapped to `[b, d, L]`) would cost one memory
/// transaction per element instead of one per 32.
fn unit_stride_l<R: CubeRuntime>(t: CubeTensor<R>) -> CubeTensor<R> {
    let rank = t.meta.num_dims();
    if t.meta.shape()[rank - 1] <= 1 || t.meta.strides()[rank - 1] == 1 {
        t
    } else {
        burn_cubecl::kernel::into_contiguous(t)
    }
}

/// The inputs as cube tensors. Absent optional inputs are replaced by `u`: the kernels do
/// not read them (their flags are off), but every launch argument must be a tensor.
struct KernelInputs<R: CubeRuntime> {
    u: CubeTensor<R>,
    delta: CubeTensor<R>,
    a: CubeTensor<R>,
    b: CubeTensor<R>,
    c: CubeTensor<R>,
    d: CubeTensor<R>,
    z: CubeTensor<R>,
    bias: CubeTensor<R>,
    has_d: bool,
    has_z: bool,
    has_bias: bool,
    softplus: bool,
}

impl<R: CubeRuntime> KernelInputs<R> {
    fn new<B: burn::tensor::backend::Backend<FloatTensorPrimitive = CubeTensor<R>>>(
        inputs: ScanInputs<B>,
    ) -> Self {
        let (has_d, has_z, has_bias) = (
            inputs.d.is_some(),
            inputs.z.is_some(),
            inputs.delta_bias.is_some(),
        );
        // the kernels read every per-step input with u's storage type: cast the others (a
        // no-op when the dtypes agree); the per-channel weights A, D and delta_bias are read
        // as f32 whatever the activations' type, as the official kernel does (f32 weights
        // with bf16 activations need no cast and lose no precision)
        let dtype = inputs.u.dtype();
        let u = unit_stride_l(prim(inputs.u));
        let a = as_dtype(inputs.a, DType::F32);
        KernelInputs {
            delta: unit_stride_l(as_dtype(inputs.delta, dtype)),
            b: unit_stride_l(as_dtype(inputs.b, dtype)),
            c: unit_stride_l(as_dtype(inputs.c, dtype)),
            // an absent D or delta_bias is never read: bound to A (an f32 tensor)
            d: inputs
                .d
                .map(|t| as_dtype(t, DType::F32))
                .unwrap_or_else(|| a.clone()),
            z: inputs
                .z
                .map(|t| unit_stride_l(as_dtype(t, dtype)))
                .unwrap_or_else(|| u.clone()),
            bias: inputs
                .delta_bias
                .map(|t| as_dtype(t, DType::F32))
                .unwrap_or_else(|| a.clone()),
            a,
            u,
            has_d,
            has_z,
            has_bias,
            softplus: inputs.delta_softplus,
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SelectiveScanBackend
    for CubeBackend<R, F, I, BT>
{
    fn selective_scan(inputs: ScanInputs<Self>, return_last_state: bool) -> ScanOutput<Self> {
        forward(inputs, return_last_state, false).0
    }

    fn selective_scan_train(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
    ) -> (ScanOutput<Self>, Option<Tensor<Self, 1>>) {
        forward(inputs, return_last_state, save_states())
    }

    fn selective_scan_backward(inputs: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        backward(inputs, dy, None)
    }

    fn selective_scan_saved_len(device: &R::Device, dims: Dims, dtype: DType) -> Option<usize> {
        if !save_states() {
            return None;
        }
        let client = R::client(device);
        let Dims {
            batch,
            dim,
            len,
            state,
            groups,
        } = dims;
        let fwd = LaunchCfg::new(&client, batch, dim, groups, len, state, false, dtype);
        let chunk = save_chunk(&client, dims, dtype, fwd.items);
        (chunk > 0).then(|| batch * dim * len.div_ceil(chunk) * state)
    }

    fn selective_scan_backward_saved(
        inputs: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
    ) -> ScanGrads<Self> {
        backward(inputs, dy, saved)
    }

    fn causal_conv1d(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
    ) -> Tensor<Self, 3> {
        conv::forward(x, weight, bias, silu)
    }

    fn causal_conv1d_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        dy: Tensor<Self, 3>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 2>, Option<Tensor<Self, 1>>) {
        conv::backward(x, weight, bias, silu, dy)
    }
}

/// The backward's chunk (its launch for these sizes) when the forward, whose units own
/// `fwd_items` steps, can save the states at its starts (a unit's last step ends on each
/// chunk start but the first) and there are several chunks; else 0.
fn save_chunk<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
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
    let chunk = match VecCfg::plan(client, dim, groups, len, state, dtype, true) {
        Some(v) => v.seg * v.items,
        None => {
            let bwd = LaunchCfg::new(client, batch, dim, groups, len, state, true, dtype);
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

type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;

static SCAN_POISON: AtomicBool = AtomicBool::new(false);

/// Testing aid: when on, the scan kernels' outputs (y, the last state, the saved chunk-start
/// states, du, d delta, dz) are filled with NaN before the launch, so that an element a kernel
/// fails to write shows in the results (the dA / dB / dC / dD / d delta_bias accumulators
/// start from zero either way). Off by default.
pub fn set_scan_poison_outputs(on: bool) {
    SCAN_POISON.store(on, Ordering::Relaxed);
}

/// A fresh output of the scan kernels (written through its strides): uninitialised, or
/// NaN-filled under [`set_scan_poison_outputs`].
fn scan_output<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    like: &CubeTensor<R>,
    shape: [usize; D],
    dtype: DType,
) -> CubeTensor<R> {
    if SCAN_POISON.load(Ordering::Relaxed) {
        prim(Tensor::<Cb<R, F, I, BT>, D>::full(
            shape,
            f32::NAN,
            (&like.device, dtype),
        ))
    } else {
        empty_device_dtype(
            like.client.clone(),
            like.device.clone(),
            shape.into(),
            dtype,
        )
    }
}

/// The forward's output and its saved chunk-start states.
type Forward<B> = (ScanOutput<B>, Option<Tensor<B, 1>>);

/// The forward kernel; with `save`, also the states at the backward's chunk starts (f32,
/// `[batch x d_inner, chunks, N]` flattened; `None` when the sequence is one backward chunk).
fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    inputs: ScanInputs<Cb<R, F, I, BT>>,
    return_last_state: bool,
    save: bool,
) -> Forward<Cb<R, F, I, BT>> {
    let [batch, dim, len] = inputs.u.dims();
    let n_state = inputs.a.dims()[1];
    let KernelInputs {
        u,
        delta,
        a,
        b,
        c,
        d,
        z,
        bias,
        has_d,
        has_z,
        has_bias,
        softplus,
    } = KernelInputs::new(inputs);

    let groups = b.meta.shape()[1];
    let client = u.client.clone();
    let dtype = u.dtype;
    let cfg = LaunchCfg::new(&client, batch, dim, groups, len, n_state, false, dtype);
    let y = scan_output::<R, F, I, BT, 3>(&u, [batch, dim, len], dtype);
    let vcfg = VecCfg::new(
        &client,
        dim,
        groups,
        len,
        n_state,
        dtype,
        false,
        [&u, &delta, &z, &b, &c, &y],
    );
    let save_chunk = if save {
        let dims = Dims {
            batch,
            dim,
            len,
            state: n_state,
            groups,
        };
        save_chunk(
            &client,
            dims,
            dtype,
            vcfg.as_ref().map_or(cfg.items, |v| v.items),
        )
    } else {
        0
    };
    let ckpt = scan_output::<R, F, I, BT, 1>(
        &u,
        [if save_chunk > 0 {
            batch * dim * len.div_ceil(save_chunk) * n_state
        } else {
            1
        }],
        DType::F32,
    );
    let last = scan_output::<R, F, I, BT, 3>(&u, [batch, dim, n_state], dtype);
    if let Some(v) = vcfg {
        VEC_LAUNCHES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for the scalar kernel below; the vector loads are in bounds and aligned
        // because `VecCfg::new` checked L, the strides and the handles' offsets against the
        // vector width
        unsafe {
            vectorised::scan_fwd_vec::launch_unchecked::<R>(
                &client,
                v.count(&client, batch, dim, groups),
                CubeDim::new_1d((v.seg * v.chans) as u32),
                v.vec,
                u.into_tensor_arg(),
                delta.into_tensor_arg(),
                a.into_tensor_arg(),
                b.into_tensor_arg(),
                c.into_tensor_arg(),
                d.into_tensor_arg(),
                z.into_tensor_arg(),
                bias.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                last.clone().into_tensor_arg(),
                ckpt.clone().into_tensor_arg(),
                n_state,
                v.items,
                v.vec,
                v.seg,
                v.chans,
                has_d,
                has_z,
                has_bias,
                softplus,
                save_chunk,
                v.prefetch.unwrap_or(dtype.size() == 4 || save_chunk > 0),
                v.batch_inner,
                v.all_active(dim, groups),
                dtype.into(),
            );
        }
        return (
            ScanOutput {
                y: Tensor::from_primitive(TensorPrimitive::Float(y)),
                last_state: return_last_state
                    .then(|| Tensor::from_primitive(TensorPrimitive::Float(last))),
            },
            (save_chunk > 0).then(|| Tensor::from_primitive(TensorPrimitive::Float(ckpt))),
        );
    }
    // SAFETY: every index the kernel forms is in bounds for tensors of the validated shapes
    // (steps past L are masked, absent optional inputs are never read), so the
    // bounds-checked launch is not needed (it clamps every read and guards every write).
    unsafe {
        device::scan_fwd::launch_unchecked::<R>(
            &client,
            cfg.count.clone(),
            CubeDim::new_1d(cfg.units * cfg.chans as u32),
            u.into_tensor_arg(),
            delta.into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            z.into_tensor_arg(),
            bias.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            last.clone().into_tensor_arg(),
            ckpt.clone().into_tensor_arg(),
            n_state,
            cfg.items,
            cfg.units as usize,
            cfg.chans,
            cfg.smem_len,
            has_d,
            has_z,
            has_bias,
            softplus,
            cfg.plane,
            cfg.lean,
            cfg.stage,
            cfg.one_plane,
            save_chunk,
            cfg.pair,
            dtype.into(),
        );
    }
    (
        ScanOutput {
            y: Tensor::from_primitive(TensorPrimitive::Float(y)),
            last_state: return_last_state
                .then(|| Tensor::from_primitive(TensorPrimitive::Float(last))),
        },
        (save_chunk > 0).then(|| Tensor::from_primitive(TensorPrimitive::Float(ckpt))),
    )
}

/// The backward kernel; `saved`: the states at its chunk starts from [`forward`] (used when
/// its size matches this launch's chunks, else recomputed by the kernel's first pass).
fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    inputs: ScanInputs<Cb<R, F, I, BT>>,
    dy: Tensor<Cb<R, F, I, BT>, 3>,
    saved: Option<Tensor<Cb<R, F, I, BT>, 1>>,
) -> ScanGrads<Cb<R, F, I, BT>> {
    if env("MAMBA_SSM_HOST_BACKWARD").is_some_and(|v| v == "1") {
        return crate::host::selective_scan_backward(inputs, dy);
    }
    let [batch, dim, len] = inputs.u.dims();
    let [_, groups, n_state, _] = inputs.b.dims();
    let device = inputs.u.device();
    let dtype = inputs.u.dtype();
    // gradients come back in their input's dtype
    let dt_delta = inputs.delta.dtype();
    let dt_a = inputs.a.dtype();
    let dt_b = inputs.b.dtype();
    let dt_c = inputs.c.dtype();
    let dt_d = inputs.d.as_ref().map_or(dtype, |t| t.dtype());
    let dt_z = inputs.z.as_ref().map_or(dtype, |t| t.dtype());
    let dt_bias = inputs.delta_bias.as_ref().map_or(dtype, |t| t.dtype());
    let KernelInputs {
        u,
        delta,
        a,
        b,
        c,
        d,
        z,
        bias,
        has_d,
        has_z,
        has_bias,
        softplus,
    } = KernelInputs::new(inputs);
    let dy: CubeTensor<R> = unit_stride_l(as_dtype(dy, dtype));

    let client = u.client.clone();
    let cfg = LaunchCfg::new(&client, batch, dim, groups, len, n_state, true, dtype);
    let grad = |shape: [usize; 3]| scan_output::<R, F, I, BT, 3>(&u, shape, dtype);
    let (du, ddelta) = (grad([batch, dim, len]), grad([batch, dim, len]));
    let dz = if has_z {
        grad([batch, dim, len])
    } else {
        // unused, but bound as an array of vectors by the vectorised backward: at least one
        // vector of the widest kind (wgpu checks a binding's size against one element)
        grad([1, 1, 16])
    };
    let vcfg = VecCfg::new(
        &client,
        dim,
        groups,
        len,
        n_state,
        dtype,
        true,
        [
            &u,
            &delta,
            &b,
            &c,
            &dy,
            &du,
            &ddelta,
            &z,
            if has_z { &dz } else { &du },
        ],
    );
    // f32 accumulators for the atomic adds, zeroed: two fills instead of five. dB and dC
    // share one buffer (dB at 0, dC at the aligned offset after it, to the buffer's end: both
    // slices are views whatever the sizes); dA, dD and d delta_bias another (views when
    // d_inner is a multiple of the device's alignment in floats, as in every Mamba model,
    // else Burn's slice copies them: still zeros). Apart so that the small per-channel
    // gradients, which live until the optimizer step, do not keep dB / dC's memory alive.
    let align = (client.properties().memory.alignment as usize / 4).max(1);
    let zeroed = |parts: &[usize]| {
        let total: usize = parts[..parts.len() - 1]
            .iter()
            .map(|p| p.next_multiple_of(align))
            .sum::<usize>()
            + parts[parts.len() - 1];
        let zeros = Tensor::<Cb<R, F, I, BT>, 1>::zeros([total], (&device, DType::F32));
        let mut at = 0;
        parts
            .iter()
            .map(|&p| {
                let t = zeros.clone().slice(at..at + p);
                at += p.next_multiple_of(align);
                t
            })
            .collect::<Vec<_>>()
    };
    let bc_len = batch * groups * n_state * len;
    let [db, dc]: [Tensor<Cb<R, F, I, BT>, 1>; 2] = zeroed(&[bc_len, bc_len]).try_into().unwrap();
    let [da, dd, dbias]: [Tensor<Cb<R, F, I, BT>, 1>; 3] =
        zeroed(&[dim * n_state, dim, dim]).try_into().unwrap();
    let da: CubeTensor<R> = prim(da.reshape([dim, n_state]));
    let db: CubeTensor<R> = prim(db.reshape([batch, groups, n_state, len]));
    let dc: CubeTensor<R> = prim(dc.reshape([batch, groups, n_state, len]));
    let dd: CubeTensor<R> = prim(dd);
    let dbias: CubeTensor<R> = prim(dbias);
    // the vectorised backward indexes dB / dC with unit stride along L (zeros tensors of
    // ours, so always; checked all the same)
    let vcfg = vcfg.filter(|_| db.meta.strides()[3] == 1 && dc.meta.strides()[3] == 1);
    let chunks = len.div_ceil(
        vcfg.as_ref()
            .map_or(cfg.units as usize * cfg.items, |v| v.seg * v.items),
    );
    // chunk-start states: from the forward when it saved them for this chunk size
    let ck_len = batch * dim * chunks * n_state;
    let (ckpt, saved) = match saved {
        Some(t) if chunks > 1 && t.dims()[0] == ck_len && t.dtype() == DType::F32 => {
            (prim(t), true)
        }
        _ => (
            scan_output::<R, F, I, BT, 1>(&u, [ck_len.max(1)], DType::F32),
            false,
        ),
    };
    if let Some(v) = vcfg {
        VEC_BWD_LAUNCHES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for the scalar kernel below; the vector accesses are in bounds and
        // aligned because `VecCfg::new` checked L, the strides and the handles' offsets
        unsafe {
            vectorised::scan_bwd_vec::launch_unchecked::<R>(
                &client,
                v.count(&client, batch, dim, groups),
                CubeDim::new_1d((v.seg * v.chans) as u32),
                v.vec,
                u.into_tensor_arg(),
                delta.into_tensor_arg(),
                a.into_tensor_arg(),
                b.into_tensor_arg(),
                c.into_tensor_arg(),
                d.into_tensor_arg(),
                z.into_tensor_arg(),
                bias.into_tensor_arg(),
                dy.into_tensor_arg(),
                du.clone().into_tensor_arg(),
                ddelta.clone().into_tensor_arg(),
                dz.clone().into_tensor_arg(),
                da.clone().into_tensor_arg(),
                db.clone().into_tensor_arg(),
                dc.clone().into_tensor_arg(),
                dd.clone().into_tensor_arg(),
                dbias.clone().into_tensor_arg(),
                ckpt.into_tensor_arg(),
                n_state,
                v.items,
                v.vec,
                v.seg,
                v.chans,
                has_d,
                has_z,
                has_bias,
                softplus,
                saved,
                v.cube_sum,
                v.batch_inner,
                v.all_active(dim, groups),
                dtype.into(),
            );
        }
    } else {
        // SAFETY: every index the kernel forms is in bounds for tensors of the validated
        // shapes (steps past L are masked, absent optional inputs are never read), so the
        // bounds-checked launch is not needed (it clamps every read and guards every write).
        unsafe {
            device::scan_bwd::launch_unchecked::<R>(
                &client,
                cfg.count.clone(),
                CubeDim::new_1d(cfg.units * cfg.chans as u32),
                u.into_tensor_arg(),
                delta.into_tensor_arg(),
                a.into_tensor_arg(),
                b.into_tensor_arg(),
                c.into_tensor_arg(),
                d.into_tensor_arg(),
                z.into_tensor_arg(),
                bias.into_tensor_arg(),
                dy.into_tensor_arg(),
                du.clone().into_tensor_arg(),
                ddelta.clone().into_tensor_arg(),
                dz.clone().into_tensor_arg(),
                da.clone().into_tensor_arg(),
                db.clone().into_tensor_arg(),
                dc.clone().into_tensor_arg(),
                dd.clone().into_tensor_arg(),
                dbias.clone().into_tensor_arg(),
                ckpt.into_tensor_arg(),
                n_state,
                cfg.items,
                cfg.units as usize,
                cfg.chans,
                cfg.smem_len,
                has_d,
                has_z,
                has_bias,
                softplus,
                cfg.plane,
                cfg.lean,
                cfg.keep_b,
                cfg.stage_bwd,
                cfg.one_plane,
                saved,
                cfg.red_split,
                cfg.fold,
                dtype.into(),
            );
        }
    }
    fn back<B: burn::tensor::backend::Backend, const D: usize>(
        x: B::FloatTensorPrimitive,
        dtype: DType,
    ) -> Tensor<B, D> {
        let t = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(x));
        if t.dtype() == dtype { t } else { t.cast(dtype) }
    }
    ScanGrads {
        du: back(du, dtype),
        ddelta: back(ddelta, dt_delta),
        da: back(da, dt_a),
        db: back(db, dt_b),
        dc: back(dc, dt_c),
        dd: has_d.then(|| back(dd, dt_d)),
        dz: has_z.then(|| back(dz, dt_z)),
        ddelta_bias: has_bias.then(|| back(dbias, dt_bias)),
    }
}

static VEC_MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the forward runs the vectorised kernel (`vectorised.rs`: one plane, or for short
/// sequences a segment of one, per channel, `Vector` loads, no shared-memory staging, no
/// barrier) where it applies: `Some(true)` / `Some(false)`; `None` (default) follows
/// `MAMBA_SSM_VEC=0|1`, else on. It applies when plane shuffles are used and the plane width
/// is fixed, L is a multiple of the vector width, and every per-step tensor has unit stride
/// along L, other strides that are multiples of the vector width and an aligned start; else
/// the scalar kernel (`scan_fwd`) runs. Launch: one plane per cube (`MAMBA_SSM_VEC_CHANS`),
/// 8 steps per unit (`MAMBA_SSM_VEC_ITEMS`), segments as in [`set_vec_segment`], cubes in
/// batch order on short segments (`MAMBA_SSM_VEC_ORDER`), 16-byte vectors on CUDA
/// (`MAMBA_SSM_VEC_WIDTH`), 4 elements on wgpu. On the H200 (docs/lab/kernel-notes.md)
/// it took the fp32 forward from 3.52 to 1.95 ms and the bf16 one from 3.98 to 1.78 ms at
/// L 512 x 128 (d_inner 1536, N 16).
pub fn set_vec_forward(mode: Option<bool>) {
    VEC_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

static VEC_PREFETCH: AtomicU8 = AtomicU8::new(0);
static VEC_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// Whether the vectorised forward loads B_{n+1} while state n computes (`None`: follows
/// `MAMBA_SSM_VEC_PREFETCH=0|1`, else on for 4-byte storage and for the training forward).
/// On the H200 (three interleaved runs, 65,536 tokens, d_inner 1536) it took
/// the fp32 forward down 8-22% (L 512: 2.03-2.12 -> 1.85-1.91 ms; L 8192: 2.66-2.79 ->
/// 2.07-2.13) and bf16 fwd+bwd down 0-5%, left the bf16 inference forward within the noise
/// (+5% at d_inner 2048) and fp32 fwd+bwd unchanged.
pub fn set_vec_prefetch(mode: Option<bool>) {
    VEC_PREFETCH.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

/// How many times this process has launched the vectorised forward (to check which kernel
/// ran: the scalar one runs wherever the vectorised one does not apply).
pub fn vec_forward_launches() -> usize {
    VEC_LAUNCHES.load(Ordering::Relaxed)
}

static VEC_BWD_MODE: AtomicU8 = AtomicU8::new(0);
static VEC_BWD_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// Whether the backward runs the vectorised kernel (`vectorised.rs`, `scan_bwd_vec`: one plane
/// or segment per channel, `Vector` loads, dB / dC added by coalesced atomics after a sum over
/// the cube's channels) where it applies (the conditions of [`set_vec_forward`]):
/// `Some(true)` / `Some(false)`; `None` (default) follows `MAMBA_SSM_VEC_BWD=0|1`, else on.
/// Launch: up to L 512 two planes per cube in channel order, above it one plane in batch
/// order (`MAMBA_SSM_VEC_BWD_CHANS`, `MAMBA_SSM_VEC_ORDER`, `MAMBA_SSM_VEC_CUBE_SUM`). On the
/// H200 (docs/lab/kernel-notes.md) fwd+bwd at L 512 x 128 went from 11.1 (scalar)
/// to 7.2 ms (fp32) and from 9.9 to 7.2 ms (bf16), at L 128 x 512 from 11.4 to 7.2 / 11.7 to
/// 6.6 ms.
pub fn set_vec_backward(mode: Option<bool>) {
    VEC_BWD_MODE.store(
        match mode {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

/// How many times this process has launched the vectorised backward.
pub fn vec_backward_launches() -> usize {
    VEC_BWD_LAUNCHES.load(Ordering::Relaxed)
}

/// Launch of the vectorised forward or backward.
struct VecCfg {
    /// steps per unit (a multiple of `vec`)
    items: usize,
    /// elements per vector load
    vec: usize,
    /// units per channel (a segment): the plane width, or for short sequences the least
    /// power of two whose chunk (`seg` x `items` steps) covers L, so that `plane / seg`
    /// channels share a plane (`MAMBA_SSM_VEC_SEG` caps it)
    seg: usize,
    /// channels per cube (a multiple of `plane / seg`: whole planes)
    chans: usize,
    /// backward with several channels per cube: their dB / dC terms summed in shared
    /// memory before the atomic adds (`MAMBA_SSM_VEC_CUBE_SUM=0|1`, default on)
    cube_sum: bool,
    /// cubes in (group, channel block, batch) order instead of (batch, group, channel
    /// block) (`MAMBA_SSM_VEC_ORDER=batch|channel`; default: batch for the backward, whose
    /// atomics then spread over many dB / dC rows, channel for the forward)
    batch_inner: bool,
    /// forward: load B_{n+1} during state n (`MAMBA_SSM_VEC_PREFETCH=0|1`; `None`: the
    /// default, see [`set_vec_prefetch`])
    prefetch: Option<bool>,
}

impl VecCfg {
    /// The launch the settings and the device give for these sizes (before the tensors'
    /// layout is checked), `None` where the vectorised kernel is off or cannot run.
    #[allow(clippy::too_many_arguments)]
    fn plan<R: CubeRuntime>(
        client: &cubecl::client::ComputeClient<R>,
        dim: usize,
        groups: usize,
        len: usize,
        n_state: usize,
        dtype: DType,
        backward: bool,
    ) -> Option<Self> {
        // on by default at every L since the short-sequence segments; before,
        // with 4 steps per unit on a whole plane, the scalar backward was faster at L 128
        let (mode, var, default) = if backward {
            (&VEC_BWD_MODE, "MAMBA_SSM_VEC_BWD", true)
        } else {
            (&VEC_MODE, "MAMBA_SSM_VEC", true)
        };
        let on = match mode.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => env(var).map_or(default, |v| v == "1"),
        };
        let props = client.properties();
        let hw = &props.hardware;
        let plane = use_plane(props.features.plane.contains(Plane::Ops));
        let lanes = hw.plane_size_max as usize;
        if !on || !plane || hw.plane_size_min != hw.plane_size_max || !lanes.is_power_of_two() {
            return None;
        }
        let elem = dtype.size();
        // 8 steps per unit at every L: short sequences get short segments instead of fewer
        // steps per unit (before, 4 steps up to L 128 on a whole plane)
        let table_items = 8;
        let items_var = if backward {
            "MAMBA_SSM_VEC_BWD_ITEMS"
        } else {
            "MAMBA_SSM_VEC_ITEMS"
        };
        let items = match ITEMS_OVERRIDE.load(Ordering::Relaxed) {
            i @ (1 | 2 | 4 | 8 | 16) => i,
            _ => match env_usize(items_var) {
                Some(i @ (1 | 2 | 4 | 8 | 16)) => i,
                _ => table_items,
            },
        };
        // 16-byte vectors, at most a unit's steps (bf16 at L <= 128: 4 x 2 bytes, so that
        // 32 units of 4 steps cover L = 128); WGSL has no vectors of more than 4 elements
        let wide = R::name(client).contains("cuda");
        let vec = env_usize("MAMBA_SSM_VEC_WIDTH")
            .filter(|v| v.is_power_of_two() && *v * elem <= 16 && (wide || *v <= 4))
            .unwrap_or(if wide { (16 / elem).min(items) } else { 4 });
        let items = items.max(vec);
        if !len.is_multiple_of(vec) {
            return None;
        }
        // the segment: the least power of two of units whose chunk covers L, at most a plane
        // (and at most the cap that the settings give)
        let (o, seg_var) = if backward {
            (&SEG_BWD_OVERRIDE, "MAMBA_SSM_VEC_BWD_SEG")
        } else {
            (&SEG_FWD_OVERRIDE, "MAMBA_SSM_VEC_SEG")
        };
        let cap = match o.load(Ordering::Relaxed) {
            0 => env_usize(seg_var),
            k => Some(k),
        }
        .filter(|s| s.is_power_of_two())
        .unwrap_or(lanes);
        let seg = len.div_ceil(items).next_power_of_two().min(lanes).min(cap);
        let per_plane = lanes / seg;
        let per_group = dim / groups.max(1);
        let (o, chans_var) = if backward {
            (&CHANS_BWD_OVERRIDE, "MAMBA_SSM_VEC_BWD_CHANS")
        } else {
            (&CHANS_FWD_OVERRIDE, "MAMBA_SSM_VEC_CHANS")
        };
        // planes per cube
        let mut planes = match o.load(Ordering::Relaxed) {
            // backward up to L 512: two planes, their dB / dC terms summed per cube
            // (`cube_sum`); longer: one plane (H200, docs/lab/kernel-notes.md)
            0 => env_usize(chans_var).unwrap_or(if backward && len <= 512 { 2 } else { 1 }),
            k => k,
        }
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
            cube_sum: env("MAMBA_SSM_VEC_CUBE_SUM").is_none_or(|v| v != "0")
                && items.is_multiple_of(chans),
            batch_inner: match env("MAMBA_SSM_VEC_ORDER") {
                Some("batch") => true,
                Some("channel") => false,
                // measured best on the H200: the backward in batch order above L 512 (one
                // plane per cube: its atomics otherwise pile onto one batch row's dB / dC),
                // in channel order up to it (two planes summed per cube); the forward in
                // batch order on short segments (L <= 128 on CUDA)
                _ => {
                    if backward {
                        len > 512
                    } else {
                        seg < lanes
                    }
                }
            },
            prefetch: match VEC_PREFETCH.load(Ordering::Relaxed) {
                1 => Some(true),
                2 => Some(false),
                _ => match env("MAMBA_SSM_VEC_PREFETCH") {
                    Some("1") => Some(true),
                    Some("0") => Some(false),
                    _ => None,
                },
            },
        })
    }

    /// [`VecCfg::plan`], if the tensors fit the vector loads: unit stride along L, the other
    /// strides multiples of the vector width, starts aligned to a vector.
    #[allow(clippy::too_many_arguments)]
    fn new<R: CubeRuntime, const K: usize>(
        client: &cubecl::client::ComputeClient<R>,
        dim: usize,
        groups: usize,
        len: usize,
        n_state: usize,
        dtype: DType,
        backward: bool,
        tensors: [&CubeTensor<R>; K],
    ) -> Option<Self> {
        let cfg = Self::plan(client, dim, groups, len, n_state, dtype, backward)?;
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
    /// time (the two-plane backward: 158 registers instead of 168, no measurable change in
    /// time; ncu on the H200).
    fn all_active(&self, dim: usize, groups: usize) -> bool {
        (dim / groups.max(1)).is_multiple_of(self.chans)
    }

    /// Cube count: one cube per (batch, group, block of `chans` channels).
    fn count<R: CubeRuntime>(
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

/// Launch shape of the forward and backward kernels.
struct LaunchCfg {
    count: CubeCount,
    /// units per channel
    units: u32,
    /// channels per cube
    chans: usize,
    items: usize,
    smem_len: usize,
    plane: bool,
    /// drop the barriers that other barriers already cover (`MAMBA_SSM_LEAN_SYNC=0` keeps them)
    lean: bool,
    /// forward: stage B and C of a chunk in shared memory, once per cube (`MAMBA_SSM_STAGE=0|1`
    /// overrides the table)
    stage: bool,
    /// backward: keep B_t in registers from the recompute for the gradient loop instead of
    /// loading it again (default; `MAMBA_SSM_KEEP_B=0` reloads; 3-7% faster fwd+bwd on the H200)
    keep_b: bool,
    /// backward: B and C staged in shared memory, double-buffered (default;
    /// `MAMBA_SSM_STAGE_BWD=0` turns it off; 3-13% faster fwd+bwd)
    stage_bwd: bool,
    /// one plane per channel: cube scans by plane shuffles only (`MAMBA_SSM_ONE_PLANE=0` turns
    /// it off)
    one_plane: bool,
    /// backward: the dB and dC sums over channels split between all units of the cube (dB
    /// by one half, dC by the other) instead of both by the first `chunk` units
    /// (`MAMBA_SSM_RED_SPLIT=0|1`)
    red_split: bool,
    /// backward: the `fold` gradient loop (the default; `MAMBA_SSM_BWD=plain` turns it off,
    /// [`set_backward_fold`])
    fold: bool,
    /// forward: two states per pass (one-plane launches with an even N only;
    /// `MAMBA_SSM_PAIR=0|1`, [`set_pair_states`])
    pair: bool,
}

impl LaunchCfg {
    #[allow(clippy::too_many_arguments)]
    fn new<R: CubeRuntime>(
        client: &cubecl::client::ComputeClient<R>,
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
        let plane = use_plane(props.features.plane.contains(Plane::Ops));
        // a 1-D cube (CUDA derives plane indices from x): `chans` segments, each a power of two
        // of full planes
        let table = default_launch(backward, len, dtype.size() == 2);
        let items = launch_items(backward, table);
        let max_cube = hw.max_units_per_cube.min(hw.max_cube_dim.0) as usize;
        let cap = if backward {
            env_usize("MAMBA_SSM_BWD_THREADS").unwrap_or(BWD_THREADS)
        } else {
            max_cube
        }
        .min(max_cube);
        let per_group = dim / groups.max(1);
        let min_units = hw.plane_size_max as usize;
        let mut chans = chans(backward, table)
            .min(per_group.max(1))
            .min((cap / min_units).max(1));
        let max_units = (launch_max_units(backward, table) as usize)
            .min(prev_pow2(cap / chans))
            .max(min_units);
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
        let stage_bwd_env = backward && env("MAMBA_SSM_STAGE_BWD").is_none_or(|v| v != "0");
        let stage = !backward
            && match env("MAMBA_SSM_STAGE") {
                Some("1") => true,
                Some("0") => false,
                _ => table.stage,
            };
        let pair_env = !backward && pair_states(table) && n_state.is_multiple_of(2);
        let words = |chans: usize, units: usize| {
            let chunk = units * items;
            let red = if backward {
                2 * chans * (chunk + chunk / 32)
                    + if stage_bwd_env {
                        4 * (chunk + chunk / 32)
                    } else {
                        0
                    }
            } else if stage {
                // two buffers (state parity), two states each with `pair`
                4 * (chunk + chunk / 32) * if pair_env { 2 } else { 1 }
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
        let one_plane = plane
            && hw.plane_size_min == hw.plane_size_max
            && units == hw.plane_size_max as usize
            && env("MAMBA_SSM_ONE_PLANE").is_none_or(|v| v != "0");
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
            lean: env("MAMBA_SSM_LEAN_SYNC").is_none_or(|v| v != "0"),
            stage,
            stage_bwd: stage_bwd_env,
            // a channel's segment is exactly one plane: scans by shuffles alone (no shared
            // memory, no barriers); needs a fixed plane width
            one_plane,
            pair: pair_env && one_plane,
            keep_b: env("MAMBA_SSM_KEEP_B").is_none_or(|v| v != "0"),
            red_split: env("MAMBA_SSM_RED_SPLIT").is_some_and(|v| v == "1"),
            fold: backward && backward_fold(),
        }
    }
}

fn prev_pow2(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}
