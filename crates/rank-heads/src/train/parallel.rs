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
use std::collections::HashMap;

use burn::module::AutodiffModule;
#[cfg(feature = "collective")]
use burn::module::ParamId;
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
use super::ring::Ring;
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

/// How replicas exchange gradients: within a node through Burn's local collective, between
/// nodes over the [`Ring`] (held by each node's replica 0).
#[derive(Clone)]
pub(super) struct Comm {
    /// Gradients are concatenated into buckets of at most this many values (one exchange
    /// each; a tensor larger than a bucket goes alone).
    pub(super) bucket: usize,
    /// Replicas in this node.
    pub(super) local: usize,
    /// Nodes.
    pub(super) nodes: usize,
    /// The exchange with the other nodes (this node's replica 0 only).
    pub(super) ring: Option<std::sync::Arc<std::sync::Mutex<Ring>>>,
}

/// All-reduces a flat tensor: the mean over this node's replicas, then the sum over the nodes
/// (divided by the node count for `node_mean`); every replica receives the result.
#[cfg(feature = "collective")]
fn all_reduce_flat<B: Backend>(
    t: Tensor<B, 1>,
    peer: usize,
    comm: &Comm,
    node_mean: bool,
) -> Result<Tensor<B, 1>, RankError> {
    let float = |p| Tensor::<B, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(p));
    let who = || format!("replica {peer}");
    let mut t = t;
    if comm.local > 1 {
        let p = burn::collective::all_reduce::<B>(
            PeerId(peer as u32),
            t.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| collective_error(&who(), e))?;
        t = float(p);
    }
    if comm.nodes > 1 {
        match &comm.ring {
            Some(ring) => {
                let device = t.device();
                let mut v = t
                    .into_data()
                    .to_vec::<f32>()
                    .map_err(|e| RankError::Distributed(format!("{e:?}")))?;
                ring.lock()
                    .map_err(|_| RankError::Distributed("the ring's lock is poisoned".into()))?
                    .all_reduce_sum(&mut v)?;
                if node_mean {
                    let k = comm.nodes as f32;
                    v.iter_mut().for_each(|x| *x /= k);
                }
                let len = v.len();
                t = Tensor::from_data(burn::tensor::TensorData::new(v, [len]), &device);
                if comm.local > 1 {
                    burn::collective::broadcast::<B>(
                        PeerId(peer as u32),
                        Some(t.clone().into_primitive().tensor()),
                    )
                    .map_err(|e| collective_error(&who(), e))?;
                }
            }
            // another replica of this node: replica 0 brings the nodes' result
            None => {
                let p = burn::collective::broadcast::<B>(PeerId(peer as u32), None)
                    .map_err(|e| collective_error(&who(), e))?;
                t = float(p);
            }
        }
    }
    Ok(t)
}

/// Sums `values` over the nodes (the first-step consistency check: every replica of a node
/// passes the same values, so their mean is those values).
#[cfg(feature = "collective")]
pub(super) fn all_reduce_sum<B: Backend>(
    values: &[f32],
    device: &B::Device,
    peer: usize,
    comm: &Comm,
) -> Result<Vec<f32>, RankError> {
    let t = Tensor::<B, 1>::from_floats(values, device);
    let out = all_reduce_flat(t, peer, comm, false)?;
    out.into_data()
        .to_vec::<f32>()
        .map_err(|e| RankError::Distributed(format!("{e:?}")))
}

/// Averages the gradients of all replicas through Burn's collective all-reduce (every replica
/// receives the same tensors), with `extra` values (the replica's loss) averaged alongside.
/// The gradients travel as a few large flat buckets rather than one call per parameter: each
/// call costs a fixed latency, which dominates with hundreds of small tensors.
#[cfg(feature = "collective")]
pub(super) fn all_reduce_mean<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    extra: &[f32],
    device: &B::Device,
    peer: usize,
    comm: &Comm,
) -> Result<(GradientsParams, Vec<f32>), RankError> {
    type Flat<B> = Tensor<<B as AutodiffBackend>::InnerBackend, 1>;
    struct Take<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        pieces: Vec<(ParamId, Vec<usize>, Flat<B>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let dims = g.dims().to_vec();
                let n: usize = dims.iter().product();
                self.pieces.push((param.id, dims, g.reshape([n])));
            }
        }
    }
    struct Put<B: AutodiffBackend> {
        grads: GradientsParams,
        reduced: HashMap<ParamId, (Vec<usize>, Flat<B>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Put<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some((dims, flat)) = self.reduced.remove(&param.id) {
                let dims: [usize; D] = dims.try_into().expect("a parameter keeps its rank");
                self.grads.register(param.id, flat.reshape(dims));
            }
        }
    }
    let mut take = Take::<B> {
        grads: &mut grads,
        pieces: Vec::new(),
    };
    model.visit(&mut take);
    let (meta, mut flats): (Vec<_>, Vec<Flat<B>>) = take
        .pieces
        .into_iter()
        .map(|(id, dims, flat)| ((id, dims), flat))
        .unzip();
    flats.push(Tensor::from_floats(extra, device));
    // buckets: consecutive pieces up to `comm.bucket` values; the extra values always join
    // the last bucket
    let mut out: Vec<Flat<B>> = Vec::with_capacity(flats.len());
    let (mut bucket, mut size) = (Vec::new(), 0usize);
    let count = flats.len();
    for (i, flat) in flats.into_iter().enumerate() {
        let [len] = flat.dims();
        if !bucket.is_empty() && i + 1 < count && size + len > comm.bucket {
            reduce_bucket::<B::InnerBackend>(std::mem::take(&mut bucket), peer, comm, &mut out)?;
            size = 0;
        }
        bucket.push(flat);
        size += len;
    }
    reduce_bucket::<B::InnerBackend>(bucket, peer, comm, &mut out)?;
    let extra_out = out
        .pop()
        .expect("the extra values are the last piece")
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| RankError::Distributed(format!("{e:?}")))?;
    let mut put = Put::<B> {
        grads,
        reduced: meta
            .into_iter()
            .zip(out)
            .map(|((id, dims), flat)| (id, (dims, flat)))
            .collect(),
    };
    model.visit(&mut put);
    Ok((put.grads, extra_out))
}

/// All-reduces (mean) the concatenation of `bucket` and appends its pieces to `out`.
#[cfg(feature = "collective")]
fn reduce_bucket<B: Backend>(
    bucket: Vec<Tensor<B, 1>>,
    peer: usize,
    comm: &Comm,
    out: &mut Vec<Tensor<B, 1>>,
) -> Result<(), RankError> {
    let lens: Vec<usize> = bucket.iter().map(|t| t.dims()[0]).collect();
    let reduced = all_reduce_flat(Tensor::cat(bucket, 0), peer, comm, true)?;
    let mut at = 0;
    for len in lens {
        out.push(reduced.clone().narrow(0, at, len));
        at += len;
    }
    Ok(())
}

/// Without the `collective` feature there is never more than one replica.
#[cfg(not(feature = "collective"))]
#[allow(clippy::extra_unused_type_parameters)]
pub(super) fn all_reduce_sum<B: Backend>(
    _values: &[f32],
    _device: &B::Device,
    peer: usize,
    _comm: &Comm,
) -> Result<Vec<f32>, RankError> {
    Err(RankError::Distributed(format!(
        "replica {peer}: built without the `collective` feature"
    )))
}

/// Without the `collective` feature there is never more than one replica.
#[cfg(not(feature = "collective"))]
#[allow(clippy::extra_unused_type_parameters)]
pub(super) fn all_reduce_mean<B: AutodiffBackend, M: AutodiffModule<B>>(
    _model: &M,
    _grads: GradientsParams,
    _extra: &[f32],
    _device: &B::Device,
    peer: usize,
    _comm: &Comm,
) -> Result<(GradientsParams, Vec<f32>), RankError> {
    Err(RankError::Distributed(format!(
        "replica {peer}: built without the `collective` feature"
    )))
}

#[cfg(feature = "collective")]
pub(super) fn collective_error(who: &str, e: burn::collective::CollectiveError) -> RankError {
    RankError::Distributed(format!("{who}: collective operation failed: {e:?}"))
}

/// Leaves the local collective; after a failure, `reset` first (waking the replicas that wait
/// in an all-reduce: they stop with an error).
#[cfg(feature = "collective")]
pub(super) fn release<B: Backend>(peer: PeerId, reset: bool) {
    if reset {
        reset_collective::<B>();
    }
    let _ = finish_collective::<B>(peer);
}

/// After a failed all-reduce on replica 0: the first replica's own error, if one stopped.
pub(super) fn replica_failure<B: Backend>(links: &[Link<B>], own: RankError) -> RankError {
    for (r, link) in links.iter().enumerate() {
        if let Ok(Err(e)) = link.done.recv_timeout(std::time::Duration::from_secs(2))
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
    /// All-reduce the accumulated gradients (the replica's loss alongside), clip, AdamW step
    /// at `lr`; report that the step is done.
    /// `check`: first take part in the consistency check's all-reduce of these values.
    Step { lr: f64, check: Option<Vec<f32>> },
}

/// Replica 0's end of the channels to replica `r > 0`.
pub(super) struct Link<B: Backend> {
    pub(super) work: mpsc::Sender<Work<B>>,
    pub(super) done: mpsc::Receiver<Result<(), RankError>>,
}

impl<B: Backend> Link<B> {
    pub(super) fn send(&self, w: Work<B>) -> Result<(), RankError> {
        self.work
            .send(w)
            .map_err(|_| RankError::Distributed("a replica thread stopped".into()))
    }

    /// Waits for the replica to finish its step.
    pub(super) fn done(&self, rank: usize) -> Result<(), RankError> {
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
    pub(super) comm: Comm,
}

#[cfg(feature = "collective")]
impl<B: AutodiffBackend, M: AutodiffModule<B> + Objective<B>> Replica<B, M> {
    pub(super) fn run(
        mut self,
        work: mpsc::Receiver<Work<B>>,
        done: mpsc::Sender<Result<(), RankError>>,
    ) {
        let peer = PeerId(self.rank as u32);
        let result =
            register::<B::InnerBackend>(peer, self.device.clone(), self.collective.clone())
                .map_err(|e| collective_error(&format!("replica {}", self.rank), e))
                .and_then(|()| self.steps(&work, &done));
        if let Err(e) = result {
            release::<B::InnerBackend>(peer, true);
            let _ = done.send(Err(e));
            return;
        }
        release::<B::InnerBackend>(peer, false);
    }

    pub(super) fn steps(
        &mut self,
        work: &mpsc::Receiver<Work<B>>,
        done: &mpsc::Sender<Result<(), RankError>>,
    ) -> Result<(), RankError> {
        let cfg = self.config.clone();
        let seed = replica_seed(cfg.seed, self.rank);
        let mut acc = GradientsAccumulator::<M>::new();
        let mut loss: Option<Tensor<B::InnerBackend, 1>> = None;
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
                    loss = Some(match loss.take() {
                        Some(sum) => sum + l,
                        None => l,
                    });
                    acc.accumulate(&self.model, grads);
                }
                Work::Step { lr, check } => {
                    if let Some(values) = check {
                        all_reduce_sum::<B::InnerBackend>(
                            &values,
                            &self.device,
                            self.rank,
                            &self.comm,
                        )?;
                    }
                    let grads = std::mem::replace(&mut acc, GradientsAccumulator::new()).grads();
                    let (mut grads, _) = all_reduce_mean::<B, M>(
                        &self.model,
                        grads,
                        &[loss
                            .take()
                            .map_or(0.0, |l| read_f32(l).first().copied().unwrap_or(f32::NAN))],
                        &self.device,
                        self.rank,
                        &self.comm,
                    )?;
                    // the same all-reduced gradients as replica 0: the same norm, clip and step
                    let norm = global_norm::<B, M>(&self.model, &grads)
                        .map_or(0.0, |n| read_f32(n).first().map_or(f64::NAN, |&v| v as f64));
                    if let Some(max) = cfg.grad_clip_norm
                        && norm > max
                    {
                        scale_grads::<B, M>(&self.model, &mut grads, max / (norm + 1e-6));
                    }
                    let model = self.model.clone();
                    self.model = self.optim.step(lr, model, grads);
                    if done.send(Ok(())).is_err() {
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
