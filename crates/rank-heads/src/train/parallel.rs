//! Data parallelism: one replica per device on its own thread, gradients averaged by
//! all-reduce, a replica's failure reported by replica 0. Without the `collective` feature only
//! the single-replica path is reachable (`Trainer::with_devices` refuses several devices).
#![cfg_attr(not(feature = "collective"), allow(dead_code, unused_imports))]

use std::sync::mpsc;

#[cfg(feature = "collective")]
use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, finish_collective, register, reset_collective,
};
#[cfg(feature = "collective")]
use burn::module::AutodiffModule;
use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
#[cfg(feature = "collective")]
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::{RankError, TokenBatch};

use super::Objective;
use super::config::TrainConfig;
use super::grads::{global_norm, scale_grads};
use super::trainer::*;

/// Rows `[r * rows / n, (r + 1) * rows / n)` for each replica `r` (`rows` divisible by `n`).
pub(super) fn split_rows<B: Backend>(batch: TokenBatch<B>, n: usize) -> Vec<TokenBatch<B>> {
    let [rows, _] = batch.input_ids.dims();
    let per = rows / n;
    (0..n)
        .map(|r| TokenBatch {
            input_ids: batch.input_ids.clone().narrow(0, r * per, per),
            token_type_ids: batch.token_type_ids.clone().narrow(0, r * per, per),
            attention_mask: batch.attention_mask.clone().narrow(0, r * per, per),
        })
        .collect()
}

/// Averages the gradients of all replicas through Burn's collective all-reduce (every
/// replica receives the same tensors); parameters are reduced in `ParamId` order.
#[cfg(feature = "collective")]
pub(super) fn all_reduce_mean<B: AutodiffBackend>(
    grads: GradientsParams,
    rank: usize,
) -> Result<GradientsParams, RankError> {
    grads
        .all_reduce::<B::InnerBackend>(PeerId(rank as u32), ReduceOperation::Mean)
        .map_err(|e| collective_error(rank, e))
}

/// Without the `collective` feature there is never more than one replica.
#[cfg(not(feature = "collective"))]
#[allow(clippy::extra_unused_type_parameters)]
pub(super) fn all_reduce_mean<B: AutodiffBackend>(
    _grads: GradientsParams,
    rank: usize,
) -> Result<GradientsParams, RankError> {
    Err(RankError::Distributed(format!(
        "replica {rank}: built without the `collective` feature"
    )))
}

#[cfg(feature = "collective")]
pub(super) fn collective_error(rank: usize, e: burn::collective::CollectiveError) -> RankError {
    RankError::Distributed(format!(
        "replica {rank}: collective operation failed: {e:?}"
    ))
}

/// After a failed all-reduce on replica 0: the first replica's own error, if one stopped.
pub(super) fn replica_failure<B: Backend>(links: &[Link<B>], own: RankError) -> RankError {
    for (r, link) in links.iter().enumerate() {
        if let Ok(Err(e)) = link.done.recv_timeout(std::time::Duration::from_secs(10))
            && !matches!(e, RankError::Distributed(_))
        {
            return RankError::Distributed(format!("replica {}: {e}", r + 1));
        }
    }
    own
}

/// Work for a replica other than 0.
pub(super) enum Work<B: Backend> {
    /// Forward and backward on this shard of global micro-batch `index`.
    Micro { index: usize, batch: TokenBatch<B> },
    /// All-reduce the accumulated gradients, clip, AdamW step at `lr`; report the loss.
    Step { lr: f64 },
}

/// Replica 0's end of the channels to replica `r > 0`.
pub(super) struct Link<B: Backend> {
    pub(super) work: mpsc::Sender<Work<B>>,
    pub(super) done: mpsc::Receiver<Result<f64, RankError>>,
}

impl<B: Backend> Link<B> {
    pub(super) fn send(&self, w: Work<B>) -> Result<(), RankError> {
        self.work
            .send(w)
            .map_err(|_| RankError::Distributed("a replica thread stopped".into()))
    }

    /// The replica's summed micro-batch losses of the step just done.
    pub(super) fn done(&self, rank: usize) -> Result<f64, RankError> {
        match self.done.recv() {
            Ok(r) => r,
            Err(_) => Err(RankError::Distributed(format!(
                "replica {rank} stopped without reporting its step"
            ))),
        }
    }
}

/// A model replica on its own device and thread (replicas 1..N; replica 0 is the trainer).
#[cfg(feature = "collective")]
pub(super) struct Replica<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub(super) rank: usize,
    pub(super) device: B::Device,
    pub(super) model: M,
    pub(super) optim: Adam<M, B>,
    pub(super) config: TrainConfig,
    pub(super) collective: CollectiveConfig,
}

#[cfg(feature = "collective")]
impl<B: AutodiffBackend, M: AutodiffModule<B> + Objective<B>> Replica<B, M> {
    pub(super) fn run(
        mut self,
        work: mpsc::Receiver<Work<B>>,
        done: mpsc::Sender<Result<f64, RankError>>,
    ) {
        let peer = PeerId(self.rank as u32);
        let result =
            register::<B::InnerBackend>(peer, self.device.clone(), self.collective.clone())
                .map_err(|e| collective_error(self.rank, e))
                .and_then(|()| self.steps(&work, &done));
        if let Err(e) = result {
            // wakes replica 0 (and the others) if they wait in an all-reduce
            reset_collective::<B::InnerBackend>();
            let _ = done.send(Err(e));
        }
        let _ = finish_collective::<B::InnerBackend>(peer);
    }

    pub(super) fn steps(
        &mut self,
        work: &mpsc::Receiver<Work<B>>,
        done: &mpsc::Sender<Result<f64, RankError>>,
    ) -> Result<(), RankError> {
        let cfg = self.config.clone();
        let seed = replica_seed(cfg.seed, self.rank);
        let mut acc = GradientsAccumulator::<M>::new();
        let mut loss = 0f64;
        // the channel closes when replica 0 is done
        while let Ok(w) = work.recv() {
            match w {
                Work::Micro { index, batch } => {
                    let batch = TokenBatch {
                        input_ids: batch.input_ids.to_device(&self.device),
                        token_type_ids: batch.token_type_ids.to_device(&self.device),
                        attention_mask: batch.attention_mask.to_device(&self.device),
                    };
                    B::seed(&self.device, seed_for(seed, index));
                    let (l, grads) = micro_step(&self.model, &batch, &cfg)?;
                    loss += l;
                    acc.accumulate(&self.model, grads);
                }
                Work::Step { lr } => {
                    let grads = std::mem::replace(&mut acc, GradientsAccumulator::new()).grads();
                    let mut grads = all_reduce_mean::<B>(grads, self.rank)?;
                    // the same all-reduced gradients as replica 0: the same norm, clip and step
                    let norm = global_norm::<B, M>(&self.model, &grads);
                    if let Some(max) = cfg.grad_clip_norm
                        && norm > max
                    {
                        scale_grads::<B, M>(&self.model, &mut grads, max / (norm + 1e-6));
                    }
                    let model = self.model.clone();
                    self.model = self.optim.step(lr, model, grads);
                    if done.send(Ok(std::mem::take(&mut loss))).is_err() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The seed of replica `rank`'s random ops (replica 0 uses `seed` itself).
pub(super) fn replica_seed(seed: u64, rank: usize) -> u64 {
    if rank == 0 {
        seed
    } else {
        seed_for(seed ^ 0xD1B5_4A32_D192_ED03, rank)
    }
}

/// Initialises every lazy parameter in place (see [`Param`]'s lazy initialisation).
pub(super) struct InitParams;

impl<B: Backend> ModuleVisitor<B> for InitParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, burn::tensor::Int>>) {
        let _ = param.val();
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, burn::tensor::Bool>>) {
        let _ = param.val();
    }
}
