//! Real weights: all-MiniLM-L6-v2 against `transformers` outputs for ten sentence pairs
//! (scripts/gen_transformer_fixtures.py), and the tokenizer against HF's tokenization.

mod common;

use common::{B, Fixture, fixtures, ids_tensor, max_abs_diff, minilm_dir};
use model_io::HubOptions;
use transformer_baselines::{AttentionImpl, BertModel, PaddingSide, PairTokenizer};

#[derive(serde::Deserialize)]
struct Pairs {
    max_length: usize,
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
}

fn pairs() -> Pairs {
    let path = fixtures().join("minilm_pairs.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn minilm_tokenization_matches_transformers() {
    let p = pairs();
    let tok = PairTokenizer::from_file(
        &minilm_dir().join("tokenizer.json"),
        p.max_length,
        PaddingSide::Right,
    )
    .unwrap();
    let refs: Vec<(&str, &str)> = p
        .pairs
        .iter()
        .map(|(q, d)| (q.as_str(), d.as_str()))
        .collect();
    let enc = tok.encode_pairs(&refs).unwrap();
    assert_eq!(enc.batch, p.input_ids.len());
    assert_eq!(enc.seq_len, p.input_ids[0].len());
    let flat = |v: &Vec<Vec<i64>>| v.iter().flatten().copied().collect::<Vec<_>>();
    assert_eq!(enc.input_ids, flat(&p.input_ids), "input_ids");
    assert_eq!(
        enc.token_type_ids,
        flat(&p.token_type_ids),
        "token_type_ids"
    );
    assert_eq!(
        enc.attention_mask,
        flat(&p.attention_mask),
        "attention_mask"
    );
}

#[test]
fn minilm_hidden_states_and_pooler_match_transformers() {
    let p = pairs();
    let expected = Fixture::open("minilm_outputs.safetensors");
    let hidden = expected.f32("last_hidden_state");
    let pooled = expected.f32("pooler_output");
    let device = Default::default();
    let dir = minilm_dir();
    let model =
        BertModel::<B>::from_pretrained(dir.to_str().unwrap(), &HubOptions::default(), &device)
            .unwrap()
            .0;
    for implementation in [AttentionImpl::Fused, AttentionImpl::Reference] {
        let model = model.clone().with_attention(implementation);
        let out = model
            .forward(
                ids_tensor(&p.input_ids),
                Some(ids_tensor(&p.token_type_ids)),
                Some(ids_tensor(&p.attention_mask)),
            )
            .unwrap();
        let e_hidden = max_abs_diff(out.last_hidden_state, &hidden, None);
        let e_pooled = max_abs_diff(
            out.pooler_output.expect("MiniLM has a pooler"),
            &pooled,
            None,
        );
        println!(
            "{implementation:?}: max |Δ| last_hidden_state {e_hidden:.2e}, pooler_output {e_pooled:.2e}"
        );
        assert!(
            e_hidden < 1e-4,
            "{implementation:?} last_hidden_state: {e_hidden}"
        );
        assert!(
            e_pooled < 1e-4,
            "{implementation:?} pooler_output: {e_pooled}"
        );
    }
}

#[test]
fn minilm_end_to_end_from_text() {
    // Rust tokenizer -> Rust model equals HF tokenizer -> HF model.
    let p = pairs();
    let dir = minilm_dir();
    let device = Default::default();
    let tok = PairTokenizer::from_pretrained(
        dir.to_str().unwrap(),
        &HubOptions::default(),
        p.max_length,
        PaddingSide::Right,
    )
    .unwrap();
    let refs: Vec<(&str, &str)> = p
        .pairs
        .iter()
        .map(|(q, d)| (q.as_str(), d.as_str()))
        .collect();
    let t = tok.encode_pairs(&refs).unwrap().to_tensors::<B>(&device);
    let model =
        BertModel::<B>::from_pretrained(dir.to_str().unwrap(), &HubOptions::default(), &device)
            .unwrap()
            .0;
    let out = model
        .forward(t.input_ids, Some(t.token_type_ids), Some(t.attention_mask))
        .unwrap();
    let expected = Fixture::open("minilm_outputs.safetensors");
    let e = max_abs_diff(
        out.last_hidden_state,
        &expected.f32("last_hidden_state"),
        None,
    );
    assert!(e < 1e-4, "{e}");
}
