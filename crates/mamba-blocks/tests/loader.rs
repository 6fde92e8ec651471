//! Checkpoint loader errors (each names what is wrong), hub loading through a loopback server,
//! tokenizer parity with HF `tokenizers`, and the upstream initialisation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor};
use mamba_blocks::{HubOptions, MambaConfig, MambaError, MambaForCausalLM, MambaTokenizer};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

type B = NdArray;

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// A copy of the tiny checkpoint with its tensors edited by `edit`.
fn edited(
    edit: impl Fn(&str, Dtype, Vec<usize>, &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        if let Some((dt, shape, data)) = edit(&name, t.dtype(), t.shape().to_vec(), t.data()) {
            kept.push((name, dt, shape, data));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = kept
        .iter()
        .map(|(n, dt, s, d)| (n.clone(), TensorView::new(*dt, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &tmp.path().join("model.safetensors")).unwrap();
    tmp
}

fn load_err(dir: &Path) -> String {
    match MambaForCausalLM::<B>::load_dir(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = edited(|n, dt, s, d| {
        (n != "backbone.layers.1.mixer.x_proj.weight").then(|| (dt, s, d.to_vec()))
    });
    let e = load_err(dir.path());
    eprintln!("{e}");
    assert!(
        e.contains("missing") && e.contains("layers.1.mixer.x_proj.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_tensor_and_shapes() {
    let dir = edited(|n, dt, s, d| {
        if n == "backbone.layers.0.mixer.A_log" {
            // [128, 16] stored as [16, 128]
            Some((dt, vec![s[1], s[0]], d.to_vec()))
        } else {
            Some((dt, s, d.to_vec()))
        }
    });
    let e = load_err(dir.path());
    eprintln!("{e}");
    assert!(e.contains("`backbone.layers.0.mixer.A_log`"), "{e}");
    assert!(e.contains("[128, 16]") && e.contains("[16, 128]"), "{e}");
}

#[test]
fn wrong_dtype_is_an_error() {
    // Integer data where a float parameter is expected.
    let dir = edited(|n, dt, s, d| {
        if n == "backbone.norm_f.weight" {
            Some((Dtype::I32, s, d.to_vec()))
        } else {
            Some((dt, s, d.to_vec()))
        }
    });
    let e = load_err(dir.path());
    eprintln!("{e}");
    assert!(e.contains("norm_f"), "{e}");
}

#[test]
fn truncated_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    std::fs::write(
        tmp.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let e = load_err(tmp.path());
    eprintln!("{e}");
    assert!(e.contains("model.safetensors"), "{e}");
    // and a file cut inside its header
    std::fs::write(tmp.path().join("model.safetensors"), &bytes[..20]).unwrap();
    let e = load_err(tmp.path());
    eprintln!("{e}");
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn bad_config_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        "{\n  \"hidden_size\": 64,\n  oops\n}\n",
    )
    .unwrap();
    let e = MambaConfig::from_file(&tmp.path().join("config.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json:3:"), "{e}");
    std::fs::write(
        tmp.path().join("config.json"),
        "{\"hidden_size\": 64, \"num_hidden_layers\": 2}",
    )
    .unwrap();
    let e = MambaConfig::from_file(&tmp.path().join("config.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json") && e.contains("vocab_size"), "{e}");
}

#[test]
fn absurd_sizes_are_errors_not_overflows() {
    // found by the hostile-input suite: `expand` x `hidden_size` overflowed (a panic in debug,
    // a wrapped, silently wrong size in release) before any size was checked
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    for (config, want) in [
        (
            r#"{"hidden_size":64,"num_hidden_layers":2,"vocab_size":100,"expand":9223372036854775807,"intermediate_size":128}"#,
            "`expand` 9223372036854775807 is above the limit",
        ),
        (
            r#"{"hidden_size":9223372036854775808,"num_hidden_layers":2,"vocab_size":100}"#,
            "`hidden_size` 9223372036854775808 is above the limit",
        ),
        (
            r#"{"hidden_size":16777216,"num_hidden_layers":65536,"vocab_size":100}"#,
            "above the limit of 2^40",
        ),
        (
            r#"{"hidden_size":64,"num_hidden_layers":2,"vocab_size":100,"eos_token_id":4294967296}"#,
            "`eos_token_id` 4294967296 is not a 32-bit token id",
        ),
    ] {
        std::fs::write(&path, config).unwrap();
        let e = MambaConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains(want),
            "{config}: {e}"
        );
    }
}

#[test]
fn missing_directory_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let spec = tmp.path().to_str().unwrap();
    let e =
        MambaForCausalLM::<B>::from_pretrained(spec, &HubOptions::default(), &Default::default())
            .err()
            .unwrap()
            .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn hub_id_through_a_loopback_server_then_offline_cache() {
    let mut files = HashMap::new();
    for f in ["config.json", "model.safetensors"] {
        files.insert(f.to_string(), std::fs::read(tiny_dir().join(f)).unwrap());
    }
    let server = test_support::LoopbackHub::start(files);
    let endpoint = server.url.clone();
    let cache = tempfile::tempdir().unwrap();
    let hub = HubOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        endpoint: Some(endpoint.clone()),
        ..HubOptions::default()
    };
    let dev = Default::default();
    let (model, config) =
        MambaForCausalLM::<B>::from_pretrained("state-spaces/tiny-test", &hub, &dev).unwrap();
    let (local, _) = MambaForCausalLM::<B>::load_dir(&tiny_dir(), &dev).unwrap();
    assert_eq!(config.hidden_size, 64);
    let ids = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5]], &dev);
    let a: Vec<f32> = model
        .forward(ids.clone(), None)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let b: Vec<f32> = local
        .forward(ids, None)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(a, b, "hub copy differs from the local files");
    // Stop the server; offline mode must now find everything in the cache.
    assert_eq!(server.stop(), 4, "two metadata + two file requests");
    let offline = HubOptions {
        offline: true,
        endpoint: None,
        ..hub.clone()
    };
    MambaForCausalLM::<B>::from_pretrained("state-spaces/tiny-test", &offline, &dev).unwrap();
    let e = MambaForCausalLM::<B>::from_pretrained("state-spaces/other", &offline, &dev)
        .err()
        .unwrap();
    assert!(
        matches!(e, MambaError::Io(_)) && e.to_string().contains("offline"),
        "{e}"
    );
}

#[test]
fn tokenizer_matches_hf_tokenizers() {
    let path = test_support::neox_tokenizer();
    let tok = MambaTokenizer::from_file(&path).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_ids.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(tok.eos_id() as u64, fixture["eos_id"].as_u64().unwrap());
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text);
    }
    assert!(MambaTokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).is_err());
}

#[test]
fn initialisation_follows_upstream() {
    let mut c = MambaConfig::new(32, 1, 50);
    c.state_size = 5;
    let m = MambaForCausalLM::<B>::new(&c, &Default::default());
    let mixer = &m.backbone.layers[0].mixer;
    let a: Vec<f32> = mixer.a_log.val().into_data().to_vec().unwrap();
    for row in a.chunks(5) {
        for (j, v) in row.iter().enumerate() {
            assert!((v - ((j + 1) as f32).ln()).abs() < 1e-6);
        }
    }
    let d: Vec<f32> = mixer.d.val().into_data().to_vec().unwrap();
    assert!(d.iter().all(|x| *x == 1.0));
    // softplus(dt bias) is the initial step size, within [dt_min, dt_max]
    let bias: Vec<f32> = mixer
        .dt_proj
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    for b in bias {
        let dt = (1.0 + (b as f64).exp()).ln();
        assert!((0.001 - 1e-6..=0.1 + 1e-6).contains(&dt), "{dt}");
    }
    assert!(m.lm_head.is_none(), "tied by default");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dev = Default::default();
    let (model, _) = MambaForCausalLM::<B>::load_dir(&tiny_dir(), &dev).unwrap();
    let err =
        |ids: Tensor<B, 2, Int>, mask: Option<Tensor<B, 2, Int>>| match model.forward(ids, mask) {
            Ok(_) => panic!("should fail"),
            Err(e) => e.to_string(),
        };
    let e = err(Tensor::from_ints([[1, 2, 512]], &dev), None);
    assert!(e.contains("0..512") && e.contains("512"), "{e}");
    let e = err(Tensor::from_ints([[1, -2, 3]], &dev), None);
    assert!(e.contains("input_ids"), "{e}");
    let e = err(
        Tensor::from_ints([[1, 2, 3]], &dev),
        Some(Tensor::from_ints([[1, 1]], &dev)),
    );
    assert!(e.contains("attention_mask has shape"), "{e}");
    let e = err(
        Tensor::from_ints([[1, 2, 3]], &dev),
        Some(Tensor::from_ints([[1, 2, 1]], &dev)),
    );
    assert!(e.contains("only 0 and 1"), "{e}");
}

#[test]
fn wrong_linear_shape_is_reported_in_the_file_layout() {
    // in_proj.weight is [2 * 128, 64] in the file ([out, in]); store [2 * 128, 32] instead.
    let dir = edited(|n, dt, s, d| {
        if n == "backbone.layers.1.mixer.in_proj.weight" {
            Some((dt, vec![s[0], s[1] / 2], d[..d.len() / 2].to_vec()))
        } else {
            Some((dt, s, d.to_vec()))
        }
    });
    let e = load_err(dir.path());
    assert!(
        e.contains(
            "`backbone.layers.1.mixer.in_proj.weight` has shape [256, 32], expected [256, 64]"
        ),
        "{e}"
    );
}

/// A config.json that disagrees with the weights: every field that shapes a tensor or counts
/// layers is an error naming a tensor (missing, mis-shaped or unused) or the config's own
/// inconsistency, never a panic or a silently half-loaded model.
#[test]
fn config_that_disagrees_with_the_weights_is_an_error() {
    for (field, value) in [
        ("state_size", serde_json::json!(8)),
        ("time_step_rank", serde_json::json!(2)),
        ("num_hidden_layers", serde_json::json!(3)),
        ("num_hidden_layers", serde_json::json!(1)),
        ("hidden_size", serde_json::json!(32)),
        ("vocab_size", serde_json::json!(256)),
        ("expand", serde_json::json!(1)),
        ("conv_kernel", serde_json::json!(2)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tiny_dir().join("config.json")).unwrap())
                .unwrap();
        c[field] = value.clone();
        std::fs::write(
            tmp.path().join("config.json"),
            serde_json::to_vec(&c).unwrap(),
        )
        .unwrap();
        std::fs::copy(
            tiny_dir().join("model.safetensors"),
            tmp.path().join("model.safetensors"),
        )
        .unwrap();
        let r = std::panic::catch_unwind(|| {
            MambaForCausalLM::<B>::load_dir(tmp.path(), &Default::default()).map(|_| ())
        });
        match r {
            Err(_) => panic!("{field} = {value}: panicked"),
            Ok(Ok(())) => panic!("{field} = {value}: loaded silently"),
            Ok(Err(e)) => {
                let e = e.to_string();
                // the weights' tensor, or the config's own inconsistency
                assert!(
                    (e.contains("model.safetensors") && e.contains("backbone."))
                        || e.contains("config.json"),
                    "{field} = {value}: {e}"
                );
            }
        }
    }
}
