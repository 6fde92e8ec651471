//! `rankmamba train`: fine-tune or train a cross-encoder on a collection's training queries,
//! writing a model directory (resumable from its checkpoints).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::models::{self, NAMED};
use rankmamba::rank_heads::{PAPER_DECODER_TEMPLATE, Pooling, QUERY_FIRST_TEMPLATE, TemplateStyle};
use rankmamba::study::{Collection, Job, Side, TrainData, TrainSettings};
use rankmamba::with_backend;

#[derive(ClapArgs)]
pub struct Args {
    /// No progress bar and no summary lines on stderr (errors still print).
    #[arg(long)]
    pub quiet: bool,
    /// Backbone: a name (see --list-models), a model directory written by `rankmamba train`
    /// (training continues), or a HF checkpoint directory (bert, mamba, gpt_neox).
    #[arg(long, default_value = "minilm")]
    pub model: String,
    /// Training collection: a name found by the data lookup order (scifact, dl19, dl20) or a path (./dir).
    #[arg(long, default_value = "scifact")]
    pub dataset: String,
    /// Output model directory.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Documents per group (one positive).
    #[arg(long, default_value_t = 4)]
    pub group_size: usize,
    /// Groups per step.
    #[arg(long, default_value_t = 2)]
    pub groups_per_step: usize,
    /// Hard negatives from this first-stage depth.
    #[arg(long, default_value_t = 30)]
    pub negatives_top_k: usize,
    /// Peak learning rate (default: 5e-5 for a pretrained backbone, 1e-3 for random init).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Token limit of a pair.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Training queries (the first by id; default all).
    #[arg(long)]
    pub queries: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Checkpoint every N steps into OUT/checkpoints; a rerun resumes from the newest.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Pad batch widths to a multiple of N tokens (default: 1 on cpu, 64 on GPU backends).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Data-parallel training on several devices of --backend: a count `N` (devices 0..N) or a
    /// list such as `cuda:0,cuda:1`; one model replica per device, each step's groups split
    /// evenly across them (same effective batch and schedule). See docs/distributed.md.
    #[arg(long)]
    pub devices: Option<String>,
    /// Multi-node training: the number of processes (nodes, on one host or several) taking
    /// part. Start each with the same command, --master (node 0's address) and its own
    /// --node-rank and --node-address. Every node computes the same global batches and trains
    /// its share; OUT should be one folder all nodes see (a shared file system): node 0
    /// writes it, the others resume from its checkpoints. See docs/distributed.md.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// This node's rank, 0..NODES.
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// HOST:PORT of node 0, where the nodes meet (node 0 listens there).
    #[arg(long)]
    pub master: Option<String>,
    /// HOST:PORT under which the other nodes reach this node; it listens there (default for
    /// node 0: --master).
    #[arg(long)]
    pub node_address: Option<String>,
    /// Seconds to wait for the other nodes at any one point (start, each gradient exchange)
    /// before stopping with an error.
    #[arg(long, default_value_t = 600)]
    pub node_timeout: u64,
    /// Dropout on the pooled vector before the scoring head (default: the model card's, 0.1
    /// for the named backbones). 0 makes a data-parallel run comparable step by step with a
    /// single-device one (dropout masks are drawn per replica).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Initialise the backbone randomly from its configuration (the `config.json` and tokenizer
    /// of a HF checkpoint or model directory; its weights are not read): the random-init twin
    /// of a pretrained backbone, seeded by --seed.
    #[arg(long)]
    pub random_init: bool,
    /// Pooling of the hidden states (default: the model card's: `cls` for BERT-style encoders,
    /// `last-token` for Mamba and GPT-NeoX). all-MiniLM-L6-v2 was pretrained with `mean`.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Decoder input order (Mamba, GPT-NeoX): `doc-first` is the paper's
    /// `Document: {doc}\n\nQuery: {query}`, `query-first` swaps the two parts.
    #[arg(long, value_enum)]
    pub template: Option<TemplateArg>,
    /// Write a train.jsonl line (loss, grad norm, lr, tokens/s) every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Autodiff checkpointing: `balanced` recomputes element-wise intermediates in the backward
    /// pass instead of keeping them (less memory; see docs/lab/burn-gpu-notes.md).
    #[arg(long, value_enum, default_value = "none")]
    pub checkpointing: rankmamba::backend::Checkpointing,
    /// List the named backbones and exit.
    #[arg(long)]
    pub list_models: bool,
}

/// `--pooling`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PoolingArg {
    /// The first position (`[CLS]`).
    Cls,
    /// The mean over real tokens.
    Mean,
    /// The last real token.
    LastToken,
    /// BERT's pooler head over `[CLS]` (`tanh(dense)`), as `BertForSequenceClassification`:
    /// the pooling `rankmamba export` can write for transformers.
    Pooler,
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Pooling {
        match p {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::LastToken => Pooling::LastToken,
            PoolingArg::Pooler => Pooling::Pooler,
        }
    }
}

/// `--template`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TemplateArg {
    /// The paper's `Document: {doc}\n\nQuery: {query}`.
    DocFirst,
    /// `Query: {query}\n\nDocument: {doc}`.
    QueryFirst,
}

pub fn run(a: Args) -> Result<()> {
    a.backend.ensure_compiled()?;
    if a.list_models {
        for (n, what) in NAMED {
            println!("{n:<12} {what}");
        }
        return Ok(());
    }
    let Some(out) = a.out.clone() else {
        anyhow::bail!("--out DIR is required (the model directory to write)");
    };
    if a.steps == 0 || a.group_size < 2 || a.groups_per_step == 0 {
        anyhow::bail!("--steps and --groups-per-step must be positive and --group-size >= 2");
    }
    let devices = match &a.devices {
        Some(spec) => parse_devices(spec, a.backend)?,
        None => vec![0],
    };
    let nodes = node_setup(&a)?;
    let replicas = devices.len() * a.nodes as usize;
    if !a.groups_per_step.is_multiple_of(replicas) {
        anyhow::bail!(
            "--groups-per-step {} cannot be split evenly across {}",
            a.groups_per_step,
            if a.nodes > 1 {
                format!(
                    "{replicas} replicas ({} nodes of {} devices)",
                    a.nodes,
                    devices.len()
                )
            } else {
                format!("{} devices", devices.len())
            }
        );
    }
    if a.log_every == 0 {
        anyhow::bail!("--log-every must be positive");
    }
    if !(2..=models::MAX_LENGTH_LIMIT).contains(&a.max_length) {
        anyhow::bail!(
            "--max-length {} is outside 2..={}",
            a.max_length,
            models::MAX_LENGTH_LIMIT
        );
    }
    if let Some(p) = a.dropout.filter(|p| !(0.0..1.0).contains(p)) {
        anyhow::bail!("--dropout must be in [0, 1), got {p}");
    }
    // Everything is read and checked before the output is touched: the backbone, the flags
    // that change its card, then the data.
    let mut plan = models::plan(&a.model, a.max_length)?;
    if a.random_init {
        plan.random_init(&a.model)
            .map_err(|e| anyhow::anyhow!("--random-init: {e}"))?;
    }
    if let Some(p) = a.dropout {
        plan.card.dropout = p;
    }
    if let Some(p) = a.pooling {
        plan.card.pooling = p.into();
    }
    if let Some(t) = a.template {
        let TemplateStyle::Decoder { template, .. } = &mut plan.card.template else {
            anyhow::bail!(
                "--template applies to decoder inputs (Mamba, GPT-NeoX); {} is an encoder, fed [CLS] query [SEP] document [SEP]",
                a.model
            );
        };
        *template = match t {
            TemplateArg::DocFirst => PAPER_DECODER_TEMPLATE.to_string(),
            TemplateArg::QueryFirst => QUERY_FIRST_TEMPLATE.to_string(),
        };
    }
    let collection = Collection::load(&a.dataset, Side::Train, a.queries, a.negatives_top_k)?;
    let (card, init) = (plan.card.clone(), plan.init.clone());
    let settings = TrainSettings {
        steps: a.steps,
        group_size: a.group_size,
        groups_per_step: a.groups_per_step,
        negatives_top_k: a.negatives_top_k,
        lr: a.lr.unwrap_or(if init == models::Init::Random {
            1e-3
        } else {
            5e-5
        }),
        seed: a.seed,
        log_every: a.log_every,
        ..TrainSettings::default()
    };
    let data = TrainData::new(&collection, &settings)?;
    data.check_queries(&plan.pair_encoder()?)?;
    // every input checked: only now is the output folder written. A multi-node rank other
    // than 0 builds its model in a private folder and leaves OUT to rank 0.
    let private = match &nodes {
        Some(n) if n.rank > 0 => Some(tempfile::tempdir()?),
        _ => None,
    };
    let model_dir = private.as_ref().map_or(out.as_path(), |d| d.path());
    plan.write(model_dir)?;
    super::say(
        a.quiet,
        format!(
            "{}training {} ({}) on {} ({} queries, {} groups) for {} steps, lr {}",
            nodes.as_ref().map_or(String::new(), |n| format!(
                "node {} of {}: ",
                n.rank, n.nodes
            )),
            a.model,
            card.source,
            a.dataset,
            collection.queries.len(),
            data.groups.len(),
            settings.steps,
            settings.lr
        ),
    );
    let shared_checkpoints = out.join("checkpoints");
    let job = Job {
        dir: model_dir,
        train: Some(&data),
        checkpoint_every: a.checkpoint_every,
        rerank: None,
        batch_size: 32,
        progress: !a.quiet,
        run_name: a.model.clone(),
        pad_multiple: a.pad_multiple.unwrap_or_else(|| a.backend.pad_multiple()),
        nodes: nodes.as_ref(),
        checkpoints: private.as_ref().map(|_| shared_checkpoints.as_path()),
    };
    let (_, report) = with_backend!(a.backend, a.checkpointing, |B, dev| job
        .run_on::<B>(&init, &replica_devices(&dev, a.backend, &devices)))??;
    if let Some(n) = nodes.as_ref().filter(|n| n.rank > 0) {
        super::say(
            a.quiet,
            format!(
                "node {} of {}: trained to step {}; rank 0 writes {}",
                n.rank,
                n.nodes,
                report.train_steps,
                out.display()
            ),
        );
        return Ok(());
    }
    let path = out.join("train_report.json");
    if report.train_steps_this_run == 0 && path.is_file() {
        // resumed from a checkpoint at the last step: the finished run's report stays
        super::say(
            a.quiet,
            format!(
                "nothing to do: {} is already trained to step {} (its checkpoint); {} is unchanged",
                out.display(),
                report.train_steps,
                path.display()
            ),
        );
        return Ok(());
    }
    let json = serde_json::json!({"settings": settings, "dataset": a.dataset, "report": report});
    rankmamba::ir_metrics::write_atomically(&path, |w| {
        serde_json::to_writer_pretty(w, &json).map_err(std::io::Error::other)
    })?;
    super::say(
        a.quiet,
        format!(
            "wrote {} ({} steps, last loss {:.4}, {:.0} tokens/s)",
            out.display(),
            report.train_steps,
            report.last_loss.unwrap_or(f64::NAN),
            report.train_tokens_per_s.unwrap_or(0.0)
        ),
    );
    Ok(())
}

/// The multi-node flags, checked (`None` for a single node).
fn node_setup(a: &Args) -> Result<Option<rankmamba::rank_heads::NodeSetup>> {
    if a.nodes <= 1 {
        if a.node_rank != 0 || a.node_address.is_some() || a.master.is_some() {
            anyhow::bail!(
                "--node-rank, --node-address and --master are for multi-node training: give --nodes N (N > 1) too"
            );
        }
        if a.nodes == 0 {
            anyhow::bail!("--nodes must be positive");
        }
        return Ok(None);
    }
    let Some(master) = &a.master else {
        anyhow::bail!(
            "--nodes {}: every node needs --master HOST:PORT (node 0's address)",
            a.nodes
        );
    };
    let address = match (&a.node_address, a.node_rank) {
        (Some(x), _) => x.clone(),
        (None, 0) => master.clone(),
        (None, r) => anyhow::bail!(
            "--node-rank {r}: give --node-address HOST:PORT (where the other nodes reach this one)"
        ),
    };
    let setup = rankmamba::rank_heads::NodeSetup {
        nodes: a.nodes,
        rank: a.node_rank,
        master: master.clone(),
        address,
        timeout: std::time::Duration::from_secs(a.node_timeout),
    };
    setup.check().map_err(|e| anyhow::anyhow!("--nodes: {e}"))?;
    Ok(Some(setup))
}

/// `--devices`: `N` -> `[0, N)`; `a,b` or `backend:a,backend:b` -> the indices (a prefix must
/// name `backend`); distinct indices.
pub(crate) fn parse_devices(spec: &str, backend: BackendKind) -> Result<Vec<usize>> {
    let spec = spec.trim();
    if let Ok(n) = spec.parse::<usize>() {
        if n == 0 {
            anyhow::bail!("--devices {spec}: need at least one device");
        }
        return Ok((0..n).collect());
    }
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let index = match part.split_once(':') {
            Some((name, i)) if name == backend.name() => i,
            Some((name, _)) => anyhow::bail!(
                "--devices {spec}: `{part}` names backend `{name}` but --backend is `{}`",
                backend.name()
            ),
            None => part,
        };
        let i: usize = index.parse().map_err(|_| {
            anyhow::anyhow!("--devices {spec}: `{part}` is not DEVICE:INDEX or INDEX")
        })?;
        if out.contains(&i) {
            anyhow::bail!("--devices {spec}: device {i} is listed twice");
        }
        out.push(i);
    }
    Ok(out)
}

/// The devices of `indices`, of the same kind as `default` (wgpu: discrete GPUs; NdArray has
/// one CPU device: every index names it, giving several replicas on the CPU).
pub(crate) fn replica_devices<D: burn::tensor::backend::Device>(
    default: &D,
    backend: BackendKind,
    indices: &[usize],
) -> Vec<D> {
    let type_id = match (backend, default.to_id().type_id) {
        // wgpu's default device (type 4) has no index: take discrete GPU i
        (BackendKind::Wgpu, 4) => 0,
        (_, t) => t,
    };
    indices
        .iter()
        .map(|&i| {
            D::from_id(burn::tensor::backend::DeviceId {
                type_id,
                index_id: i as _,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_flag() {
        assert_eq!(parse_devices("2", BackendKind::Cuda).unwrap(), [0, 1]);
        assert_eq!(
            parse_devices("cuda:0,cuda:3", BackendKind::Cuda).unwrap(),
            [0, 3]
        );
        assert_eq!(parse_devices("1, 2", BackendKind::Cpu).unwrap(), [1, 2]);
        assert!(parse_devices("0", BackendKind::Cuda).is_err());
        assert!(parse_devices("cuda:0,cuda:0", BackendKind::Cuda).is_err());
        assert!(parse_devices("wgpu:0,wgpu:1", BackendKind::Cuda).is_err());
        assert!(parse_devices("cuda:x", BackendKind::Cuda).is_err());
    }
}
