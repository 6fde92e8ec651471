//! A BERT-style encoder (`BertModel` of HF `transformers`): BERT, MiniLM, and RoBERTa-style
//! absolute positions.
//!
//! Embeddings (word + position + token type, LayerNorm), then `num_hidden_layers` post-norm
//! encoder layers (self-attention, residual, LayerNorm; GELU feed-forward, residual, LayerNorm),
//! then an optional pooler (`tanh(dense(h[:, 0]))`). Module paths are HF's tensor names, except
//! two Rust spellings that the loader maps: `attention.self` is the field `self_` (`self` is a
//! keyword) and `LayerNorm` is `layer_norm`.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Bool, DType, Int, Tensor, backend::Backend};
use linear_kernels::linear;
use linear_kernels::{LayerNorm, LayerNormConfig};
use model_io::{HubOptions, LoadOptions};
use serde::Deserialize;

use crate::TransformerError;
use crate::activation::HiddenAct;
use crate::attention::{AttentionImpl, FlashAttentionBackend, attention, merge_heads, split_heads};
use crate::checkpoint::{check_batch, hf_embedding, hf_linear, safetensors_names};

/// Model types whose positions count from `pad_token_id + 1` over the non-padding tokens.
const ROBERTA_TYPES: &[&str] = &["roberta", "xlm-roberta", "camembert"];

/// The fields of a HF BERT / RoBERTa `config.json` that the encoder uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_bert_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    /// Only `absolute` is supported (relative-key variants are rejected by [`Self::validate`]).
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// `bert`, `roberta`, ...: decides how position ids are formed.
    #[serde(default)]
    pub model_type: String,
}

fn default_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_type_vocab() -> usize {
    2
}
fn default_bert_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// How the encoder forms position ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0, 1, ..., L-1` (BERT, MiniLM).
    Absolute,
    /// `padding_idx + 1, ...` over non-padding tokens, `padding_idx` on padding (RoBERTa).
    Roberta { padding_idx: usize },
}

impl BertConfig {
    /// bert-base-uncased (12 layers, hidden 768, 12 heads, FFN 3072).
    pub fn bert_base() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: "absolute".into(),
            model_type: "bert".into(),
        }
    }

    /// The HF `config.json` of this config (what [`Self::from_file`] reads back).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let model_type = if self.model_type.is_empty() {
            "bert"
        } else {
            self.model_type.as_str()
        };
        serde_json::json!({
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act.hf_name(),
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": self.position_embedding_type,
        })
    }

    /// all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, FFN 1536).
    pub fn minilm_l6() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..Self::bert_base()
        }
    }

    /// Reads and validates a HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, TransformerError> {
        let config: Self = model_io::read_json(path)?;
        config.validate().map_err(|e| match e {
            TransformerError::Config { message, .. } => {
                TransformerError::config(Some(path), message)
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Checks that the sizes describe a buildable encoder.
    pub fn validate(&self) -> Result<(), TransformerError> {
        let bad = |m: String| Err(TransformerError::config(None, m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        if let PositionIds::Roberta { padding_idx } = self.position_ids()?
            && padding_idx + 1 >= self.max_position_embeddings
        {
            return bad(format!(
                "pad_token_id {padding_idx} leaves no positions below max_position_embeddings {}",
                self.max_position_embeddings
            ));
        }
        Ok(())
    }

    /// How this model forms its position ids (from `model_type` and `pad_token_id`).
    pub fn position_ids(&self) -> Result<PositionIds, TransformerError> {
        if ROBERTA_TYPES.contains(&self.model_type.as_str()) {
            let padding_idx = self.pad_token_id.ok_or_else(|| {
                TransformerError::config(None, "a RoBERTa-style model needs pad_token_id")
            })?;
            Ok(PositionIds::Roberta { padding_idx })
        } else {
            Ok(PositionIds::Absolute)
        }
    }

    /// The longest input the position table allows.
    pub fn max_seq_len(&self) -> usize {
        match self.position_ids() {
            Ok(PositionIds::Roberta { padding_idx }) => {
                self.max_position_embeddings - padding_idx - 1
            }
            _ => self.max_position_embeddings,
        }
    }

    /// A randomly initialised encoder, without the pooler (a cross-encoder pools itself),
    /// initialised as `transformers` does: N(0, 0.02) weights and embeddings, zero biases and
    /// padding row.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<BertModel<B>, TransformerError> {
        self.init_model(false, device)
    }

    /// A randomly initialised encoder with BERT's pooler (`dense` + tanh over `[CLS]`).
    pub fn init_with_pooler<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<BertModel<B>, TransformerError> {
        self.init_model(true, device)
    }

    fn init_model<B: Backend>(
        &self,
        with_pooler: bool,
        device: &B::Device,
    ) -> Result<BertModel<B>, TransformerError> {
        self.validate()?;
        let h = self.hidden_size;
        let layer_norm = || {
            LayerNormConfig::new(h)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        // as `transformers` initialises BERT: N(0, 0.02), zero biases, a zero padding row
        let linear = |i, o| hf_linear(i, o, true, device);
        let embeddings = BertEmbeddings {
            word_embeddings: hf_embedding(self.vocab_size, h, self.pad_token_id, device),
            position_embeddings: hf_embedding(self.max_position_embeddings, h, None, device),
            token_type_embeddings: hf_embedding(self.type_vocab_size, h, None, device),
            layer_norm: layer_norm(),
            positions: self.position_ids()?,
        };
        let layer = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_: BertSelfAttention {
                        query: linear(h, h),
                        key: linear(h, h),
                        value: linear(h, h),
                        num_heads: self.num_attention_heads,
                    },
                    output: BertSelfOutput {
                        dense: linear(h, h),
                        layer_norm: layer_norm(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(h, self.intermediate_size),
                    act: self.hidden_act,
                },
                output: BertOutput {
                    dense: linear(self.intermediate_size, h),
                    layer_norm: layer_norm(),
                },
            })
            .collect();
        Ok(BertModel {
            embeddings,
            encoder: BertEncoder { layer },
            pooler: with_pooler.then(|| BertPooler {
                dense: linear(h, h),
            }),
            attention: AttentionImpl::Flash,
            type_vocab_size: self.type_vocab_size,
            vocab_size: self.vocab_size,
            max_seq_len: self.max_seq_len(),
        })
    }
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    positions: PositionIds,
}

impl<B: linear_kernels::NormBackend> BertEmbeddings<B> {
    /// `[batch, seq]` ids to `[batch, seq, hidden]` embeddings.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let position_ids = match self.positions {
            PositionIds::Absolute => Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
                .reshape([1, seq])
                .expand([batch, seq]),
            PositionIds::Roberta { padding_idx } => {
                // HF create_position_ids_from_input_ids: cumsum(mask) * mask + padding_idx.
                let mask = input_ids.clone().not_equal_elem(padding_idx as i64).int();
                mask.clone().cumsum(1) * mask + padding_idx as i64
            }
        };
        let x = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(position_ids);
        self.layer_norm.forward(x)
    }
}

/// HF `BertSelfAttention`: query, key and value projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    num_heads: usize,
}

/// HF `BertSelfOutput`: output projection, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput<B: Backend> {
    pub dense: Linear<B>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
}

/// HF `BertAttention`.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// HF `self`.
    pub self_: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

impl<B: FlashAttentionBackend> BertAttention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        key_padding: Option<Tensor<B, 2, Bool>>,
        implementation: AttentionImpl,
    ) -> Tensor<B, 3> {
        let heads = self.self_.num_heads;
        let q = split_heads(linear(&self.self_.query, x.clone()), heads);
        let k = split_heads(linear(&self.self_.key, x.clone()), heads);
        let v = split_heads(linear(&self.self_.value, x.clone()), heads);
        let context = merge_heads(attention(q, k, v, key_padding, false, implementation));
        self.output
            .layer_norm
            .forward(linear(&self.output.dense, context) + x)
    }
}

/// HF `BertIntermediate`: the first feed-forward projection and its activation.
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
    act: HiddenAct,
}

/// HF `BertOutput`: the second feed-forward projection, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: Linear<B>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
}

/// One post-norm encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: FlashAttentionBackend> BertLayer<B> {
    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        key_padding: Option<Tensor<B, 2, Bool>>,
        implementation: AttentionImpl,
    ) -> Tensor<B, 3> {
        let attended = self.attention.forward(x, key_padding, implementation);
        let inner = self
            .intermediate
            .act
            .forward(linear(&self.intermediate.dense, attended.clone()));
        self.output
            .layer_norm
            .forward(linear(&self.output.dense, inner) + attended)
    }
}

/// HF `BertEncoder`: the stack of layers.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

/// HF `BertPooler`: `tanh(dense(h[:, 0]))`.
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

impl<B: Backend> BertPooler<B> {
    /// `[batch, seq, hidden]` to `[batch, hidden]` from the first token.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, h] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, h]);
        self.dense.forward(first).tanh()
    }
}

/// The encoder's outputs.
#[derive(Debug, Clone)]
pub struct BertModelOutput<B: Backend> {
    /// `[batch, seq, hidden]`: the last layer's hidden states (every position, padding included).
    pub last_hidden_state: Tensor<B, 3>,
    /// `[batch, hidden]`: the pooler's output, when the model has a pooler.
    pub pooler_output: Option<Tensor<B, 2>>,
}

/// A BERT-style encoder with HF tensor names (`embeddings.*`, `encoder.layer.{i}.*`, `pooler.*`).
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: Option<BertPooler<B>>,
    attention: AttentionImpl,
    vocab_size: usize,
    type_vocab_size: usize,
    max_seq_len: usize,
}

impl<B: Backend> BertModel<B> {
    /// Loads a model and its config from a local directory or a HF hub id holding
    /// `config.json` and `model.safetensors`. A checkpoint without `pooler.dense.*` gives a
    /// model without pooler.
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        device: &B::Device,
    ) -> Result<(Self, BertConfig), TransformerError> {
        let dir = model_io::resolve_model(spec, &["config.json", "model.safetensors"], hub)?;
        Self::load_dir(&dir, device)
    }

    /// Loads a model and its config from `dir` (`config.json` + `model.safetensors`).
    pub fn load_dir(
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Self, BertConfig), TransformerError> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let model = Self::from_safetensors(&config, &dir.join("model.safetensors"), device)?;
        Ok((model, config))
    }

    /// Writes `config.json` (HF layout) and `model.safetensors` (HF names) into `dir`, each
    /// atomically; [`Self::load_dir`] and `transformers`' `BertModel` read the result.
    pub fn save_pretrained(&self, config: &BertConfig, dir: &Path) -> Result<(), TransformerError> {
        Ok(model_io::save_pretrained(
            self,
            &config.to_hf_json(),
            dir,
            &save_remap(),
            &[],
        )?)
    }

    /// Builds the model of `config` and loads its weights from a HF safetensors file, with or
    /// without the `bert.` / `roberta.` prefix of task checkpoints (their heads are ignored).
    pub fn from_safetensors(
        config: &BertConfig,
        path: &Path,
        device: &B::Device,
    ) -> Result<Self, TransformerError> {
        let names = safetensors_names(path)?;
        let with_pooler = names.iter().any(|n| n.ends_with("pooler.dense.weight"));
        let model = config.init_model::<B>(with_pooler, device)?;
        let options = LoadOptions {
            remap: load_remap(),
            dtype: Some(DType::F32),
            ..Default::default()
        };
        Ok(model_io::load_safetensors(model, path, &options)?)
    }

    /// Saves the weights with HF names (no prefix), readable by `transformers`' `BertModel`.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), TransformerError> {
        Ok(model_io::save_safetensors(self, path, &save_remap(), &[])?)
    }

    /// The same model running another attention implementation.
    pub fn with_attention(mut self, implementation: AttentionImpl) -> Self {
        self.attention = implementation;
        self
    }

    /// The hidden size.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.dims()[1]
    }
}

impl<B: FlashAttentionBackend> BertModel<B> {
    /// Runs the encoder on `input_ids` (`[batch, seq]`). `token_type_ids` defaults to zeros,
    /// `attention_mask` (1 = token, 0 = padding) to all ones. Ids, token types and the mask are
    /// checked (one reduction each) so that bad input is an error, not a panic.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<BertModelOutput<B>, TransformerError> {
        let [batch, seq] = input_ids.dims();
        if batch == 0 || seq == 0 {
            return Err(TransformerError::Input(format!(
                "input_ids has an empty shape {:?}",
                [batch, seq]
            )));
        }
        if seq > self.max_seq_len {
            return Err(TransformerError::Input(format!(
                "sequence length {seq} exceeds the model's maximum {}",
                self.max_seq_len
            )));
        }
        check_batch(
            &input_ids,
            token_type_ids.as_ref().map(|t| (t, self.type_vocab_size)),
            attention_mask.as_ref(),
            self.vocab_size,
        )?;
        let token_type_ids =
            token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, seq], &input_ids.device()));
        let key_padding = attention_mask.map(|m| m.equal_elem(0));
        let mut hidden = self.embeddings.forward(input_ids, token_type_ids);
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, key_padding.clone(), self.attention);
        }
        let pooler_output = self.pooler.as_ref().map(|p| p.forward(hidden.clone()));
        Ok(BertModelOutput {
            last_hidden_state: hidden,
            pooler_output,
        })
    }
}

/// File names to module paths: drop a task prefix, `self` -> `self_`, `LayerNorm` -> `layer_norm`.
fn load_remap() -> Vec<(String, String)> {
    [
        (r"^(bert|roberta)\.", ""),
        (r"\.self\.", ".self_."),
        (r"LayerNorm\.", "layer_norm."),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Module paths back to HF names.
fn save_remap() -> Vec<(String, String)> {
    [(r"\.self_\.", ".self."), (r"layer_norm\.", "LayerNorm.")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
