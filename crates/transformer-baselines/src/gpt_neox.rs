//! A GPT-NeoX decoder (`GPTNeoXModel` of HF `transformers`; the Pythia family).
//!
//! Token embeddings (`embed_in`), `num_hidden_layers` pre-norm layers, a final LayerNorm. Each
//! layer runs causal self-attention with rotary position embeddings on the first
//! `rotary_pct * head_dim` channels of every head, and a GELU MLP; with `use_parallel_residual`
//! (Pythia) both read the layer input: `x + attn(ln1(x)) + mlp(ln2(x))`, otherwise
//! `y = x + attn(ln1(x)); y + mlp(ln2(y))`. Module paths are HF's tensor names without the
//! `gpt_neox.` prefix of `GPTNeoXForCausalLM` checkpoints (the loader strips it).
//!
//! Positions are `0..seq` for every row, as `GPTNeoXModel.forward` without `position_ids`.
//! Rotary attention depends only on the distance between tokens, so left-padded rows give the
//! same hidden states on their real tokens as unpadded ones.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::{Bool, DType, Int, Tensor, backend::Backend};
use linear_kernels::{LayerNorm, LayerNormConfig};
use linear_kernels::{MatmulBackend, linear};
use model_io::{HubOptions, LoadOptions};
use serde::Deserialize;

use crate::TransformerError;
use crate::activation::HiddenAct;
use crate::attention::{AttentionImpl, FlashAttentionBackend, attention, merge_heads};
use crate::checkpoint::{check_batch, hf_init, hf_linear};

/// A GPT-NeoX configuration, resolved from a HF `config.json` of either generation: older files
/// (Pythia on the hub) write `rotary_pct` and `rotary_emb_base`, `transformers` 5 writes
/// `rope_parameters: {partial_rotary_factor, rope_theta}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GptNeoXConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    /// Fraction of each head's channels that get rotary embeddings.
    pub rotary_pct: f64,
    /// Rotary base (theta).
    pub rotary_emb_base: f64,
    pub layer_norm_eps: f64,
    pub use_parallel_residual: bool,
    /// Biases on the attention projections.
    pub attention_bias: bool,
}

/// `config.json` as written; resolved into [`GptNeoXConfig`].
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: HiddenAct,
    max_position_embeddings: usize,
    rotary_pct: Option<f64>,
    rotary_emb_base: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_true")]
    use_parallel_residual: bool,
    #[serde(default = "default_true")]
    attention_bias: bool,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
}

fn default_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl GptNeoXConfig {
    /// Pythia's layout (GELU MLP of width `4 * hidden`, rotary on a quarter of each head,
    /// parallel residual, biased attention, 2,048 positions) at the given sizes.
    pub fn new(hidden: usize, layers: usize, heads: usize, vocab_size: usize) -> Self {
        Self {
            vocab_size,
            ..Self::pythia(hidden, layers, heads)
        }
    }

    /// The HF `config.json` of this configuration (`model_type` `gpt_neox`, Pythia's key
    /// names); [`Self::from_file`] reads it back.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": "gpt_neox",
            "architectures": ["GPTNeoXForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act.hf_name(),
            "max_position_embeddings": self.max_position_embeddings,
            "rotary_pct": self.rotary_pct,
            "rotary_emb_base": self.rotary_emb_base,
            "layer_norm_eps": self.layer_norm_eps,
            "use_parallel_residual": self.use_parallel_residual,
            "attention_bias": self.attention_bias,
        })
    }

    fn pythia(hidden: usize, layers: usize, heads: usize) -> Self {
        Self {
            vocab_size: 50304,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            hidden_act: HiddenAct::Gelu,
            max_position_embeddings: 2048,
            rotary_pct: 0.25,
            rotary_emb_base: 10000.0,
            layer_norm_eps: 1e-5,
            use_parallel_residual: true,
            attention_bias: true,
        }
    }

    /// EleutherAI/pythia-70m: 6 layers, hidden 512, 8 heads.
    pub fn pythia_70m() -> Self {
        Self::pythia(512, 6, 8)
    }

    /// EleutherAI/pythia-160m: 12 layers, hidden 768, 12 heads.
    pub fn pythia_160m() -> Self {
        Self::pythia(768, 12, 12)
    }

    /// EleutherAI/pythia-410m: 24 layers, hidden 1024, 16 heads.
    pub fn pythia_410m() -> Self {
        Self::pythia(1024, 24, 16)
    }

    /// Reads, resolves and validates a HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, TransformerError> {
        let raw: RawConfig = model_io::read_json(path)?;
        let err = |m: String| TransformerError::config(Some(path), m);
        if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(err("rope_scaling is not supported".into()));
        }
        let rope = raw.rope_parameters.as_ref();
        if let Some(t) = rope.and_then(|r| r.rope_type.as_deref())
            && t != "default"
        {
            return Err(err(format!(
                "rope_type `{t}` is not supported (only `default`)"
            )));
        }
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act: raw.hidden_act,
            max_position_embeddings: raw.max_position_embeddings,
            rotary_pct: rope
                .and_then(|r| r.partial_rotary_factor)
                .or(raw.rotary_pct)
                .unwrap_or(0.25),
            rotary_emb_base: rope
                .and_then(|r| r.rope_theta)
                .or(raw.rotary_emb_base)
                .unwrap_or(10000.0),
            layer_norm_eps: raw.layer_norm_eps,
            use_parallel_residual: raw.use_parallel_residual,
            attention_bias: raw.attention_bias,
        };
        config.validate().map_err(|e| match e {
            TransformerError::Config { message, .. } => err(message),
            other => other,
        })?;
        Ok(config)
    }

    /// Checks that the sizes describe a buildable decoder.
    pub fn validate(&self) -> Result<(), TransformerError> {
        let bad = |m: String| Err(TransformerError::config(None, m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
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
        if !(0.0..=1.0).contains(&self.rotary_pct) {
            return bad(format!("rotary_pct {} is not in [0, 1]", self.rotary_pct));
        }
        if self.rotary_emb_base <= 0.0 || !self.rotary_emb_base.is_finite() {
            return bad(format!(
                "rotary_emb_base {} must be positive",
                self.rotary_emb_base
            ));
        }
        if !self.rotary_ndims().is_multiple_of(2) {
            return bad(format!(
                "rotary_pct {} gives an odd number of rotary channels ({})",
                self.rotary_pct,
                self.rotary_ndims()
            ));
        }
        Ok(())
    }

    /// Channels per head.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Rotary channels per head: `int(head_size * rotary_pct)`, as HF.
    pub fn rotary_ndims(&self) -> usize {
        (self.head_size() as f64 * self.rotary_pct) as usize
    }

    /// A randomly initialised decoder.
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<GptNeoXModel<B>, TransformerError> {
        self.validate()?;
        let h = self.hidden_size;
        let layer_norm = || {
            LayerNormConfig::new(h)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let rotary = Rotary::new(self.rotary_ndims(), self.rotary_emb_base);
        let layers = (0..self.num_hidden_layers)
            .map(|_| GptNeoXLayer {
                input_layernorm: layer_norm(),
                post_attention_layernorm: layer_norm(),
                attention: GptNeoXAttention {
                    query_key_value: hf_linear(h, 3 * h, self.attention_bias, device),
                    dense: hf_linear(h, h, self.attention_bias, device),
                    num_heads: self.num_attention_heads,
                    rotary: rotary.clone(),
                },
                mlp: GptNeoXMlp {
                    dense_h_to_4h: hf_linear(h, self.intermediate_size, true, device),
                    dense_4h_to_h: hf_linear(self.intermediate_size, h, true, device),
                    act: self.hidden_act,
                },
                use_parallel_residual: self.use_parallel_residual,
            })
            .collect();
        Ok(GptNeoXModel {
            embed_in: EmbeddingConfig::new(self.vocab_size, h)
                .with_initializer(hf_init())
                .init(device),
            layers,
            final_layer_norm: layer_norm(),
            attention: AttentionImpl::Flash,
            vocab_size: self.vocab_size,
            max_seq_len: self.max_position_embeddings,
        })
    }
}

/// Rotary position embeddings on the first `ndims` channels of each head (HF's
/// `rotate_half` convention: the two halves of those channels form the pairs).
#[derive(Debug, Clone)]
pub struct Rotary {
    ndims: usize,
    /// `1 / base^(2i / ndims)`, `i < ndims / 2`, in f32 as `transformers` computes it.
    inv_freq: Vec<f32>,
}

impl Rotary {
    /// Rotary tables for `ndims` channels (even) and a `base`.
    pub fn new(ndims: usize, base: f64) -> Self {
        let inv_freq = (0..ndims / 2)
            .map(|i| (1.0 / base.powf((2 * i) as f64 / ndims as f64)) as f32)
            .collect();
        Self { ndims, inv_freq }
    }

    /// `(cos, sin)` for positions `0..seq`, shaped `[1, 1, seq, ndims]`.
    fn tables<B: Backend>(&self, seq: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let half = self.inv_freq.len();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, device)
            .float()
            .reshape([seq, 1]);
        let inv_freq =
            Tensor::<B, 1>::from_floats(self.inv_freq.as_slice(), device).reshape([1, half]);
        let freqs = positions.matmul(inv_freq); // [seq, half]
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 1).reshape([1, 1, seq, self.ndims]);
        (emb.clone().cos(), emb.sin())
    }

    /// Rotates `x` (`[batch, heads, seq, head_dim]`) with the tables from [`Self::tables`].
    fn apply<B: Backend>(
        &self,
        x: Tensor<B, 4>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        if self.ndims == 0 {
            return x;
        }
        let head_dim = x.dims()[3];
        let rot = x.clone().narrow(3, 0, self.ndims);
        let half = self.ndims / 2;
        let rotated_half = Tensor::cat(
            vec![
                rot.clone().narrow(3, half, half).neg(),
                rot.clone().narrow(3, 0, half),
            ],
            3,
        );
        let embedded = rot * cos.clone() + rotated_half * sin.clone();
        if self.ndims == head_dim {
            embedded
        } else {
            let pass = x.narrow(3, self.ndims, head_dim - self.ndims);
            Tensor::cat(vec![embedded, pass], 3)
        }
    }
}

/// HF `GPTNeoXAttention`: fused QKV projection (per head `[q | k | v]`), rotary, causal
/// attention, output projection.
#[derive(Module, Debug)]
pub struct GptNeoXAttention<B: Backend> {
    pub query_key_value: Linear<B>,
    pub dense: Linear<B>,
    num_heads: usize,
    rotary: Rotary,
}

impl<B: FlashAttentionBackend> GptNeoXAttention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        key_padding: Option<Tensor<B, 2, Bool>>,
        rope: &(Tensor<B, 4>, Tensor<B, 4>),
        implementation: AttentionImpl,
    ) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_heads;
        let head_size = hidden / heads;
        let qkv = linear(&self.query_key_value, x)
            .reshape([batch, seq, heads, 3 * head_size])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(3, 0, head_size);
        let k = qkv.clone().narrow(3, head_size, head_size);
        let v = qkv.narrow(3, 2 * head_size, head_size);
        let q = self.rotary.apply(q, &rope.0, &rope.1);
        let k = self.rotary.apply(k, &rope.0, &rope.1);
        let context = attention(q, k, v, key_padding, true, implementation);
        linear(&self.dense, merge_heads(context))
    }
}

/// HF `GPTNeoXMLP`.
#[derive(Module, Debug)]
pub struct GptNeoXMlp<B: Backend> {
    pub dense_h_to_4h: Linear<B>,
    pub dense_4h_to_h: Linear<B>,
    act: HiddenAct,
}

impl<B: MatmulBackend> GptNeoXMlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear(
            &self.dense_4h_to_h,
            self.act.forward(linear(&self.dense_h_to_4h, x)),
        )
    }
}

/// HF `GPTNeoXLayer`.
#[derive(Module, Debug)]
pub struct GptNeoXLayer<B: Backend> {
    pub input_layernorm: LayerNorm<B>,
    pub post_attention_layernorm: LayerNorm<B>,
    pub attention: GptNeoXAttention<B>,
    pub mlp: GptNeoXMlp<B>,
    use_parallel_residual: bool,
}

impl<B: FlashAttentionBackend> GptNeoXLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        key_padding: Option<Tensor<B, 2, Bool>>,
        rope: &(Tensor<B, 4>, Tensor<B, 4>),
        implementation: AttentionImpl,
    ) -> Tensor<B, 3> {
        let attn = self.attention.forward(
            self.input_layernorm.forward(x.clone()),
            key_padding,
            rope,
            implementation,
        );
        if self.use_parallel_residual {
            let mlp = self
                .mlp
                .forward(self.post_attention_layernorm.forward(x.clone()));
            mlp + attn + x
        } else {
            let y = attn + x;
            let mlp = self
                .mlp
                .forward(self.post_attention_layernorm.forward(y.clone()));
            mlp + y
        }
    }
}

/// A GPT-NeoX decoder with HF tensor names (`embed_in`, `layers.{i}.*`, `final_layer_norm`).
#[derive(Module, Debug)]
pub struct GptNeoXModel<B: Backend> {
    pub embed_in: Embedding<B>,
    pub layers: Vec<GptNeoXLayer<B>>,
    pub final_layer_norm: LayerNorm<B>,
    attention: AttentionImpl,
    vocab_size: usize,
    max_seq_len: usize,
}

impl<B: Backend> GptNeoXModel<B> {
    /// Loads a model and its config from a local directory or a HF hub id holding
    /// `config.json` and `model.safetensors`.
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        device: &B::Device,
    ) -> Result<(Self, GptNeoXConfig), TransformerError> {
        let dir = model_io::resolve_model(spec, &["config.json", "model.safetensors"], hub)?;
        Self::load_dir(&dir, device)
    }

    /// Loads a model and its config from `dir` (`config.json` + `model.safetensors`).
    pub fn load_dir(
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Self, GptNeoXConfig), TransformerError> {
        let config = GptNeoXConfig::from_file(&dir.join("config.json"))?;
        let model = Self::from_safetensors(&config, &dir.join("model.safetensors"), device)?;
        Ok((model, config))
    }

    /// Writes `config.json` (HF layout) and `model.safetensors` (`GPTNeoXModel` names) into
    /// `dir`, each atomically; [`Self::load_dir`] and `transformers` read the result.
    pub fn save_pretrained(
        &self,
        config: &GptNeoXConfig,
        dir: &Path,
    ) -> Result<(), TransformerError> {
        Ok(model_io::save_pretrained(
            self,
            &config.to_hf_json(),
            dir,
            &[],
            &[],
        )?)
    }

    /// Builds the model of `config` and loads its weights from a HF safetensors file
    /// (`GPTNeoXModel` names, or `GPTNeoXForCausalLM` ones whose `embed_out` is ignored).
    pub fn from_safetensors(
        config: &GptNeoXConfig,
        path: &Path,
        device: &B::Device,
    ) -> Result<Self, TransformerError> {
        let model = config.init::<B>(device)?;
        let options = LoadOptions {
            remap: vec![(r"^gpt_neox\.".into(), String::new())],
            dtype: Some(DType::F32),
            ..Default::default()
        };
        Ok(model_io::load_safetensors(model, path, &options)?)
    }

    /// Saves the weights with `GPTNeoXModel`'s names.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), TransformerError> {
        Ok(model_io::save_safetensors(self, path, &[], &[])?)
    }

    /// The same model running another attention implementation.
    pub fn with_attention(mut self, implementation: AttentionImpl) -> Self {
        self.attention = implementation;
        self
    }

    /// The hidden size.
    pub fn hidden_size(&self) -> usize {
        self.embed_in.weight.dims()[1]
    }
}

impl<B: FlashAttentionBackend> GptNeoXModel<B> {
    /// Runs the decoder on `input_ids` (`[batch, seq]`) with an optional `attention_mask`
    /// (1 = token, 0 = padding; left or right padding). Returns the hidden states after the
    /// final LayerNorm, `[batch, seq, hidden]`; positions that are padding hold no meaningful
    /// values (a left-padding position sees no key and attends to nothing).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, TransformerError> {
        let [batch, seq] = input_ids.dims();
        if batch == 0 || seq == 0 {
            return Err(TransformerError::Input(format!(
                "input_ids has an empty shape {:?}",
                [batch, seq]
            )));
        }
        if seq > self.max_seq_len {
            return Err(TransformerError::Input(format!(
                "sequence length {seq} exceeds max_position_embeddings {}",
                self.max_seq_len
            )));
        }
        check_batch(&input_ids, None, attention_mask.as_ref(), self.vocab_size)?;
        let device = input_ids.device();
        let key_padding = attention_mask.map(|m| m.equal_elem(0));
        let rope = match self.layers.first() {
            Some(layer) => layer.attention.rotary.tables::<B>(seq, &device),
            None => (
                Tensor::zeros([1, 1, 1, 1], &device),
                Tensor::zeros([1, 1, 1, 1], &device),
            ),
        };
        let mut hidden = self.embed_in.forward(input_ids);
        for layer in &self.layers {
            hidden = layer.forward(hidden, key_padding.clone(), &rope, self.attention);
        }
        Ok(self.final_layer_norm.forward(hidden))
    }
}
