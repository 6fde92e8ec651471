//! `MatmulBackend` for Burn's `CubeBackend`: the named cubek kernel, launched as Burn launches
//! its own (same operand bindings, output allocation and element types: f32 accumulation for
//! f16 / bf16 outputs).

use super::{MatmulBackend, MatmulError, MatmulKernel, split_k_slices};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    kernel::matmul::init_matmul_output, tensor::CubeTensor,
};
use cubek::matmul::{
    components::tile::TileMatmulKind,
    definition::{MatmulElems, MatmulGlobalElems},
    launch::{Strategy, launch_ref},
    routines::{
        BlueprintStrategy, double_buffering::DoubleBufferingArgs, simple::SimpleArgs,
        simple_unit::SimpleUnitSelectionArgs,
    },
};
use cubek::std::InputBinding;

/// cubek's strategy for a named kernel (`None`: Burn's product).
fn strategy(kernel: MatmulKernel) -> Option<Strategy> {
    let simple = |tile_matmul| SimpleArgs {
        multi_rows: true,
        tile_matmul,
    };
    Some(match kernel {
        MatmulKernel::Auto | MatmulKernel::Burn => return None,
        MatmulKernel::TmaMma => {
            Strategy::SimpleTmaMma(BlueprintStrategy::Inferred(simple(TileMatmulKind::Mma)))
        }
        MatmulKernel::TmaCmma => {
            Strategy::SimpleTmaCmma(BlueprintStrategy::Inferred(simple(TileMatmulKind::Cmma)))
        }
        MatmulKernel::SpecializedTmaMma => {
            Strategy::SpecializedTmaMma(BlueprintStrategy::Inferred(().into()))
        }
        MatmulKernel::DoubleCyclicMma => {
            Strategy::DoubleCyclicMma(BlueprintStrategy::Inferred(DoubleBufferingArgs {
                specialized: false,
                tile_matmul: TileMatmulKind::Mma,
            }))
        }
        MatmulKernel::CyclicMma => {
            Strategy::SimpleCyclicMma(BlueprintStrategy::Inferred(simple(TileMatmulKind::Mma)))
        }
        MatmulKernel::Unit => Strategy::SimpleUnit(BlueprintStrategy::Inferred(
            SimpleUnitSelectionArgs::default(),
        )),
    })
}

fn launch<R: CubeRuntime>(
    strategy: &Strategy,
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
    out_dtype: DType,
) -> Result<CubeTensor<R>, String> {
    let dtype = lhs.dtype;
    let out = init_matmul_output(&lhs, &rhs, out_dtype);
    let mut elems = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: dtype.into(),
        rhs: dtype.into(),
        out: out_dtype.into(),
    });
    let client = out.client.clone();
    launch_ref(
        strategy,
        &client,
        InputBinding::new(lhs.binding(), dtype.into()),
        InputBinding::new(rhs.binding(), dtype.into()),
        out.clone().binding(),
        &mut elems,
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

/// Whether the Tensor Memory Accelerator can load `t`: row-major or transposed matrices whose
/// start, row stride and batch strides are multiples of 16 bytes (cubek checks none of this;
/// Burn's autotune never offers its TMA kernels otherwise).
fn tma_ok<R: CubeRuntime>(t: &CubeTensor<R>) -> bool {
    let strides = t.meta.strides();
    let rank = strides.len();
    let bytes = t.dtype.size();
    let outer = match (strides[rank - 2], strides[rank - 1]) {
        (s, 1) | (1, s) => s,
        _ => return false,
    };
    std::iter::once(outer)
        .chain(strides[..rank - 2].iter().copied())
        .all(|s| (s * bytes).is_multiple_of(16))
        && t.handle.offset_start.unwrap_or(0).is_multiple_of(16)
}

type Cb2<R, F, I, BT> = Tensor<CubeBackend<R, F, I, BT>, 2>;

/// A product that contracts a long dimension into a small output, `lhs` a transposed view and
/// `rhs` row-major, as a weight gradient `Xᵀ · dY` over all tokens is: too few output tiles to
/// fill the device. Split along `k` into `s` slices, one batched product of f32 partial
/// results, summed in f32. `None` when the product is not of that kind; an error when the
/// kernel cannot run the batched product.
fn split_k<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    strategy: &Strategy,
    lhs: &Cb2<R, F, I, BT>,
    rhs: &Cb2<R, F, I, BT>,
    tma: bool,
) -> Option<Result<Cb2<R, F, I, BT>, String>> {
    let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
    let (l, r) = (prim(lhs.clone()), prim(rhs.clone()));
    let (ls, rs) = (l.meta.strides(), r.meta.strides());
    if k < SPLIT_K_MIN || ls[..] != [1, m] || rs[..] != [n, 1] {
        return None;
    }
    let sms = l
        .client
        .properties()
        .hardware
        .num_streaming_multiprocessors
        .unwrap_or(64) as usize;
    let s = split_k_slices(m, n, k, sms);
    if s < 2 {
        return None;
    }
    // [k, m] row-major -> [s, m, k/s] (transposed slices); [k, n] -> [s, k/s, n]
    let a = prim(
        lhs.clone()
            .transpose()
            .reshape([s, k / s, m])
            .swap_dims(1, 2),
    );
    let b = prim(rhs.clone().reshape([s, k / s, n]));
    if tma && !(tma_ok(&a) && tma_ok(&b)) {
        return None;
    }
    Some(launch(strategy, a, b, DType::F32).map(|parts| {
        let parts =
            Tensor::<CubeBackend<R, F, I, BT>, 3>::from_primitive(TensorPrimitive::Float(parts));
        // back to the operands' dtype (no kernel when that is f32)
        parts.sum_dim(0).reshape([m, n]).cast(lhs.dtype())
    }))
}

/// The contracted size from which [`split_k`] considers splitting.
const SPLIT_K_MIN: usize = 8192;

fn prim<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: Tensor<CubeBackend<R, F, I, BT>, D>,
) -> CubeTensor<R> {
    t.into_primitive().tensor()
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> MatmulBackend
    for CubeBackend<R, F, I, BT>
{
    const MATMUL_KERNELS: bool = true;

    fn try_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        kernel: MatmulKernel,
    ) -> Result<Tensor<Self, 2>, MatmulError> {
        let named = match kernel {
            MatmulKernel::Burn => return Ok(lhs.matmul(rhs)),
            MatmulKernel::Auto => MatmulKernel::SpecializedTmaMma,
            k => k,
        };
        if lhs.dtype() != rhs.dtype() {
            return match kernel {
                MatmulKernel::Auto => Ok(lhs.matmul(rhs)),
                _ => Err(MatmulError::new(
                    kernel,
                    &lhs,
                    &rhs,
                    format!("operands of two dtypes ({:?})", rhs.dtype()),
                )),
            };
        }
        let strategy = strategy(named).expect("a named kernel");
        let tma = matches!(
            named,
            MatmulKernel::TmaMma | MatmulKernel::TmaCmma | MatmulKernel::SpecializedTmaMma
        );
        match split_k(&strategy, &lhs, &rhs, tma) {
            None => {}
            Some(Ok(out)) => return Ok(out),
            // Auto goes on to the unsplit product
            Some(Err(_)) if kernel == MatmulKernel::Auto => {}
            Some(Err(reason)) => return Err(MatmulError::new(kernel, &lhs, &rhs, reason)),
        }
        let (l, r) = (prim(lhs.clone()), prim(rhs.clone()));
        let run = if tma && !(tma_ok(&l) && tma_ok(&r)) {
            Err("an operand's start or outer stride is not a multiple of 16 bytes".to_string())
        } else {
            launch(&strategy, l, r, lhs.dtype())
        };
        match run {
            Ok(out) => Ok(Tensor::from_primitive(TensorPrimitive::Float(out))),
            Err(_) if kernel == MatmulKernel::Auto => Ok(lhs.matmul(rhs)),
            Err(reason) => Err(MatmulError::new(kernel, &lhs, &rhs, reason)),
        }
    }
}
