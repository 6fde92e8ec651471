//! Inputs, outputs and gradients of the selective scan, with shape validation.

use burn::tensor::{Tensor, backend::Backend};

/// A shape or option that does not fit the scan's contract; names the tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A tensor has the wrong shape.
    #[error("selective_scan: {tensor} has shape {got:?}, expected {expected}")]
    Shape {
        /// Name of the tensor (u, delta, A, B, C, D, z, delta_bias).
        tensor: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// What was expected.
        expected: String,
    },
    /// A size is zero.
    #[error(
        "selective_scan: every size must be positive, got batch {batch}, d_inner {dim}, L {len}, N {state}"
    )]
    Empty {
        /// batch
        batch: usize,
        /// d_inner
        dim: usize,
        /// L
        len: usize,
        /// N
        state: usize,
    },
    /// B and C groups must divide d_inner.
    #[error("selective_scan: {groups} groups of B/C do not divide d_inner = {dim}")]
    Groups {
        /// Groups.
        groups: usize,
        /// d_inner.
        dim: usize,
    },
    /// An input of `causal_conv1d` has the wrong shape (or a zero size).
    #[error("causal_conv1d: {tensor} has shape {got:?}, expected {expected}")]
    ConvShape {
        /// Name of the tensor (x, weight, bias, dy).
        tensor: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// What was expected.
        expected: String,
    },
}

/// Inputs of `selective_scan`, with the semantics of the official
/// `mamba_ssm.selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)`.
///
/// - `u`, `delta`, `z`: `[batch, d_inner, L]`
/// - `a`: `[d_inner, N]` (negative for a stable scan; `-exp(A_log)` in Mamba)
/// - `b`, `c`: input-dependent `[batch, G, N, L]`, G groups dividing d_inner (channel `i` uses
///   group `i / (d_inner / G)`); build from `[batch, N, L]` with [`ScanInputs::new_ungrouped`]
/// - `d`, `delta_bias`: `[d_inner]`
///
/// Computes, per channel, `dt = softplus?(delta + delta_bias)`,
/// `h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t`, `y_t = C_t . h_t + D u_t`, and
/// `out = y * silu(z)` when `z` is given.
#[derive(Debug, Clone)]
pub struct ScanInputs<B: Backend> {
    /// `[batch, d_inner, L]`
    pub u: Tensor<B, 3>,
    /// `[batch, d_inner, L]`
    pub delta: Tensor<B, 3>,
    /// `[d_inner, N]`
    pub a: Tensor<B, 2>,
    /// `[batch, G, N, L]`
    pub b: Tensor<B, 4>,
    /// `[batch, G, N, L]`
    pub c: Tensor<B, 4>,
    /// `[d_inner]`, the skip connection
    pub d: Option<Tensor<B, 1>>,
    /// `[batch, d_inner, L]`, the gate
    pub z: Option<Tensor<B, 3>>,
    /// `[d_inner]`
    pub delta_bias: Option<Tensor<B, 1>>,
    /// Apply softplus to `delta + delta_bias` (threshold 20, as PyTorch).
    pub delta_softplus: bool,
}

/// Output of the scan.
#[derive(Debug, Clone)]
pub struct ScanOutput<B: Backend> {
    /// `[batch, d_inner, L]`
    pub y: Tensor<B, 3>,
    /// `[batch, d_inner, N]`, when asked for. Not differentiated (as in `mamba_ssm`, whose
    /// backward ignores the last state's gradient).
    pub last_state: Option<Tensor<B, 3>>,
}

/// Gradients of a scalar loss with respect to every input (given dL/dy).
#[derive(Debug, Clone)]
pub struct ScanGrads<B: Backend> {
    /// d u
    pub du: Tensor<B, 3>,
    /// d delta
    pub ddelta: Tensor<B, 3>,
    /// d A
    pub da: Tensor<B, 2>,
    /// d B
    pub db: Tensor<B, 4>,
    /// d C
    pub dc: Tensor<B, 4>,
    /// d D
    pub dd: Option<Tensor<B, 1>>,
    /// d z
    pub dz: Option<Tensor<B, 3>>,
    /// d delta_bias
    pub ddelta_bias: Option<Tensor<B, 1>>,
}

/// Sizes read off validated inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// batch
    pub batch: usize,
    /// d_inner
    pub dim: usize,
    /// L
    pub len: usize,
    /// N
    pub state: usize,
    /// G
    pub groups: usize,
}

impl<B: Backend> ScanInputs<B> {
    /// Inputs with B and C of shape `[batch, N, L]` (one group), no D, z or bias, no softplus.
    pub fn new_ungrouped(
        u: Tensor<B, 3>,
        delta: Tensor<B, 3>,
        a: Tensor<B, 2>,
        b: Tensor<B, 3>,
        c: Tensor<B, 3>,
    ) -> Self {
        Self::new(u, delta, a, b.unsqueeze_dim(1), c.unsqueeze_dim(1))
    }

    /// Inputs with grouped B and C `[batch, G, N, L]`, no D, z or bias, no softplus.
    pub fn new(
        u: Tensor<B, 3>,
        delta: Tensor<B, 3>,
        a: Tensor<B, 2>,
        b: Tensor<B, 4>,
        c: Tensor<B, 4>,
    ) -> Self {
        ScanInputs {
            u,
            delta,
            a,
            b,
            c,
            d: None,
            z: None,
            delta_bias: None,
            delta_softplus: false,
        }
    }

    /// Random inputs in Mamba's configuration, for benchmarks and examples: shape
    /// `[batch, d_inner, L, N]`, one group, u and z ~ N(0, 1), delta ~ N(-2, 0.5),
    /// A ~ -U(0.5, 8), B and C ~ N(0, 1), D ~ N(0, 1), delta_bias ~ N(0, 0.1), softplus on.
    pub fn random([batch, dim, len, n]: [usize; 4], device: &B::Device) -> Self {
        use burn::tensor::Distribution::{Normal, Uniform};
        let r = |s: [usize; 3]| Tensor::<B, 3>::random(s, Normal(0.0, 1.0), device);
        let a = -Tensor::<B, 2>::random([dim, n], Uniform(0.5, 8.0), device);
        let bc = || Tensor::<B, 4>::random([batch, 1, n, len], Normal(0.0, 1.0), device);
        Self::new(
            r([batch, dim, len]),
            r([batch, dim, len]) * 0.5 - 2.0,
            a,
            bc(),
            bc(),
        )
        .with_d(Tensor::random([dim], Normal(0.0, 1.0), device))
        .with_z(r([batch, dim, len]))
        .with_delta_bias(Tensor::random([dim], Normal(0.0, 0.1), device))
        .with_softplus(true)
    }

    /// Set the skip connection D `[d_inner]`.
    pub fn with_d(mut self, d: Tensor<B, 1>) -> Self {
        self.d = Some(d);
        self
    }

    /// Set the gate z `[batch, d_inner, L]`.
    pub fn with_z(mut self, z: Tensor<B, 3>) -> Self {
        self.z = Some(z);
        self
    }

    /// Set delta_bias `[d_inner]`.
    pub fn with_delta_bias(mut self, bias: Tensor<B, 1>) -> Self {
        self.delta_bias = Some(bias);
        self
    }

    /// Apply softplus to `delta + delta_bias`.
    pub fn with_softplus(mut self, on: bool) -> Self {
        self.delta_softplus = on;
        self
    }

    /// Check every shape; return the sizes.
    pub fn validate(&self) -> Result<Dims, ScanError> {
        let us = self.u.dims();
        let [batch, dim, len] = us;
        let bs = self.b.dims();
        let [_, groups, state, _] = bs;
        let err = |tensor, got: &[usize], expected: String| ScanError::Shape {
            tensor,
            got: got.to_vec(),
            expected,
        };
        if batch == 0 || dim == 0 || len == 0 || state == 0 {
            return Err(ScanError::Empty {
                batch,
                dim,
                len,
                state,
            });
        }
        if self.delta.dims() != us {
            return Err(err("delta", &self.delta.dims(), format!("{us:?} like u")));
        }
        if self.a.dims() != [dim, state] {
            return Err(err(
                "A",
                &self.a.dims(),
                format!("[d_inner={dim}, N={state}]"),
            ));
        }
        if bs[0] != batch || bs[3] != len || groups == 0 {
            return Err(err(
                "B",
                &bs,
                format!("[batch={batch}, G, N, L={len}] with G >= 1"),
            ));
        }
        if self.c.dims() != bs {
            return Err(err("C", &self.c.dims(), format!("{bs:?} like B")));
        }
        if dim % groups != 0 {
            return Err(ScanError::Groups { groups, dim });
        }
        if let Some(d) = &self.d
            && d.dims() != [dim]
        {
            return Err(err("D", &d.dims(), format!("[d_inner={dim}]")));
        }
        if let Some(b) = &self.delta_bias
            && b.dims() != [dim]
        {
            return Err(err("delta_bias", &b.dims(), format!("[d_inner={dim}]")));
        }
        if let Some(z) = &self.z
            && z.dims() != us
        {
            return Err(err("z", &z.dims(), format!("{us:?} like u")));
        }
        Ok(Dims {
            batch,
            dim,
            len,
            state,
            groups,
        })
    }
}
