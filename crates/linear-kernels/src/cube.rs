//! `MatmulBackend` for Burn's `CubeBackend`: the named cubek kernel, launched as Burn launches
//! its own (same operand bindings, output allocation and element types: f32 accumulation for
//! f16 / bf16 outputs).

use super::{MatmulBackend, MatmulError, MatmulKernel};
use burn::tensor::{Tensor, TensorPrimitive};
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
) -> Result<CubeTensor<R>, String> {
    let dtype = lhs.dtype;
    let out = init_matmul_output(&lhs, &rhs, dtype);
    let mut elems = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: dtype.into(),
        rhs: dtype.into(),
        out: dtype.into(),
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

/// Whether the Tensor Memory Accelerator can load `t`: a row-major or transposed matrix whose
/// outer stride and start are multiples of 16 bytes (cubek checks neither; Burn's autotune never
/// offers its TMA kernels otherwise).
fn tma_ok<R: CubeRuntime>(t: &CubeTensor<R>) -> bool {
    let strides = t.meta.strides();
    let bytes = t.dtype.size();
    let outer = match (strides[0], strides[1]) {
        (s, 1) | (1, s) => s,
        _ => return false,
    };
    (outer * bytes).is_multiple_of(16) && t.handle.offset_start.unwrap_or(0).is_multiple_of(16)
}

fn prim<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    t: Tensor<CubeBackend<R, F, I, BT>, 2>,
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
            MatmulKernel::Auto => MatmulKernel::TmaMma,
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
        let (l, r) = (prim(lhs.clone()), prim(rhs.clone()));
        let tma = matches!(
            named,
            MatmulKernel::TmaMma | MatmulKernel::TmaCmma | MatmulKernel::SpecializedTmaMma
        );
        let run = if tma && !(tma_ok(&l) && tma_ok(&r)) {
            Err("an operand's start or outer stride is not a multiple of 16 bytes".to_string())
        } else {
            launch(&strategy, l, r)
        };
        match run {
            Ok(out) => Ok(Tensor::from_primitive(TensorPrimitive::Float(out))),
            Err(_) if kernel == MatmulKernel::Auto => Ok(lhs.matmul(rhs)),
            Err(reason) => Err(MatmulError::new(kernel, &lhs, &rhs, reason)),
        }
    }
}
