//! The loop: micro-batches, accumulation, clipping, AdamW steps, evaluation, the JSONL log
//! and atomic checkpoints with exact resume.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(feature = "collective")]
use std::sync::mpsc;
use std::time::Instant;

#[cfg(feature = "collective")]
use burn::collective::{CollectiveConfig, PeerId, register, reset_collective};
use burn::module::AutodiffModule;
use burn::optim::{
    AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer, adaptor::OptimizerAdaptor,
};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::{RankError, TokenBatch};

use super::grads::{global_norm, scale_grads};
use super::nodes::{Fingerprint, Fnv, NodeSetup, WeightsHash};
use super::parallel::*;
#[cfg(feature = "collective")]
use super::ring::Ring;
use super::{Objective, TrainConfig, TrainReport};

/// Checkpoint state besides the model and optimizer records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    step: usize,
    config: TrainConfig,
}

pub(super) type Adam<M, B> = OptimizerAdaptor<AdamW, M, B>;

/// An evaluation callback: scores the inference copy of the model (higher is better).
pub type EvalFn<'a, I> = &'a mut dyn FnMut(&I) -> Result<f64, RankError>;
pub(super) type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

/// A model being trained, with its optimizer and step counter.
pub struct Trainer<B: AutodiffBackend, M: AutodiffModule<B> + Objective<B>> {
    /// The model (moved in and out of the optimizer at each step).
    pub model: M,
    optim: Adam<M, B>,
    /// Optimizer steps done.
    pub step: usize,
    config: TrainConfig,
    checkpoint_dir: Option<PathBuf>,
    log: Option<(PathBuf, File)>,
    device: B::Device,
    /// Data-parallel replicas (`replicas[0] == device`); empty or one: single device.
    replicas: Vec<B::Device>,
    /// This process's place in a multi-node run.
    nodes: Option<NodeSetup>,
    /// Values per gradient bucket of the all-reduce.
    bucket: usize,
}

/// Default values per all-reduce bucket: 25 MiB of `f32`, as PyTorch's DDP.
pub const DEFAULT_BUCKET_VALUES: usize = 25 * 1024 * 1024 / 4;

impl<B: AutodiffBackend, M: AutodiffModule<B> + Objective<B>> Trainer<B, M> {
    /// A fresh run.
    pub fn new(model: M, config: TrainConfig, device: B::Device) -> Result<Self, RankError> {
        config.check()?;
        let optim = new_optim::<B, M>(&config);
        Ok(Trainer {
            model,
            optim,
            step: 0,
            config,
            checkpoint_dir: None,
            log: None,
            device,
            replicas: Vec::new(),
            nodes: None,
            bucket: DEFAULT_BUCKET_VALUES,
        })
    }

    /// Writes checkpoints under `dir` (`step-00000100/`, and `latest` naming the newest).
    /// Unfinished checkpoints a killed run left there (`.tmp-*` folders) are removed.
    pub fn with_checkpoints(mut self, dir: &Path) -> Result<Self, RankError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        remove_unfinished_checkpoints(dir)?;
        self.checkpoint_dir = Some(dir.to_path_buf());
        Ok(self)
    }

    /// Appends JSONL metrics to `path`. Lines a killed run logged past the step this trainer
    /// starts from (0, or a resumed checkpoint's), and a line cut short by the kill, are
    /// dropped first (the file is rewritten atomically), so that every step is logged once.
    pub fn with_log(mut self, path: &Path) -> Result<Self, RankError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let keep: Vec<&str> = text
                    .split_inclusive('\n')
                    .take_while(|l| l.ends_with('\n'))
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                            v["step"].as_u64().is_some_and(|s| s <= self.step as u64)
                        })
                    })
                    .collect();
                if keep.iter().map(|l| l.len()).sum::<usize>() != text.len() {
                    model_io::write_atomic(path, keep.concat().as_bytes()).map_err(|e| {
                        RankError::Io {
                            path: path.into(),
                            message: e.to_string(),
                        }
                    })?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, e)),
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        self.log = Some((path.to_path_buf(), f));
        Ok(self)
    }

    /// Trains data-parallel on `devices`, one model replica (and one thread) per device;
    /// `devices[0]` must be the trainer's own device (where the model lives). Every micro-batch
    /// from `data` is the *global* micro-batch: its groups are split in order into
    /// `devices.len()` equal contiguous shards (shard `r` to replica `r`), each replica runs
    /// forward and backward on its shard, and the accumulated gradients are averaged across the
    /// replicas through Burn's collective all-reduce (`burn::collective`, via
    /// [`GradientsParams::all_reduce`]) before clipping and the AdamW step, which every replica
    /// applies to its own copy. The effective batch, learning-rate schedule, logged loss,
    /// checkpoints (written by replica 0 only, resumable on any number of devices) and the
    /// result are those of one device with the same global batch, up to floating-point
    /// summation order. The number of groups in every micro-batch must be a multiple of the
    /// number of devices. A device may be listed more than once (several replicas on one
    /// device, e.g. on the CPU, which NdArray exposes as a single device).
    ///
    /// Dropout masks are drawn per replica from `(seed, micro-batch, replica)`, so with dropout
    /// the run is not bitwise equal to a single-device run (and on NdArray, whose random
    /// generator is process-wide, replicas drawing at once make dropout non-reproducible).
    ///
    /// One data-parallel run at a time per backend type in a process: Burn's local collective
    /// server is process-wide.
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Result<Self, RankError> {
        match devices.first() {
            None => return Err(RankError::Config("no devices given".into())),
            Some(d) if *d != self.device => {
                return Err(RankError::Config(format!(
                    "the first device ({d:?}) must be the trainer's own device ({:?}), where the model lives",
                    self.device
                )));
            }
            Some(_) => {}
        }
        if devices.len() > u32::MAX as usize {
            return Err(RankError::Config("too many devices".into()));
        }
        if cfg!(not(feature = "collective")) && devices.len() > 1 {
            return Err(RankError::Config(format!(
                "{} devices: data-parallel training needs the `collective` feature of rank-heads \
                 (this build was made without it)",
                devices.len()
            )));
        }
        self.replicas = devices;
        Ok(self)
    }

    /// The data-parallel devices (empty for a single device).
    pub fn devices(&self) -> &[B::Device] {
        &self.replicas
    }

    /// Trains as node `setup.rank` of `setup.nodes` processes (on one or several hosts): every
    /// node runs the same training with its own rank and address; they meet at rank 0 (the
    /// master) and form a ring over TCP. Combined with [`with_devices`](Self::with_devices),
    /// each node has the same number of local replicas; global replica `rank * local + r`
    /// trains shard `rank * local + r` of every global micro-batch, so the batch, schedule,
    /// clipping and logged loss are a single device's, as within one host. Gradients are
    /// averaged within the node by Burn's collective, then across the nodes by a ring
    /// all-reduce (Burn 0.21's own global level hangs after its first all-reduce), in
    /// buckets (see [`with_bucket_values`](Self::with_bucket_values)).
    ///
    /// Every node must compute the same global micro-batches (same data, settings and seed)
    /// and start from the same weights: at the first step the nodes compare hashes of the
    /// settings, weights, start step, first micro-batch and device count, and all stop with an
    /// error naming what differs. Only rank 0 writes the log and checkpoints: resume every
    /// node from the same checkpoint ([`load_checkpoint`](Self::load_checkpoint) on ranks
    /// other than 0, which must not clean rank 0's folder). Checkpoints hold no topology, so a
    /// run resumes on any number of nodes and devices.
    ///
    /// A node that stops makes the others stop with an error at once (its connections close);
    /// one that hangs or never comes, after `setup.timeout`. The nodes listen on their
    /// addresses with no authentication: use them on a trusted network.
    pub fn with_nodes(mut self, setup: NodeSetup) -> Result<Self, RankError> {
        setup.check()?;
        if cfg!(not(feature = "collective")) {
            return Err(RankError::Config(
                "multi-node training needs the `collective` feature of rank-heads (this build \
                 was made without it)"
                    .into(),
            ));
        }
        self.nodes = Some(setup);
        Ok(self)
    }

    /// Gradients are all-reduced in buckets of at most `values` numbers (one collective call
    /// each; default [`DEFAULT_BUCKET_VALUES`]). `1` sends every parameter alone.
    pub fn with_bucket_values(mut self, values: usize) -> Result<Self, RankError> {
        if values == 0 {
            return Err(RankError::Config("the bucket size must be positive".into()));
        }
        self.bucket = values;
        Ok(self)
    }

    /// Whether this process writes the log and checkpoints (not a multi-node rank other
    /// than 0).
    pub fn is_writer(&self) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.rank == 0)
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Resumes from the newest checkpoint in `dir` (model, optimizer moments, step) and keeps
    /// writing checkpoints there; unfinished ones are removed first. `model` must have the
    /// checkpointed architecture. Returns `Ok(None)` when `dir` holds none.
    pub fn resume(
        model: M,
        config: TrainConfig,
        dir: &Path,
        device: B::Device,
    ) -> Result<Option<Self>, RankError> {
        let Some(mut t) = Self::load_checkpoint(model, config, dir, device)? else {
            return Ok(None);
        };
        remove_unfinished_checkpoints(dir)?;
        t.checkpoint_dir = Some(dir.to_path_buf());
        Ok(Some(t))
    }

    /// Reads the newest checkpoint in `dir` as [`resume`](Self::resume) does, but leaves
    /// `dir` untouched and writes no checkpoints: a multi-node rank other than 0 starting from
    /// rank 0's checkpoint.
    pub fn load_checkpoint(
        model: M,
        config: TrainConfig,
        dir: &Path,
        device: B::Device,
    ) -> Result<Option<Self>, RankError> {
        let latest = dir.join("latest");
        let name = match std::fs::read_to_string(&latest) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&latest, e)),
        };
        let ckpt = dir.join(&name);
        let state_path = ckpt.join("state.json");
        let state: CheckpointState = serde_json::from_str(
            &std::fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, e))?,
        )
        .map_err(|e| RankError::Io {
            path: state_path.clone(),
            message: format!("line {}: {e}", e.line()),
        })?;
        if state.config.total_steps != config.total_steps
            || state.config.accumulation != config.accumulation
            || state.config.seed != config.seed
            || state.config.group_size != config.group_size
        {
            return Err(RankError::Config(format!(
                "{}: checkpoint was written with another schedule (total_steps, accumulation, seed or group_size differ)",
                state_path.display()
            )));
        }
        let rec = Rec::new();
        let model = model
            .load_file(ckpt.join("model"), &rec, &device)
            .map_err(|e| RankError::record(&ckpt.join("model.mpk"), e))?;
        let optim_record = rec
            .load(ckpt.join("optim"), &device)
            .map_err(|e| RankError::record(&ckpt.join("optim.mpk"), e))?;
        let mut t = Trainer::new(model, config, device)?;
        t.optim = t.optim.load_record(optim_record);
        t.step = state.step;
        Ok(Some(t))
    }

    /// Trains until `total_steps` or `max_steps` more steps, whichever comes first.
    /// `data(i)` returns micro-batch `i` (rows in groups of `group_size`, positive first);
    /// `eval` scores the inference copy of the model (higher is better). With several
    /// [devices](Self::with_devices), `data(i)` is still the global micro-batch `i`: it is
    /// split across the replicas.
    pub fn train(
        &mut self,
        max_steps: Option<usize>,
        data: &mut dyn FnMut(usize) -> Result<TokenBatch<B>, RankError>,
        eval: Option<EvalFn<'_, M::InnerModule>>,
    ) -> Result<TrainReport, RankError> {
        if self.replicas.len() <= 1 && self.nodes.is_none() {
            return self.run_steps(max_steps, data, eval, &[], None);
        }
        self.train_parallel(max_steps, data, eval)
    }

    #[cfg(not(feature = "collective"))]
    fn train_parallel(
        &mut self,
        _max_steps: Option<usize>,
        _data: &mut dyn FnMut(usize) -> Result<TokenBatch<B>, RankError>,
        _eval: Option<EvalFn<'_, M::InnerModule>>,
    ) -> Result<TrainReport, RankError> {
        // with_devices refuses several devices without the feature
        Err(RankError::Config(
            "data-parallel training needs the `collective` feature of rank-heads".into(),
        ))
    }

    #[cfg(feature = "collective")]
    fn train_parallel(
        &mut self,
        max_steps: Option<usize>,
        data: &mut dyn FnMut(usize) -> Result<TokenBatch<B>, RankError>,
        eval: Option<EvalFn<'_, M::InnerModule>>,
    ) -> Result<TrainReport, RankError> {
        let replicas = if self.replicas.is_empty() {
            vec![self.device.clone()]
        } else {
            self.replicas.clone()
        };
        let n = replicas.len();
        let collective = CollectiveConfig::default().with_num_devices(n);
        let rank = self.nodes.as_ref().map_or(0, |s| s.rank);
        let ring = match &self.nodes {
            Some(setup) if setup.nodes > 1 => Some(std::sync::Arc::new(std::sync::Mutex::new(
                Ring::connect(setup)?,
            ))),
            _ => None,
        };
        let comm = Comm {
            bucket: self.bucket,
            local: n,
            nodes: self.nodes.as_ref().map_or(1, |s| s.nodes as usize),
            ring: None,
        };
        // the global replica rank is the peer id
        let first = rank as usize * n;
        // a previous run that failed may have left peers registered
        reset_collective::<B::InnerBackend>();
        // Parameters created by an initializer (the scoring head of a fresh model) are lazy in
        // Burn: a clone of an uninitialised parameter initialises on its own, from whatever the
        // random state is then. Initialise them on replica 0 first, under the seed the first
        // micro-batch sets (where a single-device run initialises them, in its first forward
        // pass), so every replica starts from the same weights as a single-device run.
        B::seed(
            &self.device,
            seed_for(self.config.seed, self.step * self.config.accumulation),
        );
        self.model.visit(&mut InitParams);
        std::thread::scope(|s| {
            let mut links = Vec::with_capacity(n - 1);
            for (r, device) in replicas.iter().enumerate().skip(1) {
                let (work_tx, work_rx) = mpsc::channel();
                let (done_tx, done_rx) = mpsc::channel();
                let model = self.model.clone().fork(device);
                let optim = new_optim::<B, M>(&self.config).load_record(self.optim.to_record());
                let worker = Replica {
                    rank: first + r,
                    device: device.clone(),
                    model,
                    optim,
                    config: self.config.clone(),
                    collective: collective.clone(),
                    comm: comm.clone(),
                };
                s.spawn(move || worker.run(work_rx, done_tx));
                links.push(Link {
                    work: work_tx,
                    done: done_rx,
                });
            }
            let comm = Comm { ring, ..comm };
            let result =
                register::<B::InnerBackend>(PeerId(first as u32), self.device.clone(), collective)
                    .map_err(|e| collective_error("replica 0", e))
                    .and_then(|()| self.run_steps(max_steps, data, eval, &links, Some(&comm)));
            // after a failure, wakes replicas waiting in an all-reduce; they stop with an error
            release::<B::InnerBackend>(PeerId(first as u32), result.is_err());
            drop(links); // replicas stop when their work channel closes
            result
        })
    }

    fn run_steps(
        &mut self,
        max_steps: Option<usize>,
        data: &mut dyn FnMut(usize) -> Result<TokenBatch<B>, RankError>,
        mut eval: Option<EvalFn<'_, M::InnerModule>>,
        links: &[Link<B>],
        comm: Option<&Comm>,
    ) -> Result<TrainReport, RankError> {
        let cfg = self.config.clone();
        // local replicas, nodes, and the global replica count
        let n = links.len() + 1;
        let (nodes, rank) = self
            .nodes
            .as_ref()
            .map_or((1, 0), |s| (s.nodes as usize, s.rank as usize));
        let global = n * nodes;
        let peer = rank * n;
        // the consistency check's data hash (multi-node runs, first micro-batch of this call)
        let mut check_data: Option<u64> = None;
        let end = match max_steps {
            Some(n) => (self.step + n).min(cfg.total_steps),
            None => cfg.total_steps,
        };
        let start_step = self.step;
        let bar = Progress::new(cfg.progress, cfg.total_steps, self.step);
        let t0 = Instant::now();
        let mut tokens_total = 0usize;
        let (mut window_loss, mut window_n) = (0f64, 0usize);
        let mut last_loss = f64::NAN;
        let mut evals = Vec::new();
        while self.step < end {
            let step = self.step;
            let lr = cfg.lr_at(step);
            let mut acc = GradientsAccumulator::<M>::new();
            // the step's loss and token count stay on the device until its backward is queued
            let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
            let mut token_sum: Option<Tensor<B, 1, Int>> = None;
            for micro in 0..cfg.accumulation {
                let index = step * cfg.accumulation + micro;
                B::seed(&self.device, seed_for(cfg.seed, index));
                let batch = data(index)?;
                let [rows, _] = batch.input_ids.dims();
                if rows % (cfg.group_size * global) != 0 {
                    return Err(RankError::Input(if global == 1 {
                        format!(
                            "micro-batch {index} has {rows} rows, not a multiple of the group size {}",
                            cfg.group_size
                        )
                    } else {
                        format!(
                            "micro-batch {index} has {rows} rows: {} groups of {} cannot be split evenly across {}",
                            rows as f64 / cfg.group_size as f64,
                            cfg.group_size,
                            if nodes == 1 {
                                format!("{n} devices")
                            } else {
                                format!("{global} replicas ({nodes} nodes of {n} devices)")
                            }
                        )
                    }));
                }
                let tokens = batch.attention_mask.clone().sum();
                token_sum = Some(match token_sum.take() {
                    Some(t) => t + tokens,
                    None => tokens,
                });
                if self.nodes.is_some() && step == start_step && micro == 0 {
                    check_data = Some(batch_hash(&batch));
                }
                // this node's block of the global micro-batch
                let batch = if nodes == 1 {
                    batch
                } else {
                    split_rows(batch, nodes).swap_remove(rank)
                };
                let batch = if n == 1 {
                    batch
                } else {
                    let mut shards = split_rows(batch, n).into_iter();
                    let own = shards.next().expect("n >= 1 shards");
                    for (link, shard) in links.iter().zip(shards) {
                        link.send(Work::Micro {
                            index,
                            batch: shard,
                        })?;
                    }
                    own
                };
                let (loss, grads) = micro_step(&self.model, &batch, &cfg)?;
                loss_sum = Some(match loss_sum.take() {
                    Some(l) => l + loss,
                    None => loss,
                });
                acc.accumulate(&self.model, grads);
            }
            let loss_sum = loss_sum.ok_or_else(|| {
                RankError::Config("accumulation must be at least one micro-batch".into())
            })?;
            let mut grads = acc.grads();
            // the multi-device runs read the loss here, for the all-reduce
            let mut reduced_loss = None;
            if let Some(comm) = comm {
                let check = check_data.take().map(|data| self.fingerprint(data, n));
                let encoded = check.as_ref().map(Fingerprint::encode);
                for link in links {
                    link.send(Work::Step {
                        lr,
                        check: encoded.clone(),
                    })?;
                }
                if let (Some(check), Some(encoded)) = (check, encoded) {
                    let summed =
                        all_reduce_sum::<B::InnerBackend>(&encoded, &self.device, peer, comm)
                            .map_err(|e| replica_failure(links, e))?;
                    let differ = check.differing(&summed, nodes);
                    if !differ.is_empty() {
                        let hint = if differ.contains(&"start step") {
                            "; a node that started from another checkpoint, or from none: do \
                             all nodes see the same checkpoint folder?"
                        } else {
                            ""
                        };
                        return Err(RankError::Distributed(format!(
                            "node {rank}: the nodes differ in: {} (every node must run the same \
                             command, on the same data, from the same weights or checkpoint{hint})",
                            differ.join(", ")
                        )));
                    }
                }
                let local = read_f32(loss_sum.clone())
                    .first()
                    .copied()
                    .unwrap_or(f32::NAN);
                let (reduced, loss) =
                    all_reduce_mean::<B, M>(&self.model, grads, &[local], &self.device, peer, comm)
                        .map_err(|e| replica_failure(links, e))?;
                grads = reduced;
                // the logged loss is the global batch's: the mean of the replicas' shard means
                reduced_loss = Some(loss[0] as f64);
            }
            // The host waits for the device once per step, when the backward passes are queued:
            // the loss, the gradient norm (one read) and the token count, which the clipping
            // and the divergence check need before the update.
            let read = read_f32(match global_norm::<B, M>(&self.model, &grads) {
                Some(n) => Tensor::cat(vec![loss_sum.cast(DType::F32), n], 0),
                None => loss_sum.cast(DType::F32),
            });
            if let Some(t) = token_sum {
                tokens_total += t.into_scalar().elem::<i64>() as usize;
            }
            let step_loss =
                reduced_loss.unwrap_or_else(|| read.first().map_or(f64::NAN, |&l| l as f64));
            let norm = read.get(1).map_or(0.0, |&n| n as f64);
            if let Some(max) = cfg.grad_clip_norm
                && norm > max
            {
                scale_grads::<B, M>(&self.model, &mut grads, max / (norm + 1e-6));
            }
            if !step_loss.is_finite() || (global > 1 && !norm.is_finite()) {
                // weights that were already broken (a loaded checkpoint or model with NaN or
                // inf values) are not a learning-rate problem: say which it is
                let broken = super::grads::non_finite_tensors::<B, M>(&self.model);
                return Err(RankError::Input(if broken > 0 {
                    format!(
                        "loss is {step_loss} at step {step}: {broken} of the model's weight \
                         tensors hold NaN or infinite values before this step's update (a \
                         corrupt checkpoint or model file{})",
                        if step > start_step {
                            ", or a divergence in an earlier step"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!(
                        "loss is {step_loss} (gradient norm {norm}) at step {step} with finite \
                         weights: diverged (lower the learning rate?)"
                    )
                }));
            }
            let model = self.model.clone();
            self.model = self.optim.step(lr, model, grads);
            // the local replicas have stepped too
            for (r, link) in links.iter().enumerate() {
                link.done(peer + r + 1)?;
            }
            self.step += 1;
            window_loss += step_loss;
            window_n += 1;
            let elapsed = t0.elapsed().as_secs_f64();
            let tps = tokens_total as f64 / elapsed.max(1e-9);
            bar.update(self.step, || format!("loss {step_loss:.4}  {tps:.0} tok/s"));
            if self.step.is_multiple_of(cfg.log_every) || self.step == end {
                last_loss = window_loss / window_n as f64;
                let mut line = serde_json::json!({
                    "step": self.step, "lr": lr, "loss": last_loss, "grad_norm": norm,
                    "tokens": tokens_total, "tokens_per_s": tps, "elapsed_s": elapsed,
                });
                if global > 1 {
                    line["devices"] = global.into();
                }
                if nodes > 1 {
                    line["nodes"] = nodes.into();
                }
                self.log_line(line)?;
                (window_loss, window_n) = (0.0, 0);
            }
            let now = self.step;
            let at = |every: Option<usize>| {
                every.is_some_and(|e| e > 0 && now.is_multiple_of(e)) || now == cfg.total_steps
            };
            if at(cfg.eval_every)
                && let Some(f) = eval.as_mut()
            {
                let v = f(&self.model.valid())?;
                evals.push((self.step, v));
                self.log_line(serde_json::json!({"step": self.step, "eval": v}))?;
            }
            if self.checkpoint_dir.is_some()
                && self.is_writer()
                && (at(cfg.checkpoint_every) || self.step == end)
            {
                self.save_checkpoint()?;
            }
        }
        bar.finish();
        Ok(TrainReport {
            steps: self.step - start_step,
            last_loss,
            tokens_per_s: tokens_total as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            evals,
        })
    }

    /// What every node must agree on (see [`Trainer::with_nodes`]).
    fn fingerprint(&self, first_batch: u64, local_replicas: usize) -> Fingerprint {
        let mut settings = self.config.clone();
        settings.progress = false;
        let settings = serde_json::to_vec(&settings).unwrap_or_default();
        let mut weights = WeightsHash(Fnv::new());
        self.model.visit(&mut weights);
        Fingerprint {
            fields: vec![
                ("training settings", Fnv::of(&settings)),
                ("model weights", weights.0.0),
                ("start step", self.step as u64),
                ("first micro-batch", first_batch),
                ("devices per node", local_replicas as u64),
            ],
        }
    }

    fn log_line(&mut self, v: serde_json::Value) -> Result<(), RankError> {
        if !self.is_writer() {
            return Ok(());
        }
        if let Some((path, f)) = self.log.as_mut() {
            writeln!(f, "{v}").map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }

    /// Writes `step-{step}/` (model, optimizer, state) to a temporary directory, syncs it,
    /// renames it into place, then points `latest` at it (atomically). A crash at any point
    /// leaves the previous checkpoint intact and `latest` valid.
    pub fn save_checkpoint(&self) -> Result<PathBuf, RankError> {
        let dir = self
            .checkpoint_dir
            .as_ref()
            .ok_or_else(|| RankError::Config("no checkpoint directory set".into()))?;
        let name = format!("step-{:08}", self.step);
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(dir)
            .map_err(|e| io_err(dir, e))?;
        let rec = Rec::new();
        self.model
            .clone()
            .save_file(tmp.path().join("model"), &rec)
            .map_err(|e| RankError::Io {
                path: tmp.path().join("model.mpk"),
                message: e.to_string(),
            })?;
        rec.record(self.optim.to_record(), tmp.path().join("optim"))
            .map_err(|e| RankError::Io {
                path: tmp.path().join("optim.mpk"),
                message: e.to_string(),
            })?;
        let state = serde_json::to_string_pretty(&CheckpointState {
            step: self.step,
            config: self.config.clone(),
        })
        .map_err(|e| RankError::Config(e.to_string()))?;
        let state_path = tmp.path().join("state.json");
        std::fs::write(&state_path, state).map_err(|e| io_err(&state_path, e))?;
        for f in ["model.mpk", "optim.mpk", "state.json"] {
            let p = tmp.path().join(f);
            File::open(&p)
                .and_then(|h| h.sync_all())
                .map_err(|e| io_err(&p, e))?;
        }
        let target = dir.join(&name);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| io_err(&target, e))?;
        }
        let tmp_path = tmp.keep();
        std::fs::rename(&tmp_path, &target).map_err(|e| io_err(&target, e))?;
        model_io::write_atomic(&dir.join("latest"), name.as_bytes()).map_err(|e| {
            RankError::Io {
                path: dir.join("latest"),
                message: e.to_string(),
            }
        })?;
        // keep the newest `keep_checkpoints`
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
            })
            .collect();
        old.sort();
        let keep = self.config.keep_checkpoints.max(1);
        if old.len() > keep {
            for p in &old[..old.len() - keep] {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        Ok(target)
    }
}

/// A stable hash of a micro-batch's token ids and mask (as `i64`, whatever the backend).
fn batch_hash<B: burn::tensor::backend::Backend>(batch: &TokenBatch<B>) -> u64 {
    let mut h = Fnv::new();
    for t in [
        &batch.input_ids,
        &batch.token_type_ids,
        &batch.attention_mask,
    ] {
        for d in t.dims() {
            h.bytes(&(d as u64).to_le_bytes());
        }
        h.bytes(t.clone().into_data().convert::<i64>().as_bytes());
    }
    h.0
}

/// Removes the temporary folders of checkpoints that were being written when a run was
/// killed (`save_checkpoint` writes `.tmp-*` and renames it into place when complete).
fn remove_unfinished_checkpoints(dir: &Path) -> Result<(), RankError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && entry.file_name().to_string_lossy().starts_with(".tmp-") {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
    }
    // and a `latest` pointer's temporary file
    safe_write::remove_temporaries(dir).map_err(|e| io_err(dir, e))?;
    Ok(())
}

pub(super) fn new_optim<B: AutodiffBackend, M: AutodiffModule<B>>(
    config: &TrainConfig,
) -> Adam<M, B> {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init::<B, M>()
}

/// Forward and backward of one micro-batch: `(loss / accumulation, its gradients)`, the loss
/// left on the device (`[1]`).
pub(super) fn micro_step<B: AutodiffBackend, M: AutodiffModule<B> + Objective<B>>(
    model: &M,
    batch: &TokenBatch<B>,
    cfg: &TrainConfig,
) -> Result<(Tensor<B::InnerBackend, 1>, GradientsParams), RankError> {
    let loss = model
        .objective(batch, cfg)?
        .div_scalar(cfg.accumulation as f64);
    let value = loss.clone().inner().reshape([1]);
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok((value, grads))
}

/// A small tensor's values on the host, as f32 (empty if the device gave none back: the
/// callers then take NaN, which stops training with an error).
pub(super) fn read_f32<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .unwrap_or_default()
}

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> RankError {
    RankError::Io {
        path: path.into(),
        message: e.to_string(),
    }
}

/// SplitMix64 of (seed, index): independent, reproducible seeds per micro-batch.
pub(super) fn seed_for(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The training progress bar on stderr (feature `progress`; without it, nothing is drawn).
struct Progress {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
}

impl Progress {
    #[cfg_attr(not(feature = "progress"), allow(unused_variables))]
    fn new(show: bool, total: usize, at: usize) -> Self {
        #[cfg(feature = "progress")]
        {
            let bar = if show {
                let b = indicatif::ProgressBar::new(total as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_position(at as u64);
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            Progress { bar }
        }
        #[cfg(not(feature = "progress"))]
        Progress {}
    }

    #[cfg_attr(not(feature = "progress"), allow(unused_variables))]
    fn update(&self, at: usize, message: impl FnOnce() -> String) {
        #[cfg(feature = "progress")]
        {
            self.bar.set_position(at as u64);
            self.bar.set_message(message());
        }
    }

    fn finish(&self) {
        #[cfg(feature = "progress")]
        self.bar.finish_and_clear();
    }
}
