//! Tiny random checkpoints written by `transformers` (scripts/gen_transformer_fixtures.py):
//! BERT saved with the `bert.` prefix, RoBERTa positions, GPT-NeoX with parallel and sequential
//! residuals under right and left padding. Rust outputs against HF's.

mod common;

use common::{B, Fixture, fixtures, max_abs_diff};
use model_io::HubOptions;
use transformer_baselines::{AttentionImpl, BertModel, GptNeoXConfig, GptNeoXModel};

const IMPLS: [AttentionImpl; 3] = [
    AttentionImpl::Flash,
    AttentionImpl::Burn,
    AttentionImpl::Reference,
];

fn load_bert(name: &str) -> BertModel<B> {
    let dir = fixtures().join(name);
    BertModel::from_pretrained(
        dir.to_str().unwrap(),
        &HubOptions::default(),
        &Default::default(),
    )
    .unwrap()
    .0
}

#[test]
fn tiny_bert_with_prefix_matches_transformers() {
    let f = Fixture::open("tiny_encoders.safetensors");
    let mask = f.i64("bert.attention_mask").0;
    let model = load_bert("tiny_bert");
    assert!(model.pooler.is_some());
    for implementation in IMPLS {
        let out = model
            .clone()
            .with_attention(implementation)
            .forward(
                f.ids("bert.input_ids"),
                Some(f.ids("bert.token_type_ids")),
                Some(f.ids("bert.attention_mask")),
            )
            .unwrap();
        // Padding positions of an encoder are defined (they attend to the real tokens): compare all.
        let e_h = max_abs_diff(
            out.last_hidden_state,
            &f.f32("bert.last_hidden_state"),
            None,
        );
        let e_p = max_abs_diff(
            out.pooler_output.unwrap(),
            &f.f32("bert.pooler_output"),
            None,
        );
        println!("tiny BERT {implementation:?}: hidden {e_h:.2e}, pooler {e_p:.2e}");
        assert!(e_h < 1e-4 && e_p < 1e-4, "{e_h} {e_p}");
    }
    assert!(mask.contains(&0), "the fixture has padding");
}

#[test]
fn tiny_roberta_positions_match_transformers() {
    let f = Fixture::open("tiny_encoders.safetensors");
    let model = load_bert("tiny_roberta");
    for implementation in IMPLS {
        let out = model
            .clone()
            .with_attention(implementation)
            .forward(
                f.ids("roberta.input_ids"),
                None,
                Some(f.ids("roberta.attention_mask")),
            )
            .unwrap();
        let e_h = max_abs_diff(
            out.last_hidden_state,
            &f.f32("roberta.last_hidden_state"),
            None,
        );
        let e_p = max_abs_diff(
            out.pooler_output.unwrap(),
            &f.f32("roberta.pooler_output"),
            None,
        );
        println!("tiny RoBERTa {implementation:?}: hidden {e_h:.2e}, pooler {e_p:.2e}");
        assert!(e_h < 1e-4 && e_p < 1e-4, "{e_h} {e_p}");
    }
}

#[test]
fn bert_save_then_load_keeps_transformers_outputs() {
    let f = Fixture::open("tiny_encoders.safetensors");
    let (model, config) =
        BertModel::<B>::load_dir(&fixtures().join("tiny_bert"), &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("tb-save-{}", std::process::id()));
    // save_pretrained writes config.json from the config and the weights, HF-named
    model.save_pretrained(&config, &dir).unwrap();
    let names =
        transformer_baselines::checkpoint::safetensors_names(&dir.join("model.safetensors"))
            .unwrap();
    assert!(
        names.contains("encoder.layer.1.attention.self.query.weight"),
        "{names:?}"
    );
    assert!(names.contains("embeddings.LayerNorm.weight"), "{names:?}");
    let (reloaded, reread) = BertModel::<B>::load_dir(&dir, &Default::default()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(reread.hidden_size, config.hidden_size);
    assert_eq!(reread.num_hidden_layers, config.num_hidden_layers);
    let out = reloaded
        .forward(
            f.ids("bert.input_ids"),
            Some(f.ids("bert.token_type_ids")),
            Some(f.ids("bert.attention_mask")),
        )
        .unwrap();
    let e = max_abs_diff(
        out.last_hidden_state,
        &f.f32("bert.last_hidden_state"),
        None,
    );
    assert!(e < 1e-4, "{e}");
}

#[test]
fn tiny_gpt_neox_matches_transformers_with_right_and_left_padding() {
    let f = Fixture::open("tiny_gpt_neox.safetensors");
    for name in ["tiny_gpt_neox", "tiny_gpt_neox_seq"] {
        let dir = fixtures().join(name);
        let config = GptNeoXConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(config.use_parallel_residual, name == "tiny_gpt_neox");
        assert_eq!(config.rotary_ndims(), 4);
        let model = GptNeoXModel::<B>::from_pretrained(
            dir.to_str().unwrap(),
            &HubOptions::default(),
            &Default::default(),
        )
        .unwrap()
        .0;
        for side in ["right", "left"] {
            let mask = f.i64(&format!("{side}.attention_mask")).0;
            assert!(mask.contains(&0));
            let expected = f.f32(&format!("{name}.{side}.last_hidden_state"));
            for implementation in IMPLS {
                let h = model
                    .clone()
                    .with_attention(implementation)
                    .forward(
                        f.ids(&format!("{side}.input_ids")),
                        Some(f.ids(&format!("{side}.attention_mask"))),
                    )
                    .unwrap();
                // Padding positions are undefined in HF: compare the real tokens.
                let e = max_abs_diff(h, &expected, Some(&mask));
                println!("{name} {side} {implementation:?}: max |Δ| {e:.2e}");
                assert!(e < 1e-4, "{name} {side} {implementation:?}: {e}");
            }
        }
    }
}

#[test]
fn gpt_neox_left_padding_equals_unpadded_rows() {
    // Rotary attention depends on distances only: a left-padded row's real tokens equal the
    // same row run alone. (HF agrees: the fixture's left and right outputs are compared above.)
    let f = Fixture::open("tiny_gpt_neox.safetensors");
    let dir = fixtures().join("tiny_gpt_neox");
    let model = GptNeoXModel::<B>::from_pretrained(
        dir.to_str().unwrap(),
        &HubOptions::default(),
        &Default::default(),
    )
    .unwrap()
    .0;
    let expected = f.f32("tiny_gpt_neox.right.last_hidden_state");
    let (ids, shape) = f.i64("right.input_ids");
    let (mask, _) = f.i64("right.attention_mask");
    let l = shape[1];
    let hidden = expected.1[2];
    for row in 0..shape[0] {
        let n = mask[row * l..(row + 1) * l].iter().sum::<i64>() as usize;
        let alone = common::ids_tensor(&[ids[row * l..row * l + n].to_vec()]);
        let h = model.forward(alone, None).unwrap();
        let want = expected.0[row * l * hidden..(row * l + n) * hidden].to_vec();
        let e = max_abs_diff(h, &(want, vec![1, n, hidden]), None);
        assert!(e < 1e-4, "row {row}: {e}");
    }
}

#[test]
fn gpt_neox_save_pretrained_then_load_keeps_transformers_outputs() {
    let f = Fixture::open("tiny_gpt_neox.safetensors");
    let (model, config) =
        GptNeoXModel::<B>::load_dir(&fixtures().join("tiny_gpt_neox"), &Default::default())
            .unwrap();
    let dir = std::env::temp_dir().join(format!("tb-neox-save-{}", std::process::id()));
    model.save_pretrained(&config, &dir).unwrap();
    let (reloaded, _) = GptNeoXModel::<B>::load_dir(&dir, &Default::default()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let mask = f.i64("right.attention_mask").0;
    let h = reloaded
        .forward(
            f.ids("right.input_ids"),
            Some(f.ids("right.attention_mask")),
        )
        .unwrap();
    let e = max_abs_diff(
        h,
        &f.f32("tiny_gpt_neox.right.last_hidden_state"),
        Some(&mask),
    );
    assert!(e < 1e-4, "{e}");
}
