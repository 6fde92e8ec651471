//! `AdamWBackend` for Burn's `CubeBackend`: one kernel, one unit per element, that reads the
//! parameter (or its f32 master copy), gradient and f32 moments once, computes the update in
//! f32 and writes the new parameter, master copy and moments once.

use super::{
    AdamWBackend, AdamWStep, AdamWUpdate, adamw_tensor_ops, cast_to as cast, keeps_master, prim,
    state_dtype, tensor,
};
use burn::tensor::{DType, Tensor};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::{CubeCount, CubeDim};

mod device {
    use cubecl::prelude::*;

    /// Element `pos` of the contiguous tensors (cubes on a 2-D grid). `p`, `g`, `p_out` are in
    /// the parameter's dtype `F`; the moments and the master copy in f32. With `has_master`
    /// the parameter's f32 value is read from `master` and written to `master_out` as well;
    /// without it (an f32 parameter, or a first step) it is `p`, and `master_out` is not
    /// written.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn adamw<F: Float>(
        p: &Tensor<F>,
        g: &Tensor<F>,
        master: &Tensor<f32>,
        m: &Tensor<f32>,
        v: &Tensor<f32>,
        p_out: &mut Tensor<F>,
        master_out: &mut Tensor<f32>,
        m_out: &mut Tensor<f32>,
        v_out: &mut Tensor<f32>,
        lr: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        decay: f32,
        correction_1: f32,
        correction_2: f32,
        #[comptime] has_master: bool,
        #[comptime] write_master: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let cube = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        let pos = cube * CUBE_DIM as usize + UNIT_POS as usize;
        if pos < p.len() {
            let gi = f32::cast_from(g[pos]);
            let mi = beta_1 * m[pos] + (1.0f32 - beta_1) * gi;
            let vi = beta_2 * v[pos] + (1.0f32 - beta_2) * gi * gi;
            let delta = (mi * correction_1) / (f32::sqrt(vi * correction_2) + epsilon);
            let pi = if has_master {
                master[pos]
            } else {
                f32::cast_from(p[pos])
            };
            let pi = pi * decay - lr * delta;
            p_out[pos] = F::cast_from(pi);
            if write_master {
                master_out[pos] = pi;
            }
            m_out[pos] = mi;
            v_out[pos] = vi;
        }
    }
}

type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// Units per cube.
const UNITS: usize = 256;

/// The kernel's update on `CubeBackend`.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AdamWBackend
    for Cb<R, F, I, BT>
{
    fn adamw_step(
        param: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        master: Option<Tensor<Self, 1>>,
        moment_1: Tensor<Self, 1>,
        moment_2: Tensor<Self, 1>,
        step: &AdamWStep,
    ) -> AdamWUpdate<Self> {
        let [n] = param.dims();
        let dtype = param.dtype();
        if state_dtype(dtype) != DType::F32 {
            // f64 parameters: f64 state and arithmetic, as tensor operations
            return adamw_tensor_ops(param, grad, master, moment_1, moment_2, step);
        }
        let grad = cast(grad, dtype);
        let (moment_1, moment_2) = (cast(moment_1, DType::F32), cast(moment_2, DType::F32));
        let master = master.map(|t| cast(t, DType::F32));
        let lens = [
            ("gradient", grad.dims()[0]),
            ("first moment", moment_1.dims()[0]),
            ("second moment", moment_2.dims()[0]),
        ];
        for (what, len) in lens
            .into_iter()
            .chain(master.as_ref().map(|t| ("master copy", t.dims()[0])))
        {
            assert_eq!(
                len, n,
                "AdamW: the {what} has {len} elements, the parameter {n}"
            );
        }
        let write_master = keeps_master(dtype);
        if n == 0 {
            let master =
                write_master.then(|| master.unwrap_or_else(|| cast(param.clone(), DType::F32)));
            return AdamWUpdate {
                param,
                master,
                moment_1,
                moment_2,
            };
        }
        let c = |t: Tensor<Self, 1>| -> CubeTensor<R> { into_contiguous(prim(t)) };
        let has_master = master.is_some();
        let (p, g, m, v) = (c(param), c(grad), c(moment_1), c(moment_2));
        let client = p.client.clone();
        let out = |len: usize, dtype: DType| {
            empty_device_contiguous_dtype(client.clone(), p.device.clone(), [len].into(), dtype)
        };
        // an absent master is not read (nor an unwritten one written): a one-element stand-in
        let master_in = master.map_or_else(|| out(1, DType::F32), c);
        let (p_out, m_out, v_out) = (out(n, dtype), out(n, DType::F32), out(n, DType::F32));
        let master_out = out(if write_master { n } else { 1 }, DType::F32);
        let cubes = n.div_ceil(UNITS);
        let max_x = client.properties().hardware.max_cube_count.0 as usize;
        let cx = cubes.clamp(1, max_x);
        let (c1, c2) = step.corrections();
        // SAFETY: every tensor read or written is contiguous with n elements (the stand-ins
        // are neither read nor written), and the kernel touches only `pos < n`.
        unsafe {
            device::adamw::launch_unchecked::<R>(
                &client,
                CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1),
                CubeDim::new_1d(UNITS as u32),
                p.into_tensor_arg(),
                g.into_tensor_arg(),
                master_in.into_tensor_arg(),
                m.into_tensor_arg(),
                v.into_tensor_arg(),
                p_out.clone().into_tensor_arg(),
                master_out.clone().into_tensor_arg(),
                m_out.clone().into_tensor_arg(),
                v_out.clone().into_tensor_arg(),
                step.lr,
                step.beta_1,
                step.beta_2,
                step.epsilon,
                step.decay(),
                c1,
                c2,
                has_master,
                write_master,
                dtype.into(),
            );
        }
        AdamWUpdate {
            param: tensor(p_out),
            master: write_master.then(|| tensor(master_out)),
            moment_1: tensor(m_out),
            moment_2: tensor(v_out),
        }
    }
}
