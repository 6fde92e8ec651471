//! The model-directory readers on hostile files: `config.json` for Mamba, BERT and GPT-NeoX,
//! the `rankmamba.json` card and the safetensors header, each fed JSON built from the real
//! keys with hostile values (zero, negative, huge, fractional, wrong types, nesting) and
//! arbitrary bytes. A reader returns a value or an error that names the file, never panics.
//! CI runs proptest's default number of cases;
//! `PROPTEST_CASES=1000000 cargo test -p rank-study --test hostile_files --release` is the long
//! run.

use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "model_type",
    "hidden_size",
    "state_size",
    "num_hidden_layers",
    "vocab_size",
    "expand",
    "conv_kernel",
    "time_step_rank",
    "intermediate_size",
    "num_attention_heads",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "layer_norm_epsilon",
    "hidden_act",
    "rotary_pct",
    "rotary_emb_base",
    "rope_parameters",
    "use_parallel_residual",
    "pad_token_id",
    "position_embedding_type",
    "d_model",
    "n_layer",
    "ssm_cfg",
    "pad_vocab_size_multiple",
    "residual_in_fp32",
    "arch",
    "pooling",
    "dropout",
    "max_length",
    "template",
    "style",
    "eos_id",
    "padding",
    "source",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(2),
            Just(64),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1 << 40)
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(1u64 << 63)].prop_map(Value::from),
        prop_oneof![
            Just(0.5f64),
            Just(-0.0),
            Just(1e308),
            Just(2.5),
            Just(1e-300)
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just("mamba"),
            Just("bert"),
            Just("gpt_neox"),
            Just("auto"),
            Just("gelu"),
            Just("last-token"),
            Just("decoder"),
            Just(""),
            Just("{doc}{query}")
        ]
        .prop_map(|s| Value::from(s.to_string())),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = scalar();
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Configs that start from a valid one and get a few hostile values.
fn mutated(base: &'static str) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), scalar()), 0..6).prop_map(move |kv| {
        let mut v: Value = serde_json::from_str(base).unwrap();
        for (k, x) in kv {
            v[k] = x;
        }
        v
    })
}

const MAMBA: &str = r#"{"model_type":"mamba","hidden_size":16,"state_size":4,"num_hidden_layers":2,"vocab_size":64,"expand":2,"conv_kernel":4,"time_step_rank":"auto"}"#;
const BERT: &str = r#"{"model_type":"bert","hidden_size":16,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":32,"vocab_size":64,"max_position_embeddings":32,"type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#;
const NEOX: &str = r#"{"model_type":"gpt_neox","hidden_size":16,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":32,"vocab_size":64,"max_position_embeddings":32,"rotary_pct":0.25,"rotary_emb_base":10000,"layer_norm_eps":1e-5,"hidden_act":"gelu","use_parallel_residual":true}"#;

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json().prop_map(|v| v.to_string().into_bytes()),
        mutated(MAMBA).prop_map(|v| v.to_string().into_bytes()),
        mutated(BERT).prop_map(|v| v.to_string().into_bytes()),
        mutated(NEOX).prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// A safetensors file: an 8-byte little-endian header length, a JSON header, data.
fn safetensors() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            json().prop_map(|v| v.to_string()),
            Just(r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#.to_string()),
            Just(
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#
                    .to_string()
            ),
            Just(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[16,0]}}"#.to_string()),
        ],
        prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(header, len, data)| {
            let len = len.unwrap_or(header.len() as u64);
            let mut out = len.to_le_bytes().to_vec();
            out.extend(header.as_bytes());
            out.extend(data);
            out
        })
}

fn named<T, E: std::fmt::Display>(r: Result<T, E>, file: &str) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        let msg = e.to_string();
        prop_assert!(msg.contains(file), "the error does not name {file}: {msg}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn configs_and_cards_return_or_name_the_file(content in input()) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, &content).unwrap();
        named(mamba_blocks::MambaConfig::from_file(&config), "config.json")?;
        named(transformer_baselines::BertConfig::from_file(&config), "config.json")?;
        named(transformer_baselines::GptNeoXConfig::from_file(&config), "config.json")?;
        std::fs::write(dir.path().join("rankmamba.json"), &content).unwrap();
        named(rank_study::models::ModelCard::read(dir.path()), "rankmamba.json")?;
    }

    #[test]
    fn safetensors_headers_return_or_name_the_file(content in safetensors()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &content).unwrap();
        named(model_io::tensor_names(&path), "model.safetensors")?;
    }
}
