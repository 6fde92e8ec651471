#![allow(dead_code)]
//! Helpers: load the safetensors fixtures, build inputs, compare tensors.

use burn::tensor::{
    Tensor, TensorData,
    backend::{AutodiffBackend, Backend},
};
use mamba_ssm::ScanInputs;
use std::collections::HashMap;
use std::path::PathBuf;

pub struct Case {
    pub name: String,
    pub t: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub softplus: bool,
}

pub fn load(name: &str) -> Case {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let softplus = meta.metadata().as_ref().unwrap()["softplus"] == "True";
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, (v.shape().to_vec(), data))
        })
        .collect();
    Case {
        name: name.into(),
        t,
        softplus,
    }
}

pub const CASES: [&str; 7] = [
    "l1_all",
    "odd_n1_plain",
    "g2_n16_all",
    "l1000_n16",
    "n64_g4",
    "ungrouped_n4",
    "odd_n4_d_only",
];

pub fn tensor<B: Backend, const D: usize>(c: &Case, key: &str, dev: &B::Device) -> Tensor<B, D> {
    let (shape, data) = &c.t[key];
    Tensor::from_data(TensorData::new(data.clone(), shape.clone()), dev)
}

impl Case {
    pub fn has(&self, k: &str) -> bool {
        self.t.contains_key(k)
    }
    pub fn vec(&self, k: &str) -> &[f32] {
        &self.t[k].1
    }
    /// Inputs on backend B; each input is marked to require gradients when `grad`.
    pub fn inputs<B: Backend>(
        &self,
        dev: &B::Device,
        grad: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> ScanInputs<B> {
        let ungrouped = self.t["B"].0.len() == 3;
        let (b, c) = if ungrouped {
            (
                tensor::<B, 3>(self, "B", dev).unsqueeze_dim(1),
                tensor::<B, 3>(self, "C", dev).unsqueeze_dim(1),
            )
        } else {
            (
                tensor::<B, 4>(self, "B", dev),
                tensor::<B, 4>(self, "C", dev),
            )
        };
        let mut inp = ScanInputs::new(
            grad(tensor(self, "u", dev)),
            grad(tensor(self, "delta", dev)),
            tensor(self, "A", dev),
            b,
            c,
        )
        .with_softplus(self.softplus);
        if self.has("D") {
            inp = inp.with_d(tensor(self, "D", dev));
        }
        if self.has("z") {
            inp = inp.with_z(grad(tensor(self, "z", dev)));
        }
        if self.has("delta_bias") {
            inp = inp.with_delta_bias(tensor(self, "delta_bias", dev));
        }
        inp
    }
}

pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

/// max |got - want| / max |want|: the error relative to the tensor's scale.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0.0f64, |m, &w| m.max(w.abs() as f64))
        .max(1e-30);
    // a NaN (e.g. an unwritten element of a poisoned output) counts as infinite: `f64::max`
    // alone would drop it
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let d = (g as f64 - w as f64).abs();
            if d.is_nan() { f64::INFINITY } else { d }
        })
        .fold(0.0, f64::max)
        / scale
}

/// max |got - want| / (1 + max |want|); NaN (e.g. an unwritten, poisoned element) counts as
/// infinite. The conv tests' measure.
pub fn conv_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &w| m.max(w.abs() as f64));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let e = (g as f64 - w as f64).abs();
            if e.is_nan() { f64::INFINITY } else { e }
        })
        .fold(0.0f64, f64::max)
        / (1.0 + scale)
}

impl Case {
    /// [`Case::inputs`] on an autodiff backend with every input a leaf that requires grad.
    pub fn tracked_inputs<B: AutodiffBackend>(&self, dev: &B::Device) -> ScanInputs<B> {
        let mut inp = self.inputs::<B>(dev, |t| t.require_grad());
        inp.a = inp.a.require_grad();
        inp.b = inp.b.require_grad();
        inp.c = inp.c.require_grad();
        inp.d = inp.d.map(|d| d.require_grad());
        inp.delta_bias = inp.delta_bias.map(|b| b.require_grad());
        inp
    }
}

/// The gradient of every present input in `grads`, named as the fixtures' `grad_*` keys.
pub fn input_grads<B: AutodiffBackend>(
    inp: &ScanInputs<B>,
    grads: &B::Gradients,
) -> Vec<(&'static str, Vec<f32>)> {
    let mut checks = vec![
        ("u", to_vec(inp.u.grad(grads).unwrap())),
        ("delta", to_vec(inp.delta.grad(grads).unwrap())),
        ("A", to_vec(inp.a.grad(grads).unwrap())),
        ("B", to_vec(inp.b.grad(grads).unwrap())),
        ("C", to_vec(inp.c.grad(grads).unwrap())),
    ];
    if let Some(d) = &inp.d {
        checks.push(("D", to_vec(d.grad(grads).unwrap())));
    }
    if let Some(z) = &inp.z {
        checks.push(("z", to_vec(z.grad(grads).unwrap())));
    }
    if let Some(b) = &inp.delta_bias {
        checks.push(("delta_bias", to_vec(b.grad(grads).unwrap())));
    }
    checks
}
