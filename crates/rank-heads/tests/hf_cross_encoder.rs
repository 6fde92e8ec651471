//! HF sequence-classification checkpoints in and out, against `transformers`: tiny random
//! `BertForSequenceClassification` (one and two labels), `RobertaForSequenceClassification` and
//! `GPTNeoXForSequenceClassification` checkpoints with their tokenizers, and a real-size
//! cross-encoder made offline from all-MiniLM-L6-v2 and a seeded head; the logits are those
//! `transformers` gives (scripts/gen_hf_cross_encoder_fixtures.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::module::Param;
use burn::tensor::Tensor;
use rank_heads::{
    Activation, AutoCrossEncoder, Pooling, Pretrained, Reranker, ScoringSettings, TemplateStyle,
};
use serde_json::Value;

type B = NdArray;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn scores() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("scores.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn load(dir: &Path) -> Pretrained<B> {
    AutoCrossEncoder::<B>::from_pretrained(
        dir.to_str().unwrap(),
        &Default::default(),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn score(ce: &Pretrained<B>, pairs: &[(String, String)]) -> Vec<f32> {
    let reranker = Reranker::<B, _> {
        model: &ce.model,
        encoder: &ce.pair_encoder,
        batch_size: 4,
        device: Default::default(),
    };
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, d)| (q.as_str(), d.as_str()))
        .collect();
    reranker.score_pairs(&refs).unwrap()
}

fn assert_close(ours: &[f32], reference: &[f32], tol: f32, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: pair {i}: ours {a}, transformers {b}"
        );
    }
}

/// Each pair's token ids equal the fixture's (`ids`: one array per pair).
fn assert_ids(ce: &Pretrained<B>, pairs: &[(String, String)], ids: &Value, what: &str) {
    for (i, (q, d)) in pairs.iter().enumerate() {
        let ours = ce.pair_encoder.encode_pair(q, d).unwrap().ids;
        let want: Vec<u32> = ids[i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ours, want, "pair {i}{what}");
    }
}

fn header(path: &Path) -> BTreeMap<String, Vec<usize>> {
    model_io::read_header(path)
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.shape))
        .collect()
}

#[test]
fn bert_sequence_classification_scores_as_transformers() {
    let s = scores();
    let ce = load(&fixture("bert1"));
    assert_eq!(ce.activation, Activation::Identity);
    assert_eq!(ce.settings.pooling, Pooling::Pooler);
    assert_eq!(ce.settings.template, TemplateStyle::Encoder);
    assert_eq!(
        ce.settings.max_length, 64,
        "tokenizer_config's model_max_length"
    );
    let pairs = pairs(&s["pairs"]);
    // the tokenizer's own pair encoding, as transformers' tokenizer gives it
    assert_ids(&ce, &pairs, &s["bert1_input_ids"], "");
    assert_close(&score(&ce, &pairs), &floats(&s["bert1"]), 1e-5, "bert1");
}

#[test]
fn two_labels_score_as_their_difference() {
    let s = scores();
    let ce = load(&fixture("bert2"));
    // no activation named in config.json: sentence-transformers' default
    assert_eq!(ce.activation, Activation::Sigmoid);
    let ours = score(&ce, &pairs(&s["pairs"]));
    assert_close(
        &ours,
        &floats(&s["bert2"]),
        1e-5,
        "bert2 logit[1] - logit[0]",
    );
    let probs: Vec<f32> = ours.iter().map(|&x| ce.activation.apply(x)).collect();
    assert_close(&probs, &floats(&s["bert2_softmax1"]), 1e-5, "bert2 softmax");
}

#[test]
fn roberta_classification_head_scores_as_transformers() {
    let s = scores();
    let ce = load(&fixture("roberta1"));
    assert_eq!(ce.settings.pooling, Pooling::Pooler);
    // RoBERTa's positions start at padding_idx + 1: 66 positions hold 64 tokens
    assert_eq!(ce.settings.max_length, 64);
    assert_close(
        &score(&ce, &pairs(&s["pairs"])),
        &floats(&s["roberta1"]),
        1e-5,
        "roberta1",
    );
}

#[test]
fn gpt_neox_sequence_classification_scores_as_transformers() {
    let s = scores();
    let ce = load(&fixture("neox1"));
    assert_eq!(ce.settings.pooling, Pooling::LastToken);
    assert!(ce.model.classifier.bias.is_none(), "score has no bias");
    let pairs = pairs(&s["pairs"]);
    assert_ids(
        &ce,
        &pairs,
        &s["neox1_input_ids"],
        ": the paper's template + EOS",
    );
    // batched with right padding here, one pair at a time in transformers
    assert_close(&score(&ce, &pairs), &floats(&s["neox1"]), 1e-4, "neox1");
}

#[test]
fn a_real_size_cross_encoder_made_offline_scores_as_transformers() {
    // all-MiniLM-L6-v2's weights plus the fixture's head, as BertForSequenceClassification
    let minilm = test_support::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(minilm.join(f), tmp.path().join(f)).unwrap();
    }
    let body = std::fs::read(minilm.join("model.safetensors")).unwrap();
    let head = std::fs::read(fixture("minilm_head.safetensors")).unwrap();
    let body = safetensors::SafeTensors::deserialize(&body).unwrap();
    let head = safetensors::SafeTensors::deserialize(&head).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = body.tensors();
    tensors.extend(head.tensors());
    safetensors::serialize_to_file(tensors, None, &tmp.path().join("model.safetensors")).unwrap();

    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm_scores.json")).unwrap())
            .unwrap();
    let ce = load(tmp.path());
    assert_eq!(ce.settings.pooling, Pooling::Pooler);
    assert_close(
        &score(&ce, &pairs(&fixture["pairs"])),
        &floats(&fixture["logits"]),
        1e-4,
        "MiniLM cross-encoder",
    );
}

/// The error of loading `dir`.
fn load_error(dir: &Path) -> String {
    AutoCrossEncoder::<B>::from_pretrained(
        dir.to_str().unwrap(),
        &Default::default(),
        &Default::default(),
    )
    .err()
    .expect("an error")
    .to_string()
}

fn settings(ce: &Pretrained<B>) -> ScoringSettings {
    ce.settings.clone()
}

fn backbone_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Writes `ce` (loaded from fixture `src`) with `save_pretrained` into a new folder and checks
/// that its tensor names and shapes are those `transformers` wrote for `src`.
fn export_like(ce: &Pretrained<B>, src: &Path, activation: Activation) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("exported");
    ce.model
        .save_pretrained(
            &dir,
            &backbone_config(src),
            &src.join("tokenizer.json"),
            &settings(ce),
            activation,
        )
        .unwrap();
    assert_eq!(
        header(&dir.join("model.safetensors")),
        header(&src.join("model.safetensors")),
        "the tensor names and shapes transformers wrote"
    );
    out
}

#[test]
fn a_bert_cross_encoder_is_written_in_transformers_layout() {
    let s = scores();
    let src = fixture("bert1");
    let mut ce = load(&src);
    // the edit the fixture script made in PyTorch: head weight doubled, 0.5 added to the bias
    let w = ce.model.classifier.weight.val() * 2.0;
    let b = ce.model.classifier.bias.as_ref().unwrap().val() + 0.5;
    ce.model.classifier.weight = Param::from_tensor(w);
    ce.model.classifier.bias = Some(Param::from_tensor(b));
    let out = export_like(&ce, &src, Activation::Identity);
    let dir = out.path().join("exported");
    let cfg = backbone_config(&dir);
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
    assert_eq!(cfg["num_labels"], 1);
    assert_eq!(
        cfg["sentence_transformers"]["activation_fn"],
        "torch.nn.modules.linear.Identity"
    );
    let back = load(&dir);
    assert_eq!(back.settings, ce.settings);
    assert_close(
        &score(&back, &pairs(&s["pairs"])),
        &floats(&s["bert1_edited"]),
        1e-5,
        "bert1 edited, written and read back",
    );
}

#[test]
fn a_gpt_neox_head_bias_is_folded_into_the_final_norm() {
    let s = scores();
    let src = fixture("neox1");
    let mut ce = load(&src);
    // a head with a bias of 0.5 (this crate's heads have one; transformers' has none)
    ce.model.classifier.bias = Some(Param::from_tensor(Tensor::<B, 1>::from_floats(
        [0.5],
        &Default::default(),
    )));
    let pairs = pairs(&s["pairs"]);
    let want = floats(&s["neox1_bias_0.5"]);
    assert_close(
        &score(&ce, &pairs),
        &want,
        1e-4,
        "neox1 + 0.5 before export",
    );
    // GPTNeoXForSequenceClassification's names: no score.bias
    let out = export_like(&ce, &src, Activation::Sigmoid);
    let dir = out.path().join("exported");
    let back = load(&dir);
    assert!(back.model.classifier.bias.is_none());
    assert_eq!(back.activation, Activation::Sigmoid);
    assert_close(&score(&back, &pairs), &want, 1e-4, "neox1 + 0.5 read back");
}

#[test]
fn unrepresentable_models_and_bad_checkpoints_are_errors_that_name_the_file() {
    let src = fixture("bert1");
    let mut ce = load(&src);
    ce.model.pooling = Pooling::Mean;
    let mut st = settings(&ce);
    st.pooling = Pooling::Mean;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("never");
    let err = ce
        .model
        .save_pretrained(
            &dir,
            &backbone_config(&src),
            &src.join("tokenizer.json"),
            &st,
            Activation::Identity,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("pooler"), "{err}");
    assert!(!dir.exists(), "a refused export writes nothing");

    // a checkpoint without its tokenizer
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let err = load_error(tmp.path());
    assert!(err.contains("tokenizer.json"), "{err}");

    // a backbone without a classification head
    std::fs::copy(
        src.join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let body: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("classifier."))
        .collect();
    safetensors::serialize_to_file(body, None, &tmp.path().join("model.safetensors")).unwrap();
    let err = load_error(tmp.path());
    assert!(
        err.contains("model.safetensors") && err.contains("classification head"),
        "{err}"
    );

    // an architecture the crate does not have
    let mut cfg = backbone_config(&src);
    cfg["model_type"] = "t5".into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = load_error(tmp.path());
    assert!(err.contains("config.json") && err.contains("t5"), "{err}");
}

/// A Hub id (`owner/name`) through hf-hub against a loopback server speaking the Hub's file
/// protocol, then from the cache alone (offline): the same scores as the local folder.
#[test]
fn a_hub_id_loads_through_the_cache_and_offline() {
    let src = fixture("bert1");
    let mut files = std::collections::HashMap::new();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        files.insert(
            format!("cross-encoder/tiny-bert1/{f}"),
            std::fs::read(src.join(f)).unwrap(),
        );
    }
    let server = test_support::LoopbackHub::start(files);
    let cache = tempfile::tempdir().unwrap();
    let mut hub = model_io::HubOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        endpoint: Some(server.url.clone()),
        ..Default::default()
    };
    let pairs = pairs(&scores()["pairs"]);
    let want = score(&load(&src), &pairs);
    let online = AutoCrossEncoder::<B>::from_pretrained(
        "cross-encoder/tiny-bert1",
        &hub,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(online.activation, Activation::Identity);
    assert_close(&score(&online, &pairs), &want, 1e-6, "hub id");
    assert!(server.stop() >= 4, "every file came from the server");
    hub.offline = true;
    hub.endpoint = None;
    let offline = AutoCrossEncoder::<B>::from_pretrained(
        "cross-encoder/tiny-bert1",
        &hub,
        &Default::default(),
    )
    .unwrap();
    assert_close(&score(&offline, &pairs), &want, 1e-6, "hub id, offline");
}
