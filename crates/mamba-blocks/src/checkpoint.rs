//! Loading and saving Mamba checkpoints: HF layout (`backbone.embeddings`,
//! `backbone.layers.{i}.mixer.*`, `backbone.norm_f`, optional `lm_head`) and the original
//! state-spaces layout (`backbone.embedding`), from a local directory or a hub id.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use model_io::{HubOptions, LoadOptions};

use crate::{MambaConfig, MambaError, MambaForCausalLM, MambaModel};

/// File holding the weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File holding the config.
pub const CONFIG_FILE: &str = "config.json";

/// File name -> module path rewrites shared by both layouts.
fn load_remap(file_names: &[String], with_head: bool) -> Vec<(String, String)> {
    let mut remap = vec![
        (r"\.mixer\.A_log$".into(), ".mixer.a_log".into()),
        (r"\.mixer\.D$".into(), ".mixer.d".into()),
        (
            r"^backbone\.embedding\.".into(),
            "backbone.embeddings.".into(),
        ),
        (r"^embedding\.".into(), "embeddings.".into()),
    ];
    let prefixed = file_names.iter().any(|n| n.starts_with("backbone."));
    match (with_head, prefixed) {
        // A bare backbone file loaded into the LM: give its names the prefix.
        (true, false) => remap.push((
            r"^(embeddings|embedding|layers|norm_f)\.".into(),
            "backbone.$1.".into(),
        )),
        // An LM file loaded into the backbone: drop the prefix.
        (false, true) => remap.push((r"^backbone\.".into(), String::new())),
        _ => {}
    }
    remap
}

fn save_remap() -> Vec<(String, String)> {
    vec![
        (r"\.mixer\.a_log$".into(), ".mixer.A_log".into()),
        (r"\.mixer\.d$".into(), ".mixer.D".into()),
    ]
}

/// Loads a safetensors file into `model` (the LM with `with_head`, else the backbone), with the
/// name rewrites the file's layout needs.
fn load_file<B: Backend, M: Module<B>>(
    model: M,
    file: &Path,
    with_head: bool,
) -> Result<M, MambaError> {
    let names = model_io::tensor_names(file)?;
    let options = LoadOptions {
        remap: load_remap(&names, with_head),
        // a tensor the model does not use means the config disagrees with the weights (say,
        // fewer layers): an error, except a tied or a backbone load's LM head
        strict_unused: true,
        // a language-model head, or the scoring head of a sequence-classification checkpoint
        ignore_unused: vec![
            "lm_head.weight".into(),
            "score.weight".into(),
            "score.bias".into(),
        ],
        ..LoadOptions::default()
    };
    Ok(model_io::load_safetensors(model, file, &options)?)
}

/// Reads `config.json` from `dir`, builds the model with `new`, loads `model.safetensors`.
fn load_from_dir<B: Backend, M: Module<B>>(
    dir: &Path,
    new: impl FnOnce(&MambaConfig) -> M,
    with_head: bool,
) -> Result<(M, MambaConfig), MambaError> {
    let config = MambaConfig::from_file(&dir.join(CONFIG_FILE))?;
    let model = load_file(new(&config), &dir.join(WEIGHTS_FILE), with_head)?;
    Ok((model, config))
}

impl<B: Backend> MambaForCausalLM<B> {
    /// Loads `config.json` + `model.safetensors` from a local directory or a hub id (e.g.
    /// `state-spaces/mamba-130m-hf`). Half-precision weights are converted to fp32.
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        device: &B::Device,
    ) -> Result<(Self, MambaConfig), MambaError> {
        let dir = model_io::resolve_model(spec, &[CONFIG_FILE, WEIGHTS_FILE], hub)?;
        Self::load_dir(&dir, device)
    }

    /// Loads `config.json` + `model.safetensors` from `dir`.
    pub fn load_dir(dir: &Path, device: &B::Device) -> Result<(Self, MambaConfig), MambaError> {
        load_from_dir(dir, |c| Self::new(c, device), true)
    }

    /// Loads the weights of a safetensors file into this model (whose config must match).
    pub fn load_weights(self, file: &Path) -> Result<Self, MambaError> {
        load_file(self, file, true)
    }

    /// Writes `config.json` (HF layout) and `model.safetensors` (HF names, fp32, no
    /// `lm_head.weight` when tied) into `dir`, each atomically. `transformers` and
    /// [`Self::load_dir`] read the result.
    pub fn save_pretrained(&self, config: &MambaConfig, dir: &Path) -> Result<(), MambaError> {
        save_dir(self, config, dir)
    }
}

impl<B: Backend> MambaModel<B> {
    /// Loads a backbone from a local directory or a hub id (an LM head in the file is ignored).
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        device: &B::Device,
    ) -> Result<(Self, MambaConfig), MambaError> {
        let dir = model_io::resolve_model(spec, &[CONFIG_FILE, WEIGHTS_FILE], hub)?;
        Self::load_dir(&dir, device)
    }

    /// Loads a backbone from `dir` (`config.json` + `model.safetensors`, HF's
    /// `MambaForCausalLM` or `MambaModel` layout; an LM head or a scoring head in the file is
    /// ignored).
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use burn::tensor::{Int, Tensor};
    /// use mamba_blocks::{MambaConfig, MambaModel};
    ///
    /// let dev = Default::default();
    /// let dir = tempfile::tempdir()?;
    /// let config = MambaConfig::new(32, 2, 100); // d_model, layers, vocabulary
    /// let written = MambaModel::<NdArray>::new(&config, &dev);
    /// written.save_pretrained(&config, dir.path())?;
    ///
    /// let (model, loaded) = MambaModel::<NdArray>::load_dir(dir.path(), &dev)?;
    /// assert_eq!(loaded.num_hidden_layers, 2);
    /// let ids = Tensor::<NdArray, 2, Int>::from_ints([[1, 2, 3]], &dev);
    /// let hidden = model.forward(ids.clone(), None)?;
    /// assert_eq!(hidden.dims(), [1, 3, 32]);
    /// // the same weights give the same hidden states
    /// let before = written.forward(ids, None)?;
    /// assert!((hidden - before).abs().max().into_scalar() < 1e-6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_dir(dir: &Path, device: &B::Device) -> Result<(Self, MambaConfig), MambaError> {
        load_from_dir(dir, |c| Self::new(c, device), false)
    }

    /// Loads the weights of a safetensors file into this backbone.
    pub fn load_weights(self, file: &Path) -> Result<Self, MambaError> {
        load_file(self, file, false)
    }

    /// Writes the backbone as `config.json` + `model.safetensors` with HF backbone names
    /// (`embeddings.weight`, `layers.{i}...`, `norm_f.weight`).
    pub fn save_pretrained(&self, config: &MambaConfig, dir: &Path) -> Result<(), MambaError> {
        save_dir(self, config, dir)
    }
}

fn save_dir<B: Backend, M: Module<B>>(
    module: &M,
    config: &MambaConfig,
    dir: &Path,
) -> Result<(), MambaError> {
    let meta = [("format".to_string(), "pt".to_string())];
    model_io::save_pretrained(module, &config.to_hf_json(), dir, &save_remap(), &meta)?;
    Ok(())
}
