//! Shared test helpers: fixture paths, safetensors reading, the MiniLM provisioning, comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};

pub type B = NdArray<f32>;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A tensor of a safetensors file, with its shape: f32 or i64 data as f64 / i64 vectors.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        let path = fixtures().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { bytes }
    }

    fn view(&self, name: &str) -> safetensors::tensor::TensorView<'_> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("fixture safetensors");
        st.tensor(name)
            .unwrap_or_else(|e| panic!("fixture tensor `{name}`: {e}"))
    }

    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let v = self.view(name);
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
        let data = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (data, v.shape().to_vec())
    }

    pub fn i64(&self, name: &str) -> (Vec<i64>, Vec<usize>) {
        let v = self.view(name);
        assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name}");
        let data = v
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (data, v.shape().to_vec())
    }

    pub fn ids(&self, name: &str) -> Tensor<B, 2, Int> {
        let (data, shape) = self.i64(name);
        Tensor::from_data(
            TensorData::new(data, [shape[0], shape[1]]),
            &Default::default(),
        )
    }
}

pub fn ids_tensor(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows[0].len()];
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, shape), &Default::default())
}

/// Max |a - b| over elements where `keep` (if given, one flag per leading `[b, l]` position of a
/// `[b, l, h]` tensor) is true. Panics on a shape mismatch or a non-finite value.
pub fn max_abs_diff<const D: usize>(
    actual: Tensor<B, D>,
    expected: &(Vec<f32>, Vec<usize>),
    keep: Option<&[i64]>,
) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected.1, "shape");
    let a = actual.into_data().to_vec::<f32>().unwrap();
    let inner = *expected.1.last().unwrap();
    let mut max = 0f32;
    for (i, (x, y)) in a.iter().zip(&expected.0).enumerate() {
        if keep.is_some_and(|k| k[i / inner] == 0) {
            continue;
        }
        assert!(x.is_finite(), "non-finite output at {i}: {x}");
        max = max.max((x - y).abs());
    }
    max
}

/// The all-MiniLM-L6-v2 directory (found by the users' lookup order, downloaded on first use).
pub fn minilm_dir() -> PathBuf {
    test_support::minilm_dir()
}

pub mod flash;
