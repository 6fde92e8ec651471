//! The cubecl kernels for Burn's `CubeBackend` (CUDA, wgpu): the selective scan (forward and
//! backward, scalar and vectorised) and the causal convolution, and their settings.
//!
//! [`KernelConfig`] holds every setting; the backend operations run with its default (the
//! measured launch tables) and the `*_with_config` methods of [`crate::SelectiveScanBackend`]
//! with an explicit one. With this crate's `fusion` feature the same kernels serve Burn's
//! `Fusion<CubeBackend>`. Design and measurements: `docs/kernels.md`.
//!
//! Modules: `config` ([`KernelConfig`]), `launch` (launch planning from a config and the
//! sizes), `backend` (the `SelectiveScanBackend` implementation), `device` and `vectorised`
//! (the scan kernels), `conv` (the convolution kernels).
//!
//! Without the `cubecl` feature only the settings are compiled (the backend trait names them).

mod config;
pub use config::{ConfigError, KernelConfig, LaunchCounter, ScanKernel};

#[cfg(feature = "cubecl")]
mod backend;
#[cfg(feature = "cubecl")]
mod conv;
#[cfg(feature = "cubecl")]
mod device;
#[cfg(feature = "cubecl")]
mod launch;
#[cfg(feature = "cubecl")]
mod vectorised;

#[cfg(feature = "cubecl")]
use backend::unit_stride_l;
