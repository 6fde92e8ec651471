//! Hugging Face sequence-classification checkpoints, in and out (feature `transformers`).
//!
//! - **In:** [`CrossEncoder::from_pretrained`] (on [`AutoCrossEncoder`]) loads a directory or a
//!   Hub id (feature `hub`) holding `config.json`, `model.safetensors` and `tokenizer.json`:
//!   - `BertForSequenceClassification` (the `cross-encoder/*` rerankers, MiniLM, BERT):
//!     BERT's pooler, then `classifier`;
//!   - `RobertaForSequenceClassification`: `classifier.dense` + tanh, then
//!     `classifier.out_proj` (the same computation as BERT's pooler and classifier);
//!   - `GPTNeoXForSequenceClassification`: the last real token, then `score` (no bias);
//!   - a Mamba backbone with a `score` head, as [`CrossEncoder::save_pretrained`] writes it.
//!
//!   One label gives the logit; two labels give `logit[1] - logit[0]`, whose sigmoid is the
//!   softmax probability of label 1. The template, length limit and the activation a
//!   sentence-transformers `CrossEncoder` would apply (sigmoid or identity) come from the
//!   checkpoint's files.
//! - **Out:** [`CrossEncoder::save_pretrained`] writes `config.json`, `model.safetensors`,
//!   `tokenizer.json` and `tokenizer_config.json` in the layout `transformers`'
//!   `AutoModelForSequenceClassification` reads (BERT and GPT-NeoX), with the settings this
//!   crate needs to score exactly as it did (template, pooling, length) under a `rankmamba`
//!   key of `config.json`.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleDisplay, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
#[cfg(feature = "mamba")]
use mamba_blocks::MambaModel;
use model_io::{HubOptions, LoadOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use transformer_baselines::bert::BertPooler;
use transformer_baselines::{BertModel, GptNeoXModel};

use crate::{
    CrossEncoder, PAPER_DECODER_TEMPLATE, PaddingSide, PairEncoder, Pooling, RankError,
    SequenceEncoder, TemplateStyle, TokenBatch,
};

/// The backends an [`AnyEncoder`] runs on: those with flash attention, and with the `mamba`
/// feature also the selective scan.
#[cfg(feature = "mamba")]
pub trait AnyBackend:
    mamba_ssm::SelectiveScanBackend + transformer_baselines::FlashAttentionBackend
{
}
#[cfg(feature = "mamba")]
impl<B: mamba_ssm::SelectiveScanBackend + transformer_baselines::FlashAttentionBackend> AnyBackend
    for B
{
}
/// The backends an [`AnyEncoder`] runs on: those with flash attention, and with the `mamba`
/// feature also the selective scan.
#[cfg(not(feature = "mamba"))]
pub trait AnyBackend: transformer_baselines::FlashAttentionBackend {}
#[cfg(not(feature = "mamba"))]
impl<B: transformer_baselines::FlashAttentionBackend> AnyBackend for B {}

/// One of the workspace's encoders, chosen by a checkpoint's `model_type`.
// A model is built once and lives long: its variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyEncoder<B: Backend> {
    /// BERT, MiniLM, RoBERTa.
    Bert(BertModel<B>),
    /// GPT-NeoX / Pythia.
    GptNeoX(GptNeoXModel<B>),
    /// Mamba (v1).
    #[cfg(feature = "mamba")]
    Mamba(MambaModel<B>),
}

impl<B: AnyBackend> SequenceEncoder<B> for AnyEncoder<B> {
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        match self {
            AnyEncoder::Bert(m) => m.encode(batch),
            AnyEncoder::GptNeoX(m) => m.encode(batch),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.encode(batch),
        }
    }

    fn hidden_size(&self) -> usize {
        match self {
            AnyEncoder::Bert(m) => m.hidden_size(),
            AnyEncoder::GptNeoX(m) => m.hidden_size(),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => MambaModel::hidden_size(m),
        }
    }

    fn encode_pooled(
        &self,
        batch: &TokenBatch<B>,
        pooling: Pooling,
    ) -> Result<Tensor<B, 2>, RankError> {
        match self {
            AnyEncoder::Bert(m) => m.encode_pooled(batch, pooling),
            AnyEncoder::GptNeoX(m) => m.encode_pooled(batch, pooling),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.encode_pooled(batch, pooling),
        }
    }
}

/// A cross-encoder over whichever encoder a checkpoint names.
pub type AutoCrossEncoder<B> = CrossEncoder<B, AnyEncoder<B>>;

/// What a sentence-transformers `CrossEncoder` applies to the logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// The logit as it is (the `cross-encoder/ms-marco-*` models).
    Identity,
    /// `sigmoid(logit)`, a probability (sentence-transformers' default for one label).
    Sigmoid,
}

impl Activation {
    /// The activation applied to a logit.
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            Activation::Identity => logit,
            Activation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            Activation::Identity => "torch.nn.modules.linear.Identity",
            Activation::Sigmoid => "torch.nn.modules.activation.Sigmoid",
        }
    }
}

/// How this crate feeds and pools a checkpoint: stored under the `rankmamba` key of
/// `config.json` by [`CrossEncoder::save_pretrained`], inferred for other checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringSettings {
    /// How a (query, document) pair becomes tokens.
    pub template: TemplateStyle,
    /// How the hidden states are pooled.
    pub pooling: Pooling,
    /// Token limit of a pair (the document is cut).
    pub max_length: usize,
    /// Padding side of batches.
    pub padding: PaddingSide,
}

/// A checkpoint loaded by [`CrossEncoder::from_pretrained`].
pub struct Pretrained<B: Backend> {
    /// The model (dropout 0: inference).
    pub model: AutoCrossEncoder<B>,
    /// Tokenizer and template, from the checkpoint's files.
    pub pair_encoder: PairEncoder,
    /// What sentence-transformers applies to the logit; [`crate::Reranker`] ranks by the
    /// logit, which orders pairs the same way.
    pub activation: Activation,
    /// How the model is fed and pooled.
    pub settings: ScoringSettings,
    /// The local directory the files came from.
    pub dir: PathBuf,
}

fn cfg_err(path: &Path, message: impl std::fmt::Display) -> RankError {
    RankError::Io {
        path: path.into(),
        message: message.to_string(),
    }
}

/// The classification head of a checkpoint: its tensor prefix and shape.
#[derive(Debug, Clone)]
struct HeadSpec {
    prefix: &'static str,
    labels: usize,
    bias: bool,
}

fn head_spec(
    file: &Path,
    names: &[model_io::HeaderEntry],
    prefixes: &[&'static str],
    hidden: usize,
) -> Result<HeadSpec, RankError> {
    for prefix in prefixes {
        let weight = format!("{prefix}weight");
        if let Some(w) = names.iter().find(|e| e.name == weight) {
            let labels = match w.shape.as_slice() {
                [l @ (1 | 2), h] if *h == hidden => *l,
                shape => {
                    return Err(cfg_err(
                        file,
                        format!(
                            "tensor `{weight}` has shape {shape:?}: a scoring head of 1 or 2 labels over {hidden} features is [1, {hidden}] or [2, {hidden}]"
                        ),
                    ));
                }
            };
            let bias = names.iter().any(|e| e.name == format!("{prefix}bias"));
            return Ok(HeadSpec {
                prefix,
                labels,
                bias,
            });
        }
    }
    Err(cfg_err(
        file,
        format!(
            "no classification head ({}): a backbone, not a cross-encoder; put a fresh head on it with CrossEncoder::new",
            prefixes
                .iter()
                .map(|p| format!("{p}weight"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    ))
}

/// Loads the head `[labels, H]` of `spec` as a one-output `Linear` (two labels become their
/// difference).
fn load_head<B: Backend>(
    file: &Path,
    spec: &HeadSpec,
    hidden: usize,
    device: &B::Device,
) -> Result<Linear<B>, RankError> {
    let head = LinearConfig::new(hidden, spec.labels)
        .with_bias(spec.bias)
        .init::<B>(device);
    let options = LoadOptions {
        remap: vec![(format!("^{}", regex_escape(spec.prefix)), String::new())],
        ..Default::default()
    };
    let head = model_io::load_safetensors(head, file, &options)
        .map_err(|e| cfg_err(file, format!("the classification head: {e}")))?;
    if spec.labels == 1 {
        return Ok(head);
    }
    // [H, 2] (Burn's layout): the column of label 1 minus that of label 0
    let w = head.weight.val();
    let diff = (w.clone().narrow(1, 1, 1) - w.narrow(1, 0, 1)).detach();
    let bias = head.bias.map(|b| {
        let b = b.val();
        Param::from_tensor((b.clone().narrow(0, 1, 1) - b.narrow(0, 0, 1)).detach())
    });
    Ok(Linear {
        weight: Param::from_tensor(diff),
        bias,
    })
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// sentence-transformers' activation for a checkpoint's `config.json`: the one it names
/// (`sentence_transformers.activation_fn`, or the older `sbert_ce_default_activation_function`),
/// else sigmoid.
fn activation_of(config: &Value) -> Activation {
    let named = config
        .get("sentence_transformers")
        .and_then(|s| s.get("activation_fn"))
        .or_else(|| config.get("sbert_ce_default_activation_function"))
        .and_then(Value::as_str);
    match named {
        Some(n) if n.ends_with("Identity") => Activation::Identity,
        _ => Activation::Sigmoid,
    }
}

/// A model's token limit from `tokenizer_config.json` (`model_max_length`, when it is a real
/// limit) and `config.json`'s positions.
fn default_max_length(dir: &Path, config: &Value, model_type: &str) -> usize {
    let positions = config
        .get("max_position_embeddings")
        .and_then(Value::as_u64)
        .map(|p| {
            if matches!(model_type, "roberta" | "xlm-roberta" | "camembert") {
                p.saturating_sub(2)
            } else {
                p
            }
        });
    let tokenizer_limit = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("model_max_length").and_then(Value::as_u64))
        .filter(|&l| l > 0 && l < 1_000_000);
    let limit = match (positions, tokenizer_limit) {
        (Some(p), Some(t)) => p.min(t),
        (Some(p), None) => p,
        (None, Some(t)) => t,
        (None, None) => 512,
    };
    limit.clamp(2, 8192) as usize
}

impl<B: AnyBackend> CrossEncoder<B, AnyEncoder<B>> {
    /// Loads a sequence-classification checkpoint from a directory or a Hub id (feature
    /// `hub`: hf-hub with its cache, `HF_HUB_OFFLINE` and `HF_ENDPOINT`), as listed in the
    /// [module documentation](crate::hf).
    ///
    /// ```no_run
    /// # #[cfg(feature = "mamba")] {
    /// use burn::backend::NdArray;
    /// use rank_heads::{AutoCrossEncoder, Reranker};
    ///
    /// let device = Default::default();
    /// let ce = AutoCrossEncoder::<NdArray>::from_pretrained(
    ///     "cross-encoder/ms-marco-MiniLM-L-6-v2",
    ///     &Default::default(),
    ///     &device,
    /// )?;
    /// let reranker = Reranker::<NdArray, _> {
    ///     model: &ce.model,
    ///     encoder: &ce.pair_encoder,
    ///     batch_size: 32,
    ///     device,
    /// };
    /// let scores = reranker.score("what is mamba", &["A snake.", "A state-space model."])?;
    /// let probabilities: Vec<f32> = scores.iter().map(|&s| ce.activation.apply(s)).collect();
    /// # let _ = probabilities;
    /// # }
    /// # Ok::<(), rank_heads::RankError>(())
    /// ```
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        device: &B::Device,
    ) -> Result<Pretrained<B>, RankError> {
        let dir = model_io::resolve_model(spec, &["config.json", "model.safetensors"], hub)
            .map_err(|e| RankError::Config(e.to_string()))?;
        // optional files of a Hub repository: fetched when present
        if !Path::new(spec).is_dir() {
            for f in ["tokenizer.json", "tokenizer_config.json"] {
                let _ = model_io::resolve_model(spec, &[f], hub);
            }
        }
        Self::from_dir(&dir, device)
    }

    /// [`Self::from_pretrained`] for a local directory.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Pretrained<B>, RankError> {
        let info = inspect(dir)?;
        let weights = dir.join("model.safetensors");
        let (encoder, head) = match info.model_type.as_str() {
            "gpt_neox" => {
                let (m, _) = GptNeoXModel::<B>::load_dir(dir, device)?;
                let head = load_head::<B>(&weights, &info.head, m.hidden_size(), device)?;
                (AnyEncoder::GptNeoX(m), head)
            }
            #[cfg(feature = "mamba")]
            "mamba" => {
                let (m, _) = MambaModel::<B>::load_dir(dir, device)?;
                let hidden = MambaModel::hidden_size(&m);
                let head = load_head::<B>(&weights, &info.head, hidden, device)?;
                (AnyEncoder::Mamba(m), head)
            }
            _ => {
                let (mut bert, _) = BertModel::<B>::load_dir(dir, device)?;
                let hidden = bert.hidden_size();
                if info.head.prefix == "classifier.out_proj." {
                    // RoBERTa's head: dense + tanh over <s>, then out_proj (BERT's pooler math)
                    let dense = LinearConfig::new(hidden, hidden).init::<B>(device);
                    let options = LoadOptions {
                        remap: vec![(r"^classifier\.dense\.".into(), String::new())],
                        ..Default::default()
                    };
                    let dense = model_io::load_safetensors(dense, &weights, &options)
                        .map_err(|e| cfg_err(&weights, format!("classifier.dense: {e}")))?;
                    bert.pooler = Some(BertPooler { dense });
                }
                let head = load_head::<B>(&weights, &info.head, hidden, device)?;
                (AnyEncoder::Bert(bert), head)
            }
        };
        let tokenizer = dir.join("tokenizer.json");
        let s = &info.settings;
        let pair_encoder =
            PairEncoder::from_file(&tokenizer, s.template.clone(), s.max_length, s.padding)?;
        let mut model =
            CrossEncoder::with_head_bias(encoder, s.pooling, 0.0, head.bias.is_some(), device);
        model.classifier = head;
        Ok(Pretrained {
            model,
            pair_encoder,
            activation: info.activation,
            settings: info.settings,
            dir: dir.to_path_buf(),
        })
    }
}

/// What a sequence-classification checkpoint directory is, read from its files without loading
/// the weights: see [`inspect`].
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// `config.json`'s `model_type`.
    pub model_type: String,
    /// How the checkpoint is fed and pooled.
    pub settings: ScoringSettings,
    /// What sentence-transformers applies to the logit.
    pub activation: Activation,
    head: HeadSpec,
}

/// Whether `dir` holds a HF sequence-classification checkpoint (a `config.json` and a
/// `model.safetensors` with a classification head), as opposed to a bare backbone.
pub fn is_sequence_classification(dir: &Path) -> bool {
    let Ok(header) = model_io::read_header(&dir.join("model.safetensors")) else {
        return false;
    };
    dir.join("config.json").is_file()
        && header.iter().any(|e| {
            matches!(
                e.name.as_str(),
                "classifier.weight" | "classifier.out_proj.weight" | "score.weight"
            )
        })
}

/// Reads a sequence-classification checkpoint's `config.json`, safetensors header,
/// `tokenizer_config.json` and `tokenizer.json` (which must exist): its architecture, how it
/// is fed and pooled, its activation. Every missing or malformed file is an error naming it.
pub fn inspect(dir: &Path) -> Result<CheckpointInfo, RankError> {
    let cfg_path = dir.join("config.json");
    let config: Value =
        model_io::read_json(&cfg_path).map_err(|e| RankError::Config(e.to_string()))?;
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let weights = dir.join("model.safetensors");
    let header = model_io::read_header(&weights).map_err(|e| cfg_err(&weights, e))?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(cfg_err(
            &tokenizer,
            "missing: a cross-encoder checkpoint needs its tokenizer.json",
        ));
    }
    let hidden = config
        .get("hidden_size")
        .or_else(|| config.get("d_model"))
        .and_then(Value::as_u64)
        .ok_or_else(|| cfg_err(&cfg_path, "no hidden_size"))? as usize;
    let (head, default_pooling) = match model_type.as_str() {
        "bert" | "roberta" | "xlm-roberta" | "camembert" => {
            let roberta_head = header
                .iter()
                .any(|e| e.name == "classifier.out_proj.weight");
            let spec = if roberta_head {
                head_spec(&weights, &header, &["classifier.out_proj."], hidden)?
            } else {
                head_spec(&weights, &header, &["classifier."], hidden)?
            };
            let pooler = roberta_head
                || header
                    .iter()
                    .any(|e| e.name.ends_with("pooler.dense.weight"));
            (
                spec,
                if pooler {
                    Pooling::Pooler
                } else {
                    Pooling::Cls
                },
            )
        }
        "gpt_neox" => (
            head_spec(&weights, &header, &["score."], hidden)?,
            Pooling::LastToken,
        ),
        "mamba" if cfg!(feature = "mamba") => (
            head_spec(&weights, &header, &["score."], hidden)?,
            Pooling::LastToken,
        ),
        other => {
            return Err(cfg_err(
                &cfg_path,
                format!(
                    "model_type {other:?} is not supported (bert, roberta, gpt_neox{})",
                    if cfg!(feature = "mamba") {
                        ", mamba"
                    } else {
                        "; mamba needs the `mamba` feature"
                    }
                ),
            ));
        }
    };
    let settings = match config.get("rankmamba") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| cfg_err(&cfg_path, format!("the `rankmamba` settings: {e}")))?,
        None => {
            let template = if default_pooling == Pooling::LastToken {
                let eos = config
                    .get("eos_token_id")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                TemplateStyle::Decoder {
                    template: PAPER_DECODER_TEMPLATE.to_string(),
                    eos_id: u32::try_from(eos).map_err(|_| {
                        cfg_err(&cfg_path, format!("eos_token_id {eos} is out of range"))
                    })?,
                }
            } else {
                TemplateStyle::Encoder
            };
            ScoringSettings {
                template,
                pooling: default_pooling,
                max_length: default_max_length(dir, &config, &model_type),
                padding: PaddingSide::Right,
            }
        }
    };
    Ok(CheckpointInfo {
        model_type,
        settings,
        activation: activation_of(&config),
        head,
    })
}

/// How an encoder's weights are named in a HF sequence-classification checkpoint.
pub trait HfLayout<B: Backend>: Sized {
    /// `config.json`'s `model_type` of this encoder's checkpoints.
    fn model_type(&self) -> &'static str;
    /// The prefix of the encoder's tensors (`bert`, `gpt_neox`, `backbone`).
    fn hf_prefix(&self) -> &'static str;
    /// Regex rewrites from the module's paths to HF names (after the prefix).
    fn hf_save_remap(&self) -> Vec<(String, String)>;
    /// A copy whose output (the final normalisation) is shifted by `shift` `[H]`: how a head
    /// bias is folded for a layout whose head has none. Encoders without a shift refuse.
    fn with_output_shift(&self, shift: Tensor<B, 1>) -> Result<Self, RankError> {
        let _ = shift;
        Err(RankError::Config(format!(
            "{}: the output has no shift to fold a head bias into",
            self.model_type()
        )))
    }
}

impl<B: Backend> HfLayout<B> for BertModel<B> {
    fn model_type(&self) -> &'static str {
        "bert"
    }
    fn hf_prefix(&self) -> &'static str {
        "bert"
    }
    fn hf_save_remap(&self) -> Vec<(String, String)> {
        vec![
            (r"\.self_\.".into(), ".self.".into()),
            (r"layer_norm\.".into(), "LayerNorm.".into()),
        ]
    }
}

impl<B: Backend> HfLayout<B> for GptNeoXModel<B> {
    fn model_type(&self) -> &'static str {
        "gpt_neox"
    }
    fn hf_prefix(&self) -> &'static str {
        "gpt_neox"
    }
    fn hf_save_remap(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn with_output_shift(&self, shift: Tensor<B, 1>) -> Result<Self, RankError> {
        let mut m = self.clone();
        let beta = m
            .final_layer_norm
            .beta
            .as_ref()
            .map(|p| p.val())
            .ok_or_else(|| {
                RankError::Config("GPT-NeoX's final LayerNorm has no shift (beta)".into())
            })?;
        // detached: a new leaf parameter, also under autodiff
        m.final_layer_norm.beta = Some(Param::from_tensor((beta + shift).detach()));
        Ok(m)
    }
}

#[cfg(feature = "mamba")]
impl<B: Backend> HfLayout<B> for MambaModel<B> {
    fn model_type(&self) -> &'static str {
        "mamba"
    }
    fn hf_prefix(&self) -> &'static str {
        "backbone"
    }
    fn hf_save_remap(&self) -> Vec<(String, String)> {
        vec![
            (r"\.mixer\.a_log$".into(), ".mixer.A_log".into()),
            (r"\.mixer\.d$".into(), ".mixer.D".into()),
        ]
    }
}

impl<B: Backend> HfLayout<B> for AnyEncoder<B> {
    fn model_type(&self) -> &'static str {
        match self {
            AnyEncoder::Bert(m) => m.model_type(),
            AnyEncoder::GptNeoX(m) => m.model_type(),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.model_type(),
        }
    }
    fn hf_prefix(&self) -> &'static str {
        match self {
            AnyEncoder::Bert(m) => m.hf_prefix(),
            AnyEncoder::GptNeoX(m) => m.hf_prefix(),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.hf_prefix(),
        }
    }
    fn hf_save_remap(&self) -> Vec<(String, String)> {
        match self {
            AnyEncoder::Bert(m) => m.hf_save_remap(),
            AnyEncoder::GptNeoX(m) => m.hf_save_remap(),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.hf_save_remap(),
        }
    }
    fn with_output_shift(&self, shift: Tensor<B, 1>) -> Result<Self, RankError> {
        match self {
            AnyEncoder::Bert(m) => m.with_output_shift(shift).map(AnyEncoder::Bert),
            AnyEncoder::GptNeoX(m) => m.with_output_shift(shift).map(AnyEncoder::GptNeoX),
            #[cfg(feature = "mamba")]
            AnyEncoder::Mamba(m) => m.with_output_shift(shift).map(AnyEncoder::Mamba),
        }
    }
}

impl<B: Backend, E: SequenceEncoder<B> + HfLayout<B> + ModuleDisplay> CrossEncoder<B, E> {
    /// Writes this cross-encoder as a HF sequence-classification checkpoint into `dir`:
    /// `model.safetensors`, `config.json` (the backbone's HF `config`, with the architecture,
    /// one label, the activation and this crate's [`ScoringSettings`]), the `tokenizer` file
    /// as `tokenizer.json`, and a `tokenizer_config.json`. Each file is written atomically.
    ///
    /// - BERT needs pooling [`Pooling::Pooler`] (what `BertForSequenceClassification`
    ///   computes): a model pooled otherwise has no such layout, and is refused.
    /// - GPT-NeoX needs last-token pooling. `GPTNeoXForSequenceClassification`'s head has no
    ///   bias: a head bias `b` is folded into the final LayerNorm's shift (`beta += b w /
    ///   |w|^2`, which adds exactly `b` to the score of the pooled position), so `transformers`
    ///   scores as this model does, up to float rounding.
    /// - Mamba (last-token pooling) is written as `backbone.*` + `score.*`, which
    ///   [`AutoCrossEncoder::from_pretrained`] reads; `transformers` has no Mamba
    ///   sequence-classification class.
    ///
    /// `config` is the backbone's HF config (the `config.json` it was built from).
    pub fn save_pretrained(
        &self,
        dir: &Path,
        config: &Value,
        tokenizer: &Path,
        settings: &ScoringSettings,
        activation: Activation,
    ) -> Result<(), RankError> {
        let model_type = self.encoder.model_type();
        let refuse = |why: String| Err(RankError::Config(why));
        let architecture = match model_type {
            "bert" => {
                if self.pooling != Pooling::Pooler {
                    return refuse(format!(
                        "a BERT cross-encoder pooled with `{}` has no transformers layout: \
                         BertForSequenceClassification pools with BERT's pooler head (train with \
                         --pooling pooler)",
                        pooling_name(self.pooling)
                    ));
                }
                let backbone = config.get("model_type").and_then(Value::as_str);
                if backbone != Some("bert") {
                    return refuse(format!(
                        "only BERT-type backbones are written as BertForSequenceClassification \
                         (this one's config.json has model_type {backbone:?})"
                    ));
                }
                "BertForSequenceClassification"
            }
            "gpt_neox" | "mamba" => {
                if self.pooling != Pooling::LastToken {
                    return refuse(format!(
                        "a {model_type} cross-encoder pooled with `{}` has no sequence-classification \
                         layout: it pools the last real token (train with --pooling last-token)",
                        pooling_name(self.pooling)
                    ));
                }
                if model_type == "gpt_neox" {
                    "GPTNeoXForSequenceClassification"
                } else {
                    "MambaForSequenceClassification"
                }
            }
            other => return refuse(format!("model_type {other} cannot be exported")),
        };
        if settings.pooling != self.pooling {
            return refuse(format!(
                "the settings' pooling `{}` is not the model's `{}`",
                pooling_name(settings.pooling),
                pooling_name(self.pooling)
            ));
        }
        if !tokenizer.is_file() {
            return Err(cfg_err(tokenizer, "missing tokenizer file"));
        }
        let head_name = if model_type == "bert" {
            "classifier"
        } else {
            "score"
        };
        let mut remap = vec![
            // an AnyEncoder's paths carry its variant: encoder.Bert.*
            (
                r"^encoder\.(Bert|GptNeoX|Mamba)\.".to_string(),
                format!("{}.", self.encoder.hf_prefix()),
            ),
            (
                r"^encoder\.".to_string(),
                format!("{}.", self.encoder.hf_prefix()),
            ),
            (r"^classifier\.".to_string(), format!("{head_name}.")),
        ];
        remap.extend(self.encoder.hf_save_remap());
        std::fs::create_dir_all(dir).map_err(|e| cfg_err(dir, e))?;
        let weights = dir.join("model.safetensors");
        let metadata = [("format".to_string(), "pt".to_string())];
        if model_type == "gpt_neox" && self.classifier.bias.is_some() {
            let folded = fold_head_bias(self)?;
            model_io::save_safetensors(&folded, &weights, &remap, &metadata)
        } else {
            model_io::save_safetensors(self, &weights, &remap, &metadata)
        }
        .map_err(|e| cfg_err(&weights, e))?;

        let mut config = config.clone();
        let obj = config.as_object_mut().ok_or_else(|| {
            RankError::Config("the backbone's config is not a JSON object".into())
        })?;
        obj.insert("architectures".into(), json!([architecture]));
        obj.insert("model_type".into(), json!(model_type));
        obj.insert("num_labels".into(), json!(1));
        if model_type == "gpt_neox" && obj.get("pad_token_id").is_none_or(Value::is_null) {
            // GPTNeoXForSequenceClassification pools the last token that is not `pad_token_id`
            // (and refuses batches without one): an embedding row the tokenizer never produces
            let rows = obj.get("vocab_size").and_then(Value::as_u64).unwrap_or(0);
            let produced = tokenizers::Tokenizer::from_file(tokenizer)
                .map_err(|e| cfg_err(tokenizer, e))?
                .get_vocab_size(true) as u64;
            if rows > produced {
                obj.insert("pad_token_id".into(), json!(rows - 1));
            }
        }
        obj.insert("id2label".into(), json!({"0": "LABEL_0"}));
        obj.insert("label2id".into(), json!({"LABEL_0": 0}));
        obj.insert(
            "sentence_transformers".into(),
            json!({"activation_fn": activation.torch_name()}),
        );
        obj.insert(
            "rankmamba".into(),
            serde_json::to_value(settings).map_err(|e| RankError::Config(e.to_string()))?,
        );
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| RankError::Config(e.to_string()))?;
        let cfg_path = dir.join("config.json");
        model_io::write_atomic(&cfg_path, text.as_bytes()).map_err(|e| cfg_err(&cfg_path, e))?;

        let tok_bytes = std::fs::read(tokenizer).map_err(|e| cfg_err(tokenizer, e))?;
        let tok_path = dir.join("tokenizer.json");
        model_io::write_atomic(&tok_path, &tok_bytes).map_err(|e| cfg_err(&tok_path, e))?;
        let mut tok_config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": settings.max_length,
            "padding_side": match settings.padding {
                PaddingSide::Left => "left",
                PaddingSide::Right => "right",
            },
        });
        if model_type == "bert" {
            // BERT reads the pair's segment ids (type 1 for the document)
            tok_config["model_input_names"] =
                json!(["input_ids", "token_type_ids", "attention_mask"]);
        }
        let tc_path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&tok_config)
            .map_err(|e| RankError::Config(e.to_string()))?;
        model_io::write_atomic(&tc_path, text.as_bytes()).map_err(|e| cfg_err(&tc_path, e))
    }
}

fn pooling_name(p: Pooling) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// A copy of a cross-encoder whose head bias lives in the encoder's output shift (see
/// [`CrossEncoder::save_pretrained`]).
fn fold_head_bias<B: Backend, E: SequenceEncoder<B> + HfLayout<B> + ModuleDisplay>(
    model: &CrossEncoder<B, E>,
) -> Result<CrossEncoder<B, E>, RankError> {
    let head = &model.classifier;
    let w = head.weight.val(); // [H, 1]
    let [h, _] = w.dims();
    let w = w.reshape([h]);
    let Some(b) = head.bias.as_ref().map(|b| b.val()) else {
        return Ok(model.clone());
    };
    // beta' = beta + b w / |w|^2: the pooled vector's score gains exactly b
    let norm2 = w.clone().powf_scalar(2.0).sum();
    let shift = w.clone() * (b / norm2).expand([h]);
    let mut folded = model.clone();
    folded.encoder = model.encoder.with_output_shift(shift)?;
    folded.classifier = Linear {
        weight: Param::from_tensor(w.reshape([h, 1]).detach()),
        bias: None,
    };
    Ok(folded)
}
