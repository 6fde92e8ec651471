//! The products of a training step's projections, per matmul kernel (`linear_kernels`): for a
//! layer `[d_in] -> [d_out]` over `tokens` rows, the forward `X · W`, the input gradient
//! `dY · Wᵀ` and the weight gradient `Xᵀ · dY`, with the transposed operands as views, as
//! the autodiff node runs them. Each kernel's result is checked against a float64 product of
//! sampled entries, computed on the host.

use super::{Timing, guarded, measure, ms_since, sync};
use burn::tensor::{DType, Distribution, Tensor, backend::Backend};
use linear_kernels::{MatmulBackend, MatmulKernel};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Settings of `bench matmul`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatmulBench {
    /// Rows of `X` (tokens per step).
    pub tokens: usize,
    /// Layers as `(d_in, d_out)`.
    pub layers: Vec<(usize, usize)>,
    /// Kernels measured.
    pub kernels: Vec<MatmulKernel>,
    /// Untimed repetitions.
    pub warmup: usize,
    /// Timed repetitions.
    pub reps: usize,
}

/// One product of one layer with one kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatmulRow {
    /// `d_in x d_out`.
    pub layer: String,
    /// `forward`, `input-grad` or `weight-grad`.
    pub product: &'static str,
    /// `[m, k] x [k, n]`.
    pub m: usize,
    /// Contracted size.
    pub k: usize,
    /// Output columns.
    pub n: usize,
    /// The kernel.
    pub kernel: MatmulKernel,
    /// Wall clock per product.
    pub timing: Option<Timing>,
    /// `2 m k n` over the median time.
    pub tflops: Option<f64>,
    /// Largest error of the sampled entries over the largest sampled magnitude.
    pub max_rel_error: Option<f64>,
    /// Why the kernel did not run.
    pub error: Option<String>,
}

/// A host operand: values, row stride, column stride.
type Operand<'a> = (&'a [f32], usize, usize);
/// A product to measure: name, the device operands, and the same operands on the host.
type Product<'a, B> = (
    &'static str,
    Tensor<B, 2>,
    Tensor<B, 2>,
    Operand<'a>,
    Operand<'a>,
);

/// Entries checked against the float64 product, per product.
const SAMPLES: usize = 48;

fn host<B: Backend>(t: &Tensor<B, 2>) -> Vec<f32> {
    t.clone()
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 data")
}

/// `a[i, :] · b[:, j]` in float64, `a` given as `(values, row stride, column stride)`.
fn dot(a: (&[f32], usize, usize), b: (&[f32], usize, usize), i: usize, j: usize, k: usize) -> f64 {
    (0..k)
        .map(|p| a.0[i * a.1 + p * a.2] as f64 * b.0[p * b.1 + j * b.2] as f64)
        .sum()
}

/// Measures every kernel on every layer's three products.
pub fn run<B: MatmulBackend>(
    s: &MatmulBench,
    device: &B::Device,
) -> anyhow::Result<Vec<MatmulRow>> {
    let mut rows = Vec::new();
    let t = s.tokens;
    for &(d_in, d_out) in &s.layers {
        let dist = Distribution::Uniform(-1.0, 1.0);
        let x = Tensor::<B, 2>::random([t, d_in], dist, device);
        let w = Tensor::<B, 2>::random([d_in, d_out], dist, device);
        let dy = Tensor::<B, 2>::random([t, d_out], dist, device);
        let (hx, hw, hdy) = (host(&x), host(&w), host(&dy));
        // (name, lhs, rhs, lhs as (values, row stride, col stride), rhs likewise)
        let products: [Product<B>; 3] = [
            (
                "forward",
                x.clone(),
                w.clone(),
                (&hx, d_in, 1),
                (&hw, d_out, 1),
            ),
            (
                "input-grad",
                dy.clone(),
                w.clone().transpose(),
                (&hdy, d_out, 1),
                (&hw, 1, d_out),
            ),
            (
                "weight-grad",
                x.clone().transpose(),
                dy.clone(),
                (&hx, 1, d_in),
                (&hdy, d_out, 1),
            ),
        ];
        for (product, lhs, rhs, ha, hb) in products {
            let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
            // the sampled entries, spread over the output
            let picks: Vec<(usize, usize)> = (0..SAMPLES)
                .map(|q| ((q * 7919 + 13) % m, (q * 104_729 + 5) % n))
                .collect();
            let want: Vec<f64> = picks.iter().map(|&(i, j)| dot(ha, hb, i, j, k)).collect();
            let scale = want.iter().fold(1e-30f64, |a, v| a.max(v.abs()));
            for &kernel in &s.kernels {
                let mut row = MatmulRow {
                    layer: format!("{d_in}x{d_out}"),
                    product,
                    m,
                    k,
                    n,
                    kernel,
                    timing: None,
                    tflops: None,
                    max_rel_error: None,
                    error: None,
                };
                let r = guarded(|| -> anyhow::Result<(Timing, f64)> {
                    let out = B::try_matmul(lhs.clone(), rhs.clone(), kernel)?;
                    let got = host(&out);
                    let err = picks
                        .iter()
                        .zip(&want)
                        .map(|(&(i, j), w)| (got[i * n + j] as f64 - w).abs())
                        .fold(
                            0.0f64,
                            |a, e| if e.is_nan() { f64::INFINITY } else { a.max(e) },
                        );
                    let timing = measure(s.warmup, s.reps, || {
                        sync::<B>(device)?;
                        let t0 = Instant::now();
                        let out = B::try_matmul(lhs.clone(), rhs.clone(), kernel)?;
                        sync::<B>(device)?;
                        drop(out);
                        Ok(ms_since(t0))
                    })?;
                    Ok((timing, err / scale))
                });
                match r {
                    Ok((timing, err)) => {
                        row.tflops =
                            Some(2.0 * (m * k * n) as f64 / (timing.median_ms * 1e-3) / 1e12);
                        row.timing = Some(timing);
                        row.max_rel_error = Some(err);
                    }
                    Err(e) => row.error = Some(e.to_string()),
                }
                eprintln!(
                    "bench matmul: {} {product} {kernel}: {}",
                    row.layer,
                    match (&row.error, row.timing) {
                        (Some(e), _) => e.clone(),
                        (None, Some(t)) => format!(
                            "{:.3} ms, {:.0} TFLOP/s, error {:.1e}",
                            t.median_ms,
                            row.tflops.unwrap_or(0.0),
                            row.max_rel_error.unwrap_or(0.0)
                        ),
                        _ => String::new(),
                    }
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// The rows as a markdown table.
pub fn table(rows: &[MatmulRow]) -> String {
    let mut out = String::from(
        "| layer | product | m x k x n | kernel | ms | TFLOP/s | max rel. error |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (ms, tf, err) = match (&r.error, r.timing) {
            (Some(e), _) => (format!("not run: {e}"), String::new(), String::new()),
            (None, Some(t)) => (
                format!("{:.3}", t.median_ms),
                format!("{:.0}", r.tflops.unwrap_or(0.0)),
                format!("{:.1e}", r.max_rel_error.unwrap_or(0.0)),
            ),
            _ => Default::default(),
        };
        out.push_str(&format!(
            "| {} | {} | {}x{}x{} | {} | {ms} | {tf} | {err} |\n",
            r.layer, r.product, r.m, r.k, r.n, r.kernel
        ));
    }
    out
}
