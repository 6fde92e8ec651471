//! `MambaConfig`: the model's sizes and options, read from either checkpoint layout.
//!
//! - HF `transformers` (`model_type: "mamba"`): `hidden_size`, `num_hidden_layers`,
//!   `state_size`, `expand`, `conv_kernel`, `time_step_rank` ("auto" = ceil(hidden / 16)), ...
//! - original `state-spaces/mamba` (`MambaConfig` of `mamba_ssm`): `d_model`, `n_layer`,
//!   `vocab_size` (padded up to `pad_vocab_size_multiple`), `ssm_cfg` with `d_state`, `d_conv`,
//!   `expand`, `dt_rank`, `bias`, `conv_bias`, `dt_min`, `dt_max`, ...

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MambaError;

/// Sizes and options of a Mamba (v1) language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MambaConfig {
    /// Model width (`d_model`).
    pub hidden_size: usize,
    /// Number of residual blocks.
    pub num_hidden_layers: usize,
    /// SSM state size N (`d_state`).
    pub state_size: usize,
    /// `d_inner = expand * hidden_size`.
    pub expand: usize,
    /// Width of the causal depthwise convolution (`d_conv`).
    pub conv_kernel: usize,
    /// Rank of the delta projection (`dt_rank`).
    pub time_step_rank: usize,
    /// Vocabulary size as stored in the checkpoint (before padding).
    pub vocab_size: usize,
    /// The embedding is padded to a multiple of this (1 = no padding; the original layout
    /// uses 8).
    pub pad_vocab_size_multiple: usize,
    /// RMSNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Bias in `in_proj` and `out_proj`.
    pub use_bias: bool,
    /// Bias in the depthwise convolution.
    pub use_conv_bias: bool,
    /// Keep the residual stream in fp32 when the model runs in half precision.
    pub residual_in_fp32: bool,
    /// The LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Initialisation of `dt_proj` (as upstream).
    pub time_step_min: f64,
    /// Initialisation of `dt_proj` (as upstream).
    pub time_step_max: f64,
    /// Initialisation of `dt_proj` (as upstream).
    pub time_step_floor: f64,
    /// Initialisation of `dt_proj` (as upstream).
    pub time_step_scale: f64,
    /// `"random"` or `"constant"` initialisation of `dt_proj.weight`.
    pub time_step_init_scheme: String,
    /// Token id of padding / end of sequence in the GPT-NeoX tokenizer (0 in the Mamba
    /// checkpoints).
    pub pad_token_id: u32,
    /// End-of-sequence id.
    pub eos_token_id: u32,
}

impl MambaConfig {
    /// A config with upstream defaults for everything but the sizes.
    pub fn new(hidden_size: usize, num_hidden_layers: usize, vocab_size: usize) -> Self {
        MambaConfig {
            hidden_size,
            num_hidden_layers,
            state_size: 16,
            expand: 2,
            conv_kernel: 4,
            time_step_rank: hidden_size.div_ceil(16),
            vocab_size,
            pad_vocab_size_multiple: 1,
            layer_norm_epsilon: 1e-5,
            use_bias: false,
            use_conv_bias: true,
            residual_in_fp32: true,
            tie_word_embeddings: true,
            time_step_min: 0.001,
            time_step_max: 0.1,
            time_step_floor: 1e-4,
            time_step_scale: 1.0,
            time_step_init_scheme: "random".into(),
            pad_token_id: 0,
            eos_token_id: 0,
        }
    }

    /// A randomly initialised backbone of this config (Burn's `Config::init` convention;
    /// the same as [`crate::MambaModel::new`]).
    pub fn init<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> crate::MambaModel<B> {
        crate::MambaModel::new(self, device)
    }

    /// The state-spaces presets (GPT-NeoX vocabulary 50,277 padded to 50,280).
    pub fn preset(name: &str) -> Result<Self, MambaError> {
        let (d, n) = match name.trim_start_matches("mamba-") {
            "130m" => (768, 24),
            "370m" => (1024, 48),
            "790m" => (1536, 48),
            "1.4b" => (2048, 48),
            "2.8b" => (2560, 64),
            _ => {
                return Err(MambaError::Config(format!(
                    "unknown preset `{name}` (expected 130m, 370m, 790m, 1.4b or 2.8b)"
                )));
            }
        };
        let mut c = MambaConfig::new(d, n, 50277);
        c.pad_vocab_size_multiple = 8;
        Ok(c)
    }

    /// `expand * hidden_size`.
    pub fn d_inner(&self) -> usize {
        self.expand * self.hidden_size
    }

    /// Rows of the embedding matrix: `vocab_size` rounded up to `pad_vocab_size_multiple`.
    pub fn padded_vocab_size(&self) -> usize {
        let m = self.pad_vocab_size_multiple.max(1);
        self.vocab_size.div_ceil(m) * m
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        usize::try_from(self.num_params_wide()).unwrap_or(usize::MAX)
    }

    /// [`Self::num_params`] in 128 bits (no overflow for any field values below 2^24).
    fn num_params_wide(&self) -> u128 {
        let w = |x: usize| x as u128;
        let (h, d, n, r, k) = (
            w(self.hidden_size),
            w(self.expand) * w(self.hidden_size),
            w(self.state_size),
            w(self.time_step_rank),
            w(self.conv_kernel),
        );
        let mixer = h * 2 * d
            + if self.use_bias { 2 * d + h } else { 0 }
            + d * k
            + if self.use_conv_bias { d } else { 0 }
            + d * (r + 2 * n)
            + r * d
            + d
            + d * n
            + d
            + d * h;
        let m = w(self.pad_vocab_size_multiple.max(1));
        let emb = w(self.vocab_size).div_ceil(m) * m * h;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        emb + w(self.num_hidden_layers) * (mixer + h) + h + head
    }

    /// Reads `config.json` in either layout (see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, MambaError> {
        let v: Value = model_io::read_json(path)?;
        Self::from_json(&v).map_err(|e| MambaError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses a config object in either layout.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("expected a JSON object")?;
        if obj.contains_key("d_model") {
            Self::from_original(v)
        } else {
            Self::from_hf(v)
        }
    }

    fn from_hf(v: &Value) -> Result<Self, String> {
        let hidden = req_usize(v, "hidden_size")?;
        let mut c = MambaConfig::new(
            hidden,
            req_usize(v, "num_hidden_layers")?,
            req_usize(v, "vocab_size")?,
        );
        if let Some(t) = v.get("model_type").and_then(Value::as_str)
            && t != "mamba"
        {
            return Err(format!(
                "model_type is `{t}`, expected `mamba` (Mamba-2 and other models are not supported)"
            ));
        }
        c.state_size = opt_usize(v, "state_size")?.unwrap_or(c.state_size);
        c.expand = opt_usize(v, "expand")?.unwrap_or(c.expand);
        c.conv_kernel = opt_usize(v, "conv_kernel")?.unwrap_or(c.conv_kernel);
        c.time_step_rank = match v.get("time_step_rank") {
            None | Some(Value::Null) => c.time_step_rank,
            Some(Value::String(s)) if s == "auto" => hidden.div_ceil(16),
            Some(x) => x.as_u64().ok_or(format!(
                "`time_step_rank`: expected \"auto\" or an integer, found {x}"
            ))? as usize,
        };
        let intermediate = opt_usize(v, "intermediate_size")?;
        c.pad_vocab_size_multiple = opt_usize(v, "pad_vocab_size_multiple")?.unwrap_or(1);
        c.layer_norm_epsilon = opt_f64(v, "layer_norm_epsilon")?.unwrap_or(c.layer_norm_epsilon);
        c.use_bias = opt_bool(v, "use_bias")?.unwrap_or(c.use_bias);
        c.use_conv_bias = opt_bool(v, "use_conv_bias")?.unwrap_or(c.use_conv_bias);
        c.residual_in_fp32 = opt_bool(v, "residual_in_fp32")?.unwrap_or(c.residual_in_fp32);
        c.tie_word_embeddings =
            opt_bool(v, "tie_word_embeddings")?.unwrap_or(c.tie_word_embeddings);
        c.time_step_min = opt_f64(v, "time_step_min")?.unwrap_or(c.time_step_min);
        c.time_step_max = opt_f64(v, "time_step_max")?.unwrap_or(c.time_step_max);
        c.time_step_floor = opt_f64(v, "time_step_floor")?.unwrap_or(c.time_step_floor);
        c.time_step_scale = opt_f64(v, "time_step_scale")?.unwrap_or(c.time_step_scale);
        if let Some(s) = v.get("time_step_init_scheme").and_then(Value::as_str) {
            c.time_step_init_scheme = s.into();
        }
        c.pad_token_id = opt_u32(v, "pad_token_id")?.unwrap_or(0);
        c.eos_token_id = opt_u32(v, "eos_token_id")?.unwrap_or(0);
        c.check()?;
        // after the size checks: `d_inner` cannot overflow there
        if let Some(inter) = intermediate
            && inter != c.d_inner()
        {
            return Err(format!(
                "`intermediate_size` {inter} differs from expand * hidden_size = {}",
                c.d_inner()
            ));
        }
        Ok(c)
    }

    fn from_original(v: &Value) -> Result<Self, String> {
        let mut c = MambaConfig::new(
            req_usize(v, "d_model")?,
            req_usize(v, "n_layer")?,
            req_usize(v, "vocab_size")?,
        );
        c.pad_vocab_size_multiple = opt_usize(v, "pad_vocab_size_multiple")?.unwrap_or(8);
        c.residual_in_fp32 = opt_bool(v, "residual_in_fp32")?.unwrap_or(true);
        c.tie_word_embeddings = opt_bool(v, "tie_embeddings")?.unwrap_or(true);
        if opt_bool(v, "rms_norm")? == Some(false) {
            return Err("`rms_norm: false` (LayerNorm blocks) is not supported".into());
        }
        if let Some(ssm) = v.get("ssm_cfg").filter(|s| !s.is_null()) {
            if let Some(layer) = ssm.get("layer").and_then(Value::as_str)
                && layer != "Mamba1"
            {
                return Err(format!(
                    "ssm_cfg.layer `{layer}` is not supported (Mamba1 only)"
                ));
            }
            c.state_size = opt_usize(ssm, "d_state")?.unwrap_or(c.state_size);
            c.conv_kernel = opt_usize(ssm, "d_conv")?.unwrap_or(c.conv_kernel);
            c.expand = opt_usize(ssm, "expand")?.unwrap_or(c.expand);
            c.time_step_rank = match ssm.get("dt_rank") {
                None | Some(Value::Null) => c.time_step_rank,
                Some(Value::String(s)) if s == "auto" => c.hidden_size.div_ceil(16),
                Some(x) => x.as_u64().ok_or(format!(
                    "`ssm_cfg.dt_rank`: expected \"auto\" or an integer, found {x}"
                ))? as usize,
            };
            c.use_bias = opt_bool(ssm, "bias")?.unwrap_or(false);
            c.use_conv_bias = opt_bool(ssm, "conv_bias")?.unwrap_or(true);
            c.time_step_min = opt_f64(ssm, "dt_min")?.unwrap_or(c.time_step_min);
            c.time_step_max = opt_f64(ssm, "dt_max")?.unwrap_or(c.time_step_max);
            c.time_step_floor = opt_f64(ssm, "dt_init_floor")?.unwrap_or(c.time_step_floor);
            c.time_step_scale = opt_f64(ssm, "dt_scale")?.unwrap_or(c.time_step_scale);
        }
        c.check()?;
        Ok(c)
    }

    /// The HF `config.json` object for this config (what `save_pretrained` writes).
    pub fn to_hf_json(&self) -> Value {
        serde_json::json!({
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "state_size": self.state_size,
            "expand": self.expand,
            "intermediate_size": self.d_inner(),
            "conv_kernel": self.conv_kernel,
            "time_step_rank": self.time_step_rank,
            "vocab_size": self.padded_vocab_size(),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "use_bias": self.use_bias,
            "use_conv_bias": self.use_conv_bias,
            "residual_in_fp32": self.residual_in_fp32,
            "tie_word_embeddings": self.tie_word_embeddings,
            "time_step_min": self.time_step_min,
            "time_step_max": self.time_step_max,
            "time_step_floor": self.time_step_floor,
            "time_step_scale": self.time_step_scale,
            "time_step_init_scheme": self.time_step_init_scheme,
            "hidden_act": "silu",
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.eos_token_id,
            "eos_token_id": self.eos_token_id,
        })
    }

    /// Rejects sizes the model cannot be built with.
    pub fn check(&self) -> Result<(), String> {
        let nonzero = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("state_size", self.state_size),
            ("expand", self.expand),
            ("conv_kernel", self.conv_kernel),
            ("time_step_rank", self.time_step_rank),
            ("vocab_size", self.vocab_size),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(format!("`{name}` must be positive"));
            }
            // sizes far past any real model: refused before anything multiplies or allocates
            let limit = if name == "num_hidden_layers" {
                1 << 16
            } else {
                1 << 24
            };
            if v > limit {
                return Err(format!("`{name}` {v} is above the limit {limit}"));
            }
        }
        if self.pad_vocab_size_multiple > 1 << 24 {
            return Err(format!(
                "`pad_vocab_size_multiple` {} is above the limit {}",
                self.pad_vocab_size_multiple,
                1 << 24
            ));
        }
        let params = self.num_params_wide();
        if params > 1 << 40 {
            return Err(format!(
                "{params} parameters (hidden_size {}, expand {}, {} layers, vocabulary {}): \
                 above the limit of 2^40",
                self.hidden_size, self.expand, self.num_hidden_layers, self.vocab_size
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err("`layer_norm_epsilon` must be positive".into());
        }
        if self.time_step_min.is_nan()
            || self.time_step_min <= 0.0
            || self.time_step_min > self.time_step_max
        {
            return Err("need 0 < time_step_min <= time_step_max".into());
        }
        Ok(())
    }
}

fn req_usize(v: &Value, key: &str) -> Result<usize, String> {
    opt_usize(v, key)?.ok_or(format!("missing `{key}`"))
}

fn opt_u32(v: &Value, key: &str) -> Result<Option<u32>, String> {
    opt_usize(v, key)?
        .map(|x| u32::try_from(x).map_err(|_| format!("`{key}` {x} is not a 32-bit token id")))
        .transpose()
}

fn opt_usize(v: &Value, key: &str) -> Result<Option<usize>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(|u| Some(u as usize)).ok_or(format!(
            "`{key}`: expected a non-negative integer, found {x}"
        )),
    }
}

fn opt_f64(v: &Value, key: &str) -> Result<Option<f64>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or(format!("`{key}`: expected a number, found {x}")),
    }
}

fn opt_bool(v: &Value, key: &str) -> Result<Option<bool>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_bool()
            .map(Some)
            .ok_or(format!("`{key}`: expected true or false, found {x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_sizes() {
        // Parameter counts of state-spaces/mamba-{130m,370m,...} (tied head, padded vocab).
        let expect = [
            ("130m", 129_135_360),
            ("370m", 371_516_416),
            ("790m", 793_204_224),
            ("1.4b", 1_372_178_432),
            ("2.8b", 2_768_345_600),
        ];
        for (name, n) in expect {
            let c = MambaConfig::preset(name).unwrap();
            assert_eq!(c.padded_vocab_size(), 50280);
            assert_eq!(c.num_params(), n, "{name}");
        }
        assert!(MambaConfig::preset("3b").is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = MambaConfig::from_json(&serde_json::json!({"hidden_size": 8})).unwrap_err();
        assert!(e.contains("num_hidden_layers"), "{e}");
        let e = MambaConfig::from_json(&serde_json::json!({
            "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 10, "state_size": "x"
        }))
        .unwrap_err();
        assert!(e.contains("state_size"), "{e}");
        let e = MambaConfig::from_json(&serde_json::json!({
            "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 10, "model_type": "mamba2"
        }))
        .unwrap_err();
        assert!(e.contains("mamba2"), "{e}");
    }
}
