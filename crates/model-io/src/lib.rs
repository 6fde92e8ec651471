//! `model-io`: checkpoint I/O shared by the RankMamba model crates.
//!
//! - [`resolve_model`]: a local directory, or (feature `hub`) a Hugging Face hub id fetched
//!   through `hf-hub` (cache dir, offline mode, custom endpoint for mirrors and loopback tests).
//! - [`read_json`]: a `config.json` read into a serde type; errors name the file, line and column.
//! - [`load_safetensors`] / [`save_safetensors`]: a Burn module from/to safetensors with the
//!   PyTorch (HF) tensor names and layouts, through `burn-store`. Linear weights are transposed,
//!   LayerNorm `weight`/`bias` map to `gamma`/`beta`, half-precision tensors are converted to the
//!   module's dtype, and every missing or mis-shaped tensor is reported by name. Saving is atomic
//!   (a temporary file in the same directory, then a rename).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::DType;
use burn::tensor::backend::Backend;
use burn_store::{
    ApplyError, BurnToPyTorchAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore, TensorSnapshot,
};
use serde::de::DeserializeOwned;

/// Errors of checkpoint I/O. Every variant names the file or tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: {} tensor(s) missing: {}", .names.len(), .names.join(", "))]
    MissingTensors { path: PathBuf, names: Vec<String> },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: unexpected tensor(s) not used by the model: {}", .names.join(", "))]
    UnusedTensors { path: PathBuf, names: Vec<String> },
    #[error("model `{spec}`: {message}")]
    Hub { spec: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where [`resolve_model`] looks for hub models.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Cache directory (default: `HF_HOME`/hub or `~/.cache/huggingface/hub`, as `hf-hub`).
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache; never touch the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Hub endpoint (default `https://huggingface.co`, or `HF_ENDPOINT`); a mirror or a loopback
    /// server in tests.
    pub endpoint: Option<String>,
    /// Revision (branch, tag or commit); default `main`.
    pub revision: Option<String>,
}

/// Turns `spec` (a local directory, or a hub id such as `state-spaces/mamba-130m-hf`) into a
/// local directory holding `files`. A local directory must contain them all; a hub id is fetched
/// file by file into the `hf-hub` cache (or read from it when offline).
pub fn resolve_model(
    spec: &str,
    files: &[&str],
    options: &HubOptions,
) -> Result<PathBuf, ModelIoError> {
    let local = Path::new(spec);
    if local.is_dir() {
        for f in files {
            let p = local.join(f);
            if !p.is_file() {
                return Err(ModelIoError::Io {
                    path: p,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
                });
            }
        }
        return Ok(local.to_path_buf());
    }
    if spec.split('/').count() != 2 || spec.starts_with('.') || spec.contains('\\') {
        return Err(ModelIoError::Hub {
            spec: spec.into(),
            message: "neither an existing directory nor a hub id of the form `owner/name`".into(),
        });
    }
    fetch_from_hub(spec, files, options)
}

/// Without the `hub` feature a Hub id is an error that says how to enable it.
#[cfg(not(feature = "hub"))]
fn fetch_from_hub(
    spec: &str,
    _files: &[&str],
    _options: &HubOptions,
) -> Result<PathBuf, ModelIoError> {
    Err(ModelIoError::Hub {
        spec: spec.into(),
        message: "not a local directory, and Hub ids need the `hub` feature of model-io (this \
                  build was made without it)"
            .into(),
    })
}

/// A Hub id fetched file by file through `hf-hub` (or read from its cache when offline).
#[cfg(feature = "hub")]
fn fetch_from_hub(
    spec: &str,
    files: &[&str],
    options: &HubOptions,
) -> Result<PathBuf, ModelIoError> {
    let hub_err = |message: String| ModelIoError::Hub {
        spec: spec.into(),
        message,
    };
    let revision = options.revision.clone().unwrap_or_else(|| "main".into());
    let repo = hf_hub::Repo::with_revision(spec.into(), hf_hub::RepoType::Model, revision);
    let cache = match &options.cache_dir {
        Some(dir) => hf_hub::Cache::new(dir.clone()),
        None => hf_hub::Cache::from_env(),
    };
    let offline = options.offline
        || std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let mut paths = Vec::with_capacity(files.len());
    if offline {
        let cached = cache.repo(repo);
        for f in files {
            let p = cached.get(f).ok_or_else(|| {
                hub_err(format!(
                    "`{f}` is not in the cache {} (offline mode)",
                    cache.path().display()
                ))
            })?;
            paths.push(p);
        }
    } else {
        let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache).with_progress(false);
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("HF_ENDPOINT").ok());
        if let Some(e) = endpoint {
            builder = builder.with_endpoint(e);
        }
        let api = builder.build().map_err(|e| hub_err(e.to_string()))?;
        let api_repo = api.repo(repo);
        for f in files {
            let p = api_repo
                .get(f)
                .map_err(|e| hub_err(format!("fetching `{f}`: {e}")))?;
            paths.push(p);
        }
    }
    match paths.first().and_then(|p| p.parent()) {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Err(hub_err("no files requested".into())),
    }
}

/// Reads a JSON file into `T`; a syntax or schema error names the file, line and column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelIoError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelIoError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelIoError::Json {
        path: path.into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// How checkpoint names map onto the module's parameter paths.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Regex rewrites applied to the file's names before matching (`(from, to)`, in order).
    pub remap: Vec<(String, String)>,
    /// Float dtype the loaded tensors get (default F32). Half-precision files are converted.
    pub dtype: Option<DType>,
    /// Module paths that may be absent from the file (e.g. a tied LM head, an optional pooler).
    pub optional: Vec<String>,
    /// File tensors that may be left unused (e.g. `lm_head.weight` when loading a backbone).
    pub ignore_unused: Vec<String>,
    /// Fail when the file holds tensors the module does not use (default: report nothing).
    pub strict_unused: bool,
}

/// Converts every float tensor to one dtype on the way in.
#[derive(Clone)]
struct CastAdapter(DType);

impl ModuleAdapter for CastAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let from = snapshot.dtype;
        let is_float = matches!(
            from,
            DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::Flex32
        );
        if !is_float || from == self.0 {
            return snapshot.clone();
        }
        let to = self.0;
        let data_fn = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data_fn()?.convert_dtype(to))),
            to,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Loads `module`'s parameters from a safetensors file written with PyTorch names and layouts.
pub fn load_safetensors<B: Backend, M: Module<B>>(
    mut module: M,
    path: &Path,
    options: &LoadOptions,
) -> Result<M, ModelIoError> {
    if !path.is_file() {
        return Err(ModelIoError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let dtype = options.dtype.unwrap_or(DType::F32);
    let header = mapped_header(path, options)?;
    check_float_dtypes(&module, path, &header)?;
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter.chain(CastAdapter(dtype)))
        .validate(false)
        .allow_partial(true);
    for (from, to) in &options.remap {
        regex_check(from)?;
        store = store.with_key_remapping(from, to.clone());
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelIoError::Safetensors {
            path: path.into(),
            message: e.to_string(),
        })?;
    if let Some(err) = result.errors.first() {
        return Err(match err {
            ApplyError::ShapeMismatch {
                path: name,
                expected,
                found,
            } => {
                // Report in the file's terms: its tensor name, and its layout (a Linear weight
                // is stored transposed, [out, in]).
                let (expected, found) = (expected.as_slice().to_vec(), found.as_slice().to_vec());
                match header.iter().find(|(_, m)| same_param(name, m)) {
                    Some((entry, _)) => {
                        let mut reversed = entry.shape.clone();
                        reversed.reverse();
                        let transposed = entry.shape != found && reversed == found;
                        let mut expected_file = expected;
                        if transposed {
                            expected_file.reverse();
                        }
                        ModelIoError::ShapeMismatch {
                            path: path.into(),
                            name: entry.name.clone(),
                            expected: expected_file,
                            found: entry.shape.clone(),
                        }
                    }
                    None => ModelIoError::ShapeMismatch {
                        path: path.into(),
                        name: name.clone(),
                        expected,
                        found,
                    },
                }
            }
            ApplyError::DTypeMismatch { path: name, .. }
            | ApplyError::AdapterError { path: name, .. }
            | ApplyError::LoadError { path: name, .. } => ModelIoError::Tensor {
                path: path.into(),
                name: name.clone(),
                message: err.to_string(),
            },
        });
    }
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !options.optional.iter().any(|o| o == name))
        .collect();
    if !missing.is_empty() {
        return Err(ModelIoError::MissingTensors {
            path: path.into(),
            names: missing,
        });
    }
    if options.strict_unused {
        let unused: Vec<String> = result
            .unused
            .iter()
            .filter(|n| !options.ignore_unused.iter().any(|o| o == *n))
            .cloned()
            .collect();
        if !unused.is_empty() {
            return Err(ModelIoError::UnusedTensors {
                path: path.into(),
                names: unused,
            });
        }
    }
    Ok(module)
}

/// Every tensor of the file with the module path its name maps to (after `options.remap`).
fn mapped_header(
    path: &Path,
    options: &LoadOptions,
) -> Result<Vec<(HeaderEntry, String)>, ModelIoError> {
    let mut remapper = burn_store::KeyRemapper::new();
    for (from, to) in &options.remap {
        regex_check(from)?;
        remapper = remapper
            .add_pattern(from, to.clone())
            .map_err(|e| ModelIoError::Invalid(e.to_string()))?;
    }
    let pairs = remapper.to_regex_pairs();
    Ok(read_header(path)?
        .into_iter()
        .map(|entry| {
            let mut name = entry.name.clone();
            for (re, rep) in &pairs {
                if re.is_match(&name) {
                    name = re.replace_all(&name, rep.as_str()).into_owned();
                }
            }
            (entry, name)
        })
        .collect())
}

/// Whether a module path is the one a (mapped) file name loads into, LayerNorm's
/// `weight`/`bias` -> `gamma`/`beta` included.
fn same_param(module_path: &str, mapped: &str) -> bool {
    module_path == mapped
        || mapped
            .strip_suffix(".weight")
            .is_some_and(|p| module_path == format!("{p}.gamma"))
        || mapped
            .strip_suffix(".bias")
            .is_some_and(|p| module_path == format!("{p}.beta"))
}

/// Tensors the module will take as float parameters must be stored as floats: Burn would build
/// a float tensor over integer bytes otherwise.
fn check_float_dtypes<B: Backend, M: Module<B>>(
    module: &M,
    path: &Path,
    header: &[(HeaderEntry, String)],
) -> Result<(), ModelIoError> {
    let params = parameter_names(module);
    for (entry, mapped) in header {
        if matches!(entry.dtype.as_str(), "F64" | "F32" | "F16" | "BF16") {
            continue;
        }
        if params.iter().any(|p| same_param(p, mapped)) {
            return Err(ModelIoError::Tensor {
                path: path.into(),
                name: entry.name.clone(),
                message: format!(
                    "stored as {}, expected a float type (F32, F16, BF16 or F64)",
                    entry.dtype
                ),
            });
        }
    }
    Ok(())
}

fn regex_check(pattern: &str) -> Result<(), ModelIoError> {
    // burn-store panics on an invalid pattern; check first so bad input is an error.
    burn_store::KeyRemapper::new()
        .add_pattern(pattern, "")
        .map(|_| ())
        .map_err(|e| ModelIoError::Invalid(format!("invalid remap pattern `{pattern}`: {e}")))
}

/// Names (as written to the file) of the module's parameters, sorted; useful for diagnostics.
pub fn parameter_names<B: Backend, M: Module<B>>(module: &M) -> BTreeSet<String> {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|s| s.full_path())
        .collect()
}

/// Saves `module` to a safetensors file with PyTorch names and layouts (Linear weights
/// transposed back, LayerNorm `gamma`/`beta` written as `weight`/`bias`), so that
/// [`load_safetensors`] and `transformers` read it back. `remap` rewrites Burn paths to file
/// names. The file is written to a temporary sibling and renamed: a crash leaves either the old
/// file or the new one, never a torn file.
pub fn save_safetensors<B: Backend, M: Module<B>>(
    module: &M,
    path: &Path,
    remap: &[(String, String)],
    metadata: &[(String, String)],
) -> Result<(), ModelIoError> {
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    for (from, to) in remap {
        regex_check(from)?;
        store = store.with_key_remapping(from, to.clone());
    }
    for (k, v) in metadata {
        store = store.metadata(k.clone(), v.clone());
    }
    module
        .save_into(&mut store)
        .map_err(|e| ModelIoError::Safetensors {
            path: path.into(),
            message: e.to_string(),
        })?;
    let bytes = store.get_bytes().map_err(|e| ModelIoError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })?;
    write_atomic(path, &canonical_header(bytes))
}

/// Writes a HF checkpoint directory: `config.json` (`config`, pretty-printed) and
/// `model.safetensors` ([`save_safetensors`] with `remap` and `metadata`), each atomically;
/// `dir` is created when missing. `transformers` and the model crates' `load_dir` read it.
pub fn save_pretrained<B: Backend, M: Module<B>>(
    module: &M,
    config: &serde_json::Value,
    dir: &Path,
    remap: &[(String, String)],
    metadata: &[(String, String)],
) -> Result<(), ModelIoError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelIoError::Io {
        path: dir.into(),
        source,
    })?;
    save_safetensors(module, &dir.join("model.safetensors"), remap, metadata)?;
    let text = serde_json::to_string_pretty(config).map_err(|e| ModelIoError::Io {
        path: dir.join("config.json"),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&dir.join("config.json"), text.as_bytes())
}

/// The same safetensors bytes with the JSON header's keys in sorted order (the metadata
/// comes out of a hash map, so two saves of the same weights would differ in byte order):
/// the same weights always give the same file. Bytes that do not parse are returned as they
/// are.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    // serde_json's map is a BTreeMap (no `preserve_order`): keys serialise sorted
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let Ok(mut sorted) = serde_json::to_vec(&value) else {
        return bytes;
    };
    if sorted.len() > len {
        return bytes;
    }
    sorted.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&sorted);
    bytes
}

/// Writes `bytes` to `path` atomically ([`safe_write::write_bytes`]: an exclusive temporary
/// sibling file, synced, then renamed over `path`; a symlink, folder or device is refused). A
/// crash leaves either the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelIoError> {
    safe_write::write_bytes(path, bytes).map_err(|e| ModelIoError::Io {
        path: path.into(),
        source: e.into(),
    })
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    /// Tensor name.
    pub name: String,
    /// Safetensors dtype string (`F32`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
}

/// The tensors of a safetensors file (name, dtype, shape), sorted by name, read from its
/// header only; a malformed or truncated header is an error naming the file.
pub fn read_header(path: &Path) -> Result<Vec<HeaderEntry>, ModelIoError> {
    use std::io::Read as _;
    let bad = |message: String| ModelIoError::Safetensors {
        path: path.into(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(|source| ModelIoError::Io {
        path: path.into(),
        source,
    })?;
    let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad(format!("cannot read the header length: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 || n + 8 > file_len {
        return Err(bad(format!(
            "header length {n} does not fit in a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad(format!("truncated header: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?
            .to_string();
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|u| u as usize)).collect())
            .ok_or_else(|| bad(format!("tensor `{name}` has no valid shape")))?;
        out.push(HeaderEntry {
            name: name.clone(),
            dtype,
            shape,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Names of the tensors in a safetensors file, read from its header only.
pub fn tensor_names(path: &Path) -> Result<Vec<String>, ModelIoError> {
    Ok(read_header(path)?.into_iter().map(|e| e.name).collect())
}

/// Lists a safetensors file's tensors as `name: dtype shape`, one per line (for error messages
/// and the CLI's `inspect`).
pub fn describe_safetensors(path: &Path) -> Result<String, ModelIoError> {
    let bytes = std::fs::read(path).map_err(|source| ModelIoError::Io {
        path: path.into(),
        source,
    })?;
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ModelIoError::Safetensors {
            path: path.into(),
            message: e.to_string(),
        })?;
    let mut names = st.names();
    names.sort();
    let mut out = String::new();
    for n in names {
        if let Ok(t) = st.tensor(n) {
            let _ = writeln!(out, "{n}: {:?} {:?}", t.dtype(), t.shape());
        }
    }
    Ok(out)
}

/// Checks a token batch before it reaches a model: a non-empty `[batch, seq]` shape, every id in
/// `0..vocab`, and a mask (if any) of the same shape holding only 0 and 1. Costs one device
/// read (the minima and maxima together). Returns whether the mask marks any padding (`false`
/// without a mask or with an all-ones mask, which a model may then skip), or a message naming
/// what is wrong.
pub fn check_token_batch<B: Backend>(
    input_ids: &burn::tensor::Tensor<B, 2, burn::tensor::Int>,
    attention_mask: Option<&burn::tensor::Tensor<B, 2, burn::tensor::Int>>,
    vocab: usize,
) -> Result<bool, String> {
    check_token_batch_with_types(input_ids, None, attention_mask, vocab)
}

/// [`check_token_batch`] with segment ids: `token_type_ids` (if any) as `(ids, type_vocab)`,
/// of `input_ids`' shape, every id in `0..type_vocab`; still one device read.
pub fn check_token_batch_with_types<B: Backend>(
    input_ids: &burn::tensor::Tensor<B, 2, burn::tensor::Int>,
    token_type_ids: Option<(&burn::tensor::Tensor<B, 2, burn::tensor::Int>, usize)>,
    attention_mask: Option<&burn::tensor::Tensor<B, 2, burn::tensor::Int>>,
    vocab: usize,
) -> Result<bool, String> {
    use burn::tensor::Tensor;
    let dims = input_ids.dims();
    if dims.contains(&0) {
        return Err(format!("input_ids has an empty shape {dims:?}"));
    }
    let checks = [
        ("token_type_ids", token_type_ids),
        ("attention_mask", attention_mask.map(|m| (m, 2))),
    ];
    for (what, t) in &checks {
        if let Some((t, _)) = t
            && t.dims() != dims
        {
            return Err(format!(
                "{what} has shape {:?}, input_ids has shape {dims:?}",
                t.dims()
            ));
        }
    }
    let mut parts = vec![input_ids.clone().min(), input_ids.clone().max()];
    for (_, t) in &checks {
        if let Some((t, _)) = t {
            parts.extend([(*t).clone().min(), (*t).clone().max()]);
        }
    }
    let v: Vec<i64> = Tensor::cat(parts, 0)
        .into_data()
        .convert::<i64>()
        .to_vec()
        .map_err(|e| format!("reading the token batch: {e:?}"))?;
    let (lo, hi) = (v[0], v[1]);
    if lo < 0 || hi as u64 >= vocab as u64 {
        return Err(format!(
            "input_ids must lie in 0..{vocab}, found values in {lo}..={hi}"
        ));
    }
    let mut at = 2;
    let mut padded = false;
    for (what, t) in &checks {
        if let Some((_, limit)) = t {
            let (lo, hi) = (v[at], v[at + 1]);
            at += 2;
            if lo < 0 || hi as u64 >= *limit as u64 {
                return Err(if *what == "attention_mask" {
                    format!("attention_mask must hold only 0 and 1, found values in {lo}..={hi}")
                } else {
                    format!("{what} must lie in 0..{limit}, found values in {lo}..={hi}")
                });
            }
            if *what == "attention_mask" {
                padded = lo == 0;
            }
        }
    }
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::{canonical_header, check_token_batch};

    #[test]
    fn safetensors_header_keys_are_sorted_and_length_kept() {
        let header = br#"{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"z":"1","a":"2"}}  "#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&1f32.to_le_bytes());
        let out = canonical_header(bytes.clone());
        assert_eq!(out.len(), bytes.len());
        let text = std::str::from_utf8(&out[8..8 + header.len()]).unwrap();
        assert!(
            text.starts_with(r#"{"__metadata__":{"a":"2","z":"1"},"b":{"data_offsets":[0,4],"dtype":"F32","shape":[1]}}"#),
            "{text}"
        );
        assert_eq!(out[8 + header.len()..], 1f32.to_le_bytes());
        // the `safetensors` crate reads the result
        let st = safetensors::SafeTensors::deserialize(&out).unwrap();
        assert_eq!(st.tensor("b").unwrap().data(), 1f32.to_le_bytes());
        // garbage passes through
        assert_eq!(canonical_header(vec![1, 2, 3]), vec![1, 2, 3]);
    }
    use burn::backend::NdArray;
    use burn::tensor::{Int, Tensor};

    fn t(rows: [[i64; 3]; 2]) -> Tensor<NdArray, 2, Int> {
        Tensor::from_ints(rows, &Default::default())
    }

    #[test]
    fn token_batch_checks_and_reports_padding() {
        let ids = t([[5, 6, 7], [1, 2, 0]]);
        assert_eq!(check_token_batch(&ids, None, 8), Ok(false));
        assert_eq!(
            check_token_batch(&ids, Some(&t([[1, 1, 1], [1, 1, 1]])), 8),
            Ok(false)
        );
        assert_eq!(
            check_token_batch(&ids, Some(&t([[1, 1, 1], [1, 1, 0]])), 8),
            Ok(true)
        );
        let e = check_token_batch(&ids, None, 7).unwrap_err();
        assert!(e.contains("0..7") && e.contains("0..=7"), "{e}");
        let e = check_token_batch(&ids, Some(&t([[1, 2, 1], [1, 1, 0]])), 8).unwrap_err();
        assert!(e.contains("only 0 and 1"), "{e}");
        let short: Tensor<NdArray, 2, Int> = Tensor::from_ints([[1, 1]], &Default::default());
        let e = check_token_batch(&ids, Some(&short), 8).unwrap_err();
        assert!(e.contains("shape [1, 2]"), "{e}");
    }
}
