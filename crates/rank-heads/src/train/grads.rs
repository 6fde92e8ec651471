//! Gradient utilities: the global norm and scaling (for clipping).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, ElementConversion, Tensor};

pub(super) struct NormVisitor<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

/// The L2 norm of all gradients together (PyTorch's `clip_grad_norm_` norm), on the device:
/// a `[1]` f32 tensor for the caller to read with the step's other values (`None` without
/// gradients).
pub(super) fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut v = NormVisitor::<B> { grads, sum: None };
    model.visit(&mut v);
    v.sum.map(|s| s.cast(DType::F32).sqrt())
}

pub(super) struct ScaleVisitor<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

pub(super) fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    let mut v = ScaleVisitor::<B> {
        grads,
        factor,
        _b: std::marker::PhantomData,
    };
    model.visit(&mut v);
}

/// Counts the float parameters that hold a NaN or an infinity.
pub(super) struct NonFiniteVisitor {
    pub(super) tensors: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NonFiniteVisitor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        let bad = v.clone().is_nan().any().into_scalar().elem::<bool>()
            || v.is_inf().any().into_scalar().elem::<bool>();
        self.tensors += bad as usize;
    }
}

/// How many of `model`'s float parameter tensors hold a NaN or an infinity.
pub(super) fn non_finite_tensors<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M) -> usize {
    let mut v = NonFiniteVisitor { tensors: 0 };
    model.visit(&mut v);
    v.tensors
}
