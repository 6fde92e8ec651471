//! The Burn backends this build was compiled with (root features `ndarray`, `wgpu`, `cuda`).

/// CPU backend (default feature `ndarray`).
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;

/// Portable GPU backend through wgpu (feature `wgpu`).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// NVIDIA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// Names of the backends compiled into this build.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "ndarray") {
        v.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}
