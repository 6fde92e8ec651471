//! Bad input gives clear errors, never panics; configs and presets match published sizes.

mod common;

use std::path::PathBuf;

use burn::module::Module;
use common::{B, fixtures, ids_tensor};
use model_io::{HubOptions, ModelIoError};
use transformer_baselines::{BertConfig, BertModel, GptNeoXConfig, GptNeoXModel, TransformerError};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tb-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny_bert() -> BertModel<B> {
    let dir = fixtures().join("tiny_bert");
    BertModel::from_pretrained(
        dir.to_str().unwrap(),
        &HubOptions::default(),
        &Default::default(),
    )
    .unwrap()
    .0
}

#[test]
fn config_syntax_error_names_file_line_and_column() {
    let dir = temp_dir("badjson");
    let path = dir.join("config.json");
    std::fs::write(&path, "{\n  \"vocab_size\": 10,\n  \"hidden_size\": ,\n}").unwrap();
    let err = BertConfig::from_file(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            TransformerError::ModelIo(ModelIoError::Json { line: 3, .. })
        ),
        "{msg}"
    );
    assert!(msg.contains("config.json:3:"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_errors_say_what_is_wrong() {
    let dir = temp_dir("badcfg");
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny_bert/config.json")).unwrap(),
    )
    .unwrap();
    cfg["num_attention_heads"] = 5.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let msg = BertConfig::from_file(&path).unwrap_err().to_string();
    assert!(
        msg.contains("not a multiple of num_attention_heads 5"),
        "{msg}"
    );
    cfg["num_attention_heads"] = 4.into();
    cfg["position_embedding_type"] = "relative_key".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let msg = BertConfig::from_file(&path).unwrap_err().to_string();
    assert!(
        msg.contains("relative_key") && msg.contains("config.json"),
        "{msg}"
    );
    cfg["position_embedding_type"] = "absolute".into();
    cfg["hidden_act"] = "mish".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let msg = BertConfig::from_file(&path).unwrap_err().to_string();
    assert!(msg.contains("mish"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn missing_tensors_are_named() {
    // A config with one layer more than the checkpoint holds.
    let mut config = BertConfig::from_file(&fixtures().join("tiny_bert/config.json")).unwrap();
    config.num_hidden_layers = 3;
    let err = BertModel::<B>::from_safetensors(
        &config,
        &fixtures().join("tiny_bert/model.safetensors"),
        &Default::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("encoder.layer.2.attention.self_.query.weight"),
        "{msg}"
    );
    // A checkpoint whose shapes do not fit.
    config.num_hidden_layers = 2;
    config.intermediate_size = 50;
    let msg = BertModel::<B>::from_safetensors(
        &config,
        &fixtures().join("tiny_bert/model.safetensors"),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("intermediate.dense"), "{msg}");
}

#[test]
fn missing_model_is_an_error() {
    let err = BertModel::<B>::from_pretrained(
        "/nonexistent/dir/model",
        &HubOptions::default(),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dir/model"), "{err}");
}

fn err<T>(r: Result<T, TransformerError>) -> String {
    match r {
        Err(TransformerError::Input(m)) => m,
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("accepted bad input"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = tiny_bert();
    let ids = ids_tensor(&[vec![5, 6, 7], vec![8, 9, 10]]);
    let m = err(model.forward(ids_tensor(&[vec![5, 99]]), None, None));
    assert!(m.contains("input_ids must lie in 0..99"), "{m}");
    let m = err(model.forward(ids_tensor(&[vec![5, -1]]), None, None));
    assert!(m.contains("input_ids"), "{m}");
    let m = err(model.forward(
        ids.clone(),
        Some(ids_tensor(&[vec![0, 1, 2], vec![0, 0, 0]])),
        None,
    ));
    assert!(m.contains("token_type_ids must lie in 0..2"), "{m}");
    let m = err(model.forward(ids.clone(), None, Some(ids_tensor(&[vec![1, 1]]))));
    assert!(m.contains("attention_mask has shape [1, 2]"), "{m}");
    let m = err(model.forward(
        ids.clone(),
        None,
        Some(ids_tensor(&[vec![1, 1, 2], vec![1, 1, 1]])),
    ));
    assert!(m.contains("attention_mask"), "{m}");
    let m = err(model.forward(ids_tensor(&[vec![1; 65]]), None, None));
    assert!(m.contains("exceeds the model's maximum 64"), "{m}");

    let dir = fixtures().join("tiny_gpt_neox");
    let neox = GptNeoXModel::<B>::from_pretrained(
        dir.to_str().unwrap(),
        &HubOptions::default(),
        &Default::default(),
    )
    .unwrap()
    .0;
    let m = err(neox.forward(ids_tensor(&[vec![1, 101]]), None));
    assert!(m.contains("input_ids must lie in 0..101"), "{m}");
    let m = err(neox.forward(ids_tensor(&[vec![1; 65]]), None));
    assert!(m.contains("max_position_embeddings 64"), "{m}");
}

#[test]
fn gpt_neox_config_reads_both_generations_of_config_json() {
    // transformers 5 (`rope_parameters`) as written by the fixture script...
    let new = GptNeoXConfig::from_file(&fixtures().join("tiny_gpt_neox/config.json")).unwrap();
    assert_eq!((new.rotary_pct, new.rotary_emb_base), (0.25, 10000.0));
    // ...and the hub's Pythia files (`rotary_pct`, `rotary_emb_base`; EleutherAI/pythia-160m).
    let dir = temp_dir("pythia");
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
            "hidden_act": "gelu", "hidden_size": 768, "initializer_range": 0.02,
            "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
            "model_type": "gpt_neox", "num_attention_heads": 12, "num_hidden_layers": 12,
            "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": false,
            "torch_dtype": "float16", "transformers_version": "4.24.0", "use_cache": true,
            "use_parallel_residual": true, "vocab_size": 50304}"#,
    )
    .unwrap();
    assert_eq!(
        GptNeoXConfig::from_file(&path).unwrap(),
        GptNeoXConfig::pythia_160m()
    );
    std::fs::write(
        &path,
        r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 8,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000}}"#,
    )
    .unwrap();
    let msg = GptNeoXConfig::from_file(&path).unwrap_err().to_string();
    assert!(msg.contains("yarn"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn presets_have_the_published_parameter_counts() {
    // Pythia paper (Biderman et al. 2023), table 1: total minus the untied `embed_out`
    // (vocab 50304 x hidden); bert-base-uncased BertModel with pooler: 109,482,240.
    let dev = Default::default();
    let pythia = [
        (GptNeoXConfig::pythia_70m(), 70_426_624 - 50_304 * 512),
        (GptNeoXConfig::pythia_160m(), 162_322_944 - 50_304 * 768),
    ];
    for (config, expected) in pythia {
        let n = config.init::<B>(&dev).unwrap().num_params();
        assert_eq!(n, expected, "{config:?}");
    }
    let bert = BertConfig::bert_base()
        .init_with_pooler::<B>(&dev)
        .unwrap()
        .num_params();
    assert_eq!(bert, 109_482_240);
    // pythia-410m: checked on its config only (init is slow): 24 layers of 12 h^2 + 13 h params.
    let c = GptNeoXConfig::pythia_410m();
    let h = c.hidden_size;
    let per_layer = 12 * h * h + 13 * h;
    assert_eq!(
        c.vocab_size * h + c.num_hidden_layers * per_layer + 2 * h,
        405_334_016 - 50_304 * 1024
    );
}

#[test]
fn random_bert_is_initialised_as_transformers_does() {
    // transformers' BertPreTrainedModel._init_weights with initializer_range 0.02: Linear and
    // Embedding weights ~ N(0, 0.02), Linear biases 0, the padding row 0.
    let dev = Default::default();
    let config = BertConfig {
        num_hidden_layers: 1,
        ..BertConfig::bert_base()
    };
    let m = config.init::<B>(&dev).unwrap();
    let stats = |v: Vec<f32>| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    };
    let words: Vec<f32> = m
        .embeddings
        .word_embeddings
        .weight
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    let (mean, sd) = stats(words.clone());
    assert!(
        mean.abs() < 1e-3 && (0.019..0.021).contains(&sd),
        "{mean} {sd}"
    );
    let h = config.hidden_size;
    assert!(
        words[..h].iter().all(|&x| x == 0.0),
        "padding row (id 0) must be zero"
    );
    let q = &m.encoder.layer[0].attention.self_.query;
    let (mean, sd) = stats(q.weight.val().into_data().to_vec().unwrap());
    assert!(
        mean.abs() < 1e-3 && (0.019..0.021).contains(&sd),
        "{mean} {sd}"
    );
    let bias: Vec<f32> = q.bias.as_ref().unwrap().val().into_data().to_vec().unwrap();
    assert!(bias.iter().all(|&x| x == 0.0));
}
