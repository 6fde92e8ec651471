//! Real weights: all-MiniLM-L6-v2 against `transformers` outputs for ten sentence pairs
//! (scripts/gen_transformer_fixtures.py), fed HF's own token ids. The pair tokenization is
//! checked against the same fixture in rank-heads (`PairEncoder`, tests/hf_tokenization.rs).

mod common;

use common::{B, Fixture, fixtures, ids_tensor, max_abs_diff, minilm_dir};
use model_io::HubOptions;
use transformer_baselines::{AttentionImpl, BertModel};

#[derive(serde::Deserialize)]
struct Pairs {
    input_ids: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
}

fn pairs() -> Pairs {
    let path = fixtures().join("minilm_pairs.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
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
    for implementation in [
        AttentionImpl::Flash,
        AttentionImpl::Burn,
        AttentionImpl::Reference,
    ] {
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
