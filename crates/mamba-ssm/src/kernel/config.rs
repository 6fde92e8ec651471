//! The cubecl kernels' settings as a value: [`KernelConfig`].
//!
//! Every switch of the scan and convolution kernels lives here. The backend operations
//! (`SelectiveScanBackend` on `CubeBackend`, `Fusion` and `Autodiff`) run with
//! [`KernelConfig::default`]; the `*_with_config` methods and functions run with an explicit
//! one. [`KernelConfig::from_env`] reads the `MAMBA_SSM_*` environment variables for the
//! benchmark examples; the library never reads the environment.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Settings of the cubecl scan and convolution kernels.
///
/// `Default` is the measured launch (the tables in `docs/kernels.md`); a field left at its
/// default (`None` where the default depends on the sizes) follows those tables. Values out of
/// range are ignored or clamped as each field says. Settings that do not apply to a launch
/// (e.g. the vectorised ones where the scalar kernel runs) are ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelConfig {
    // ---- the scalar kernels (`scan_fwd`, `scan_bwd`) ----
    /// Forward steps per unit (1, 2, 4, 8 or 16; other values: the default). Default: the
    /// launch table (4 up to L 128, else 8). Env: `MAMBA_SSM_ITEMS_FWD`.
    pub items_fwd: Option<usize>,
    /// Backward steps per unit, as [`KernelConfig::items_fwd`]. Env: `MAMBA_SSM_ITEMS_BWD`.
    pub items_bwd: Option<usize>,
    /// Forward: the largest number of units per channel (rounded up to a power of two). A
    /// channel gets `next_pow2(L / items)` units, clamped to [plane width, this]. Default: the
    /// launch table (256 up to L 128, else 32). Env: `MAMBA_SSM_UNITS_FWD`.
    pub max_units_fwd: Option<usize>,
    /// Backward: as [`KernelConfig::max_units_fwd`] (default 256 up to L 128, else 32). Env:
    /// `MAMBA_SSM_UNITS_BWD`.
    pub max_units_bwd: Option<usize>,
    /// Forward channels per cube (clamped to 1-16). The channels of a cube share one (batch,
    /// group). Default: the launch table (4, or 1 for two-byte storage above L 512). Env:
    /// `MAMBA_SSM_CHANS_FWD`.
    pub chans_fwd: Option<usize>,
    /// Backward channels per cube (clamped to 1-16; the cube sums their dB and dC terms in
    /// shared memory before its atomic adds). Default: 4 up to L 128, else 16. Env:
    /// `MAMBA_SSM_CHANS_BWD`.
    pub chans_bwd: Option<usize>,
    /// The largest backward cube (all its channels' units together). Default 1024, which also
    /// keeps the backward at 64 registers. Env: `MAMBA_SSM_BWD_THREADS`.
    pub bwd_threads: usize,
    /// The cube-wide scans: `None` (default) follows the device's report of plane operations;
    /// `Some(true)` forces plane shuffles (lavapipe runs them but does not report them),
    /// `Some(false)` the shared-memory path. Applies to the vectorised kernels too, which need
    /// plane shuffles. Env: `MAMBA_SSM_PLANE=0|1`.
    pub plane: Option<bool>,
    /// Forward: B and C of a chunk staged in shared memory, once per cube. Default (`None`):
    /// the launch table (staged, except two-byte storage above L 512). Env:
    /// `MAMBA_SSM_STAGE=0|1`.
    pub stage_fwd: Option<bool>,
    /// Backward: B and C staged in shared memory, double-buffered. Default on. Env:
    /// `MAMBA_SSM_STAGE_BWD=0|1`.
    pub stage_bwd: bool,
    /// Where a channel's units are exactly one plane: cube scans by plane shuffles alone (no
    /// shared memory, no barrier). Default on. Env: `MAMBA_SSM_ONE_PLANE=0|1`.
    pub one_plane: bool,
    /// Drop the barriers that other barriers already cover. Default on. Env:
    /// `MAMBA_SSM_LEAN_SYNC=0|1`.
    pub lean_sync: bool,
    /// Backward: B_t kept in registers from the recompute for the gradient loop instead of
    /// loaded again. Default on. Env: `MAMBA_SSM_KEEP_B=0|1`.
    pub keep_b: bool,
    /// Backward: the dB and dC sums over channels split between all units of the cube (dB by
    /// one half, dC by the other) instead of both by the first `chunk` units. Default off.
    /// Env: `MAMBA_SSM_RED_SPLIT=0|1`.
    pub red_split: bool,
    /// Backward: the `fold` gradient loop (the B u term of d delta summed over the states once
    /// per step, dt u kept in place of u, the reverse composition's product taken from the
    /// forward one: four instructions fewer per (step, state)) instead of the plain loop.
    /// Default on. Env: `MAMBA_SSM_BWD=fold|plain`.
    pub backward_fold: bool,
    /// Forward: two states per pass (interleaved scans, one staging barrier for both) where
    /// the launch is one plane per channel and N is even. Default (`None`): the launch table
    /// (4-byte storage above L 512). Env: `MAMBA_SSM_PAIR=0|1`.
    pub pair_states: Option<bool>,

    // ---- both kernel families ----
    /// The training forward (`selective_scan_train`, what `Autodiff` runs) saves the states at
    /// the backward's chunk starts, so that the backward skips its checkpoint sweep. Default
    /// on. Env: `MAMBA_SSM_SAVE=0|1`.
    pub save_states: bool,
    /// The backward runs the CPU scan's backward on host copies instead of a kernel (slow; a
    /// debugging aid). Default off. Env: `MAMBA_SSM_HOST_BACKWARD=0|1`.
    pub host_backward: bool,

    // ---- the vectorised kernels (`scan_fwd_vec`, `scan_bwd_vec`) ----
    /// The forward runs the vectorised kernel (one plane, or a segment of one, per channel,
    /// vector loads, no shared-memory staging, no barrier) where it applies: plane shuffles in
    /// use with a fixed plane width, L a multiple of the vector width, every per-step tensor
    /// with unit stride along L, other strides multiples of the vector width and an aligned
    /// start; else the scalar kernel runs. Default on. Env: `MAMBA_SSM_VEC=0|1`.
    pub vec_forward: bool,
    /// The backward runs the vectorised kernel (dB / dC added by coalesced atomics after a sum
    /// over the cube's channels) where it applies (as [`KernelConfig::vec_forward`]). Default
    /// on. Env: `MAMBA_SSM_VEC_BWD=0|1`.
    pub vec_backward: bool,
    /// Vectorised forward steps per unit (1, 2, 4, 8 or 16, raised to the vector width; other
    /// values: the default). Default 8. Env: `MAMBA_SSM_VEC_ITEMS`.
    pub vec_items_fwd: Option<usize>,
    /// Vectorised backward steps per unit, as [`KernelConfig::vec_items_fwd`]. Env:
    /// `MAMBA_SSM_VEC_BWD_ITEMS`.
    pub vec_items_bwd: Option<usize>,
    /// Vectorised forward planes per cube (clamped to 1-16; a plane holds one channel, or
    /// several on short segments). Default 1. Env: `MAMBA_SSM_VEC_CHANS`.
    pub vec_chans_fwd: Option<usize>,
    /// Vectorised backward planes per cube (clamped to 1-16). Default 2 up to L 512, else 1.
    /// Env: `MAMBA_SSM_VEC_BWD_CHANS`.
    pub vec_chans_bwd: Option<usize>,
    /// Elements per vector load (a power of two of at most 16 bytes, at most 4 on wgpu; other
    /// values: the default). Default: 16 bytes on CUDA (at most a unit's steps), 4 on wgpu.
    /// Env: `MAMBA_SSM_VEC_WIDTH`.
    pub vec_width: Option<usize>,
    /// The largest forward segment (units per channel, a power of two; other values: the
    /// default): below the plane width, `plane / seg` channels share a plane and a channel's
    /// sequence runs in more, shorter chunks. Whatever the cap, a segment is no longer than
    /// the least power of two whose chunk covers L. Default: the plane width. Env:
    /// `MAMBA_SSM_VEC_SEG`.
    pub vec_seg_fwd: Option<usize>,
    /// The largest backward segment, as [`KernelConfig::vec_seg_fwd`]. Env:
    /// `MAMBA_SSM_VEC_BWD_SEG`.
    pub vec_seg_bwd: Option<usize>,
    /// Vectorised backward with several channels per cube: their dB / dC terms summed in
    /// shared memory before the atomic adds (where the cube's units divide a unit's steps).
    /// Default on. Env: `MAMBA_SSM_VEC_CUBE_SUM=0|1`.
    pub vec_cube_sum: bool,
    /// Cube order of the vectorised kernels: `Some(true)` (group, channel block, batch),
    /// `Some(false)` (batch, group, channel block). Default (`None`): batch order for the
    /// backward above L 512 and for the forward on segments shorter than a plane, else
    /// channel order. Env: `MAMBA_SSM_VEC_ORDER=batch|channel`.
    pub vec_batch_order: Option<bool>,
    /// Vectorised forward: B_{n+1} loaded while state n computes. Default (`None`): on for
    /// 4-byte storage and for the training forward. Env: `MAMBA_SSM_VEC_PREFETCH=0|1`.
    pub vec_prefetch: Option<bool>,

    // ---- the causal convolution ----
    /// Backward cubes per channel (at most 64). Default (`None`): enough that each unit takes
    /// at least 16 positions, at most 64.
    pub conv_backward_splits: Option<usize>,

    // ---- testing aids ----
    /// The scan kernels' outputs (y, the last state, the saved chunk-start states, du,
    /// d delta, dz) are filled with NaN before the launch, so that an element a kernel fails
    /// to write shows in the results (the dA / dB / dC / dD / d delta_bias accumulators start
    /// from zero either way). Default off.
    pub scan_poison: bool,
    /// The convolution kernels' outputs are filled with NaN before the launch. Default off.
    pub conv_poison: bool,
    /// Counts the launches of each scan kernel, to check which one ran (the scalar kernels
    /// run wherever the vectorised ones do not apply). Default `None`.
    pub launch_counter: Option<LaunchCounter>,
}

/// The default largest backward cube (see [`KernelConfig::bwd_threads`]).
pub(crate) const BWD_THREADS: usize = 1024;

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            items_fwd: None,
            items_bwd: None,
            max_units_fwd: None,
            max_units_bwd: None,
            chans_fwd: None,
            chans_bwd: None,
            bwd_threads: BWD_THREADS,
            plane: None,
            stage_fwd: None,
            stage_bwd: true,
            one_plane: true,
            lean_sync: true,
            keep_b: true,
            red_split: false,
            backward_fold: true,
            pair_states: None,
            save_states: true,
            host_backward: false,
            vec_forward: true,
            vec_backward: true,
            vec_items_fwd: None,
            vec_items_bwd: None,
            vec_chans_fwd: None,
            vec_chans_bwd: None,
            vec_width: None,
            vec_seg_fwd: None,
            vec_seg_bwd: None,
            vec_cube_sum: true,
            vec_batch_order: None,
            vec_prefetch: None,
            conv_backward_splits: None,
            scan_poison: false,
            conv_poison: false,
            launch_counter: None,
        }
    }
}

impl KernelConfig {
    /// Steps per unit of all four scan kernels (scalar and vectorised, forward and backward).
    pub fn with_items(mut self, items: Option<usize>) -> Self {
        self.items_fwd = items;
        self.items_bwd = items;
        self.vec_items_fwd = items;
        self.vec_items_bwd = items;
        self
    }

    /// The largest number of units per channel of both scalar kernels.
    pub fn with_max_units(mut self, max_units: Option<usize>) -> Self {
        self.max_units_fwd = max_units;
        self.max_units_bwd = max_units;
        self
    }

    /// Channels per cube of the forward and the backward kernels, scalar and vectorised (for
    /// the vectorised ones the numbers count planes per cube).
    pub fn with_channels_per_cube(mut self, fwd: Option<usize>, bwd: Option<usize>) -> Self {
        self.chans_fwd = fwd;
        self.vec_chans_fwd = fwd;
        self.chans_bwd = bwd;
        self.vec_chans_bwd = bwd;
        self
    }

    /// The largest segment of the vectorised forward and backward.
    pub fn with_vec_segment(mut self, fwd: Option<usize>, bwd: Option<usize>) -> Self {
        self.vec_seg_fwd = fwd;
        self.vec_seg_bwd = bwd;
        self
    }

    /// The default settings overridden by the `MAMBA_SSM_*` environment variables that are
    /// set (each named in its field's documentation; switches take `0` or `1`). For the
    /// benchmark examples: the library never reads the environment. Variables of other names
    /// are ignored.
    ///
    /// # Errors
    /// A variable whose value does not parse (not a number, not one of the accepted words, or
    /// a number out of the accepted set), or is not Unicode.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
                name: name.to_string(),
                value: "(not Unicode)".to_string(),
                expected: "a Unicode value",
            }),
        })
    }

    /// [`KernelConfig::from_env`] with the variables read through `var`.
    fn from_lookup(
        var: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut c = KernelConfig::default();
        let bad = |name: &str, value: &str, expected| ConfigError {
            name: name.to_string(),
            value: value.to_string(),
            expected,
        };
        let num = |name: &str| -> Result<Option<usize>, ConfigError> {
            var(name)?
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad(name, &v, "a non-negative integer"))
                })
                .transpose()
        };
        let items = |name: &str| -> Result<Option<usize>, ConfigError> {
            match num(name)? {
                Some(i @ (1 | 2 | 4 | 8 | 16)) => Ok(Some(i)),
                Some(i) => Err(bad(name, &i.to_string(), "1, 2, 4, 8 or 16")),
                None => Ok(None),
            }
        };
        let pow2 = |name: &str| -> Result<Option<usize>, ConfigError> {
            match num(name)? {
                Some(s) if s.is_power_of_two() => Ok(Some(s)),
                Some(s) => Err(bad(name, &s.to_string(), "a power of two")),
                None => Ok(None),
            }
        };
        let word = |name: &str, yes: &str, no: &str| -> Result<Option<bool>, ConfigError> {
            match var(name)? {
                Some(v) if v == yes => Ok(Some(true)),
                Some(v) if v == no => Ok(Some(false)),
                Some(v) => Err(bad(
                    name,
                    &v,
                    if yes == "1" {
                        "0 or 1"
                    } else {
                        "one of two words"
                    },
                )),
                None => Ok(None),
            }
        };
        let switch = |name: &str| word(name, "1", "0");

        c.items_fwd = items("MAMBA_SSM_ITEMS_FWD")?;
        c.items_bwd = items("MAMBA_SSM_ITEMS_BWD")?;
        // any positive number, rounded up to a power of two where it is used
        c.max_units_fwd = num("MAMBA_SSM_UNITS_FWD")?;
        c.max_units_bwd = num("MAMBA_SSM_UNITS_BWD")?;
        c.chans_fwd = num("MAMBA_SSM_CHANS_FWD")?;
        c.chans_bwd = num("MAMBA_SSM_CHANS_BWD")?;
        if let Some(t) = num("MAMBA_SSM_BWD_THREADS")? {
            c.bwd_threads = t;
        }
        c.plane = switch("MAMBA_SSM_PLANE")?;
        c.stage_fwd = switch("MAMBA_SSM_STAGE")?;
        let flag = |name: &str, field: &mut bool| -> Result<(), ConfigError> {
            if let Some(v) = switch(name)? {
                *field = v;
            }
            Ok(())
        };
        flag("MAMBA_SSM_STAGE_BWD", &mut c.stage_bwd)?;
        flag("MAMBA_SSM_ONE_PLANE", &mut c.one_plane)?;
        flag("MAMBA_SSM_LEAN_SYNC", &mut c.lean_sync)?;
        flag("MAMBA_SSM_KEEP_B", &mut c.keep_b)?;
        flag("MAMBA_SSM_RED_SPLIT", &mut c.red_split)?;
        if let Some(fold) = word("MAMBA_SSM_BWD", "fold", "plain")? {
            c.backward_fold = fold;
        }
        c.pair_states = switch("MAMBA_SSM_PAIR")?;
        flag("MAMBA_SSM_SAVE", &mut c.save_states)?;
        flag("MAMBA_SSM_HOST_BACKWARD", &mut c.host_backward)?;
        flag("MAMBA_SSM_VEC", &mut c.vec_forward)?;
        flag("MAMBA_SSM_VEC_BWD", &mut c.vec_backward)?;
        c.vec_items_fwd = items("MAMBA_SSM_VEC_ITEMS")?;
        c.vec_items_bwd = items("MAMBA_SSM_VEC_BWD_ITEMS")?;
        c.vec_chans_fwd = num("MAMBA_SSM_VEC_CHANS")?;
        c.vec_chans_bwd = num("MAMBA_SSM_VEC_BWD_CHANS")?;
        c.vec_width = pow2("MAMBA_SSM_VEC_WIDTH")?;
        c.vec_seg_fwd = pow2("MAMBA_SSM_VEC_SEG")?;
        c.vec_seg_bwd = pow2("MAMBA_SSM_VEC_BWD_SEG")?;
        flag("MAMBA_SSM_VEC_CUBE_SUM", &mut c.vec_cube_sum)?;
        c.vec_batch_order = word("MAMBA_SSM_VEC_ORDER", "batch", "channel")?;
        c.vec_prefetch = switch("MAMBA_SSM_VEC_PREFETCH")?;
        Ok(c)
    }
}

/// A malformed `MAMBA_SSM_*` environment variable ([`KernelConfig::from_env`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value}: expected {expected}")]
pub struct ConfigError {
    /// The variable.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What it accepts.
    pub expected: &'static str,
}

/// Launch counts of the scan kernels (a testing aid, [`KernelConfig::launch_counter`]).
/// Clones share their counts: a config and its clones (those the `Fusion` and `Autodiff`
/// operations keep until they run) count into the same counter. Two counters compare equal
/// when they are the same counter.
#[derive(Clone, Default)]
pub struct LaunchCounter(Arc<[AtomicUsize; 4]>);

/// The scan kernels that [`LaunchCounter`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKernel {
    /// `scan_fwd`
    Forward,
    /// `scan_bwd`
    Backward,
    /// `scan_fwd_vec`
    VecForward,
    /// `scan_bwd_vec`
    VecBackward,
}

impl LaunchCounter {
    /// A fresh counter, every count zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `kernel` was launched under configs holding this counter.
    pub fn launches(&self, kernel: ScanKernel) -> usize {
        self.0[kernel as usize].load(Ordering::Relaxed)
    }

    /// Counts one launch of `kernel` (by the cubecl backend).
    #[cfg_attr(not(feature = "cubecl"), allow(dead_code))]
    pub(crate) fn count(&self, kernel: ScanKernel) {
        self.0[kernel as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl PartialEq for LaunchCounter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for LaunchCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ScanKernel::*;
        f.debug_struct("LaunchCounter")
            .field("forward", &self.launches(Forward))
            .field("backward", &self.launches(Backward))
            .field("vec_forward", &self.launches(VecForward))
            .field("vec_backward", &self.launches(VecBackward))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<KernelConfig, ConfigError> {
        KernelConfig::from_lookup(|name| {
            Ok(vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string()))
        })
    }

    #[test]
    fn no_variables_give_the_default() {
        assert_eq!(parse(&[]).unwrap(), KernelConfig::default());
    }

    #[test]
    fn variables_set_their_fields() {
        let c = parse(&[
            ("MAMBA_SSM_ITEMS_FWD", "16"),
            ("MAMBA_SSM_UNITS_BWD", "100"),
            ("MAMBA_SSM_CHANS_BWD", "8"),
            ("MAMBA_SSM_BWD_THREADS", "512"),
            ("MAMBA_SSM_PLANE", "0"),
            ("MAMBA_SSM_STAGE_BWD", "0"),
            ("MAMBA_SSM_RED_SPLIT", "1"),
            ("MAMBA_SSM_BWD", "plain"),
            ("MAMBA_SSM_SAVE", "0"),
            ("MAMBA_SSM_VEC", "0"),
            ("MAMBA_SSM_VEC_SEG", "4"),
            ("MAMBA_SSM_VEC_ORDER", "batch"),
            ("MAMBA_SSM_VEC_PREFETCH", "1"),
            ("OTHER", "x"),
        ])
        .unwrap();
        let want = KernelConfig {
            items_fwd: Some(16),
            max_units_bwd: Some(100),
            chans_bwd: Some(8),
            bwd_threads: 512,
            plane: Some(false),
            stage_bwd: false,
            red_split: true,
            backward_fold: false,
            save_states: false,
            vec_forward: false,
            vec_seg_fwd: Some(4),
            vec_batch_order: Some(true),
            vec_prefetch: Some(true),
            ..KernelConfig::default()
        };
        assert_eq!(c, want);
        assert!(parse(&[("MAMBA_SSM_BWD", "fold")]).unwrap().backward_fold);
    }

    #[test]
    fn malformed_values_are_errors() {
        for (k, v) in [
            ("MAMBA_SSM_ITEMS_BWD", "3"),
            ("MAMBA_SSM_CHANS_FWD", "four"),
            ("MAMBA_SSM_VEC", "yes"),
            ("MAMBA_SSM_BWD", "fast"),
            ("MAMBA_SSM_VEC_WIDTH", "3"),
            ("MAMBA_SSM_VEC_ORDER", "1"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err();
            assert_eq!((e.name.as_str(), e.value.as_str()), (k, v));
            assert!(e.to_string().starts_with(&format!("{k}={v}: expected")));
        }
    }

    #[test]
    fn counters_are_shared_by_clones() {
        let counter = LaunchCounter::new();
        let c = KernelConfig {
            launch_counter: Some(counter.clone()),
            ..KernelConfig::default()
        };
        let d = c.clone();
        assert_eq!(c, d);
        d.launch_counter
            .as_ref()
            .unwrap()
            .count(ScanKernel::VecForward);
        assert_eq!(counter.launches(ScanKernel::VecForward), 1);
        assert_eq!(counter.launches(ScanKernel::Forward), 0);
        let other = KernelConfig {
            launch_counter: Some(LaunchCounter::new()),
            ..KernelConfig::default()
        };
        assert_ne!(c, other);
    }
}
