//! The bi-encoder on the real all-MiniLM-L6-v2: single-text tokenization against the
//! `tokenizers` library's own `[CLS] text [SEP]`, embeddings against a float64 mean pooling
//! and normalisation of the encoder's hidden states, and the semantic ordering the model was
//! trained for.

use burn::backend::NdArray;
use burn::backend::ndarray::NdArrayDevice;
use burn::tensor::{Int, Tensor, TensorData};
use rank_heads::{BiEncoder, PaddingSide, PairEncoder, Pooling, SequenceEncoder, TemplateStyle};
use transformer_baselines::{BertConfig, BertModel};

type B = NdArray;

fn setup(
    max_length: usize,
) -> (
    BiEncoder<B, BertModel<B>>,
    PairEncoder,
    tokenizers::Tokenizer,
) {
    let dir = test_support::minilm_dir();
    let dev = NdArrayDevice::default();
    let config = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let model =
        BertModel::<B>::from_safetensors(&config, &dir.join("model.safetensors"), &dev).unwrap();
    let tok_path = dir.join("tokenizer.json");
    let enc = PairEncoder::from_file(
        &tok_path,
        TemplateStyle::Encoder,
        max_length,
        PaddingSide::Right,
    )
    .unwrap();
    let mut hf = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    hf.with_padding(None);
    hf.with_truncation(None).unwrap();
    (BiEncoder::new(model, Pooling::Mean), enc, hf)
}

#[test]
fn single_texts_are_tokenized_as_the_tokenizer_does_and_cut_keeping_sep() {
    let (_, enc, hf) = setup(12);
    let short = "Mamba is a selective state space model.";
    let want = hf.encode(short, true).unwrap();
    let got = enc.encode_text(short).unwrap();
    assert_eq!(got.ids, want.get_ids());
    assert!(!got.truncated);
    let long = "Transformers attend to every token pair, so their cost grows with the square of the sequence length, while state space models scan.";
    let full = hf.encode(long, true).unwrap();
    assert!(full.get_ids().len() > 12);
    let cut = enc.encode_text(long).unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.ids.len(), 12);
    // [CLS] and the first ten word pieces, then [SEP]
    assert_eq!(&cut.ids[..11], &full.get_ids()[..11]);
    assert_eq!(cut.ids[11], *full.get_ids().last().unwrap());
}

#[test]
fn embeddings_are_the_normalised_mean_of_the_hidden_states() {
    let (bi, enc, _) = setup(64);
    let dev = NdArrayDevice::default();
    let texts = [
        "A man is eating food.",
        "A man is riding a white horse on an enclosed ground.",
    ];
    let got = bi.embed_texts(&texts, &enc, 2, &dev).unwrap();
    for (text, row) in texts.iter().zip(&got) {
        // float64 reference from the encoder's hidden states, one text alone (no padding)
        let ids: Vec<i64> = enc
            .encode_text(text)
            .unwrap()
            .ids
            .iter()
            .map(|&i| i as i64)
            .collect();
        let n = ids.len();
        let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [1, n]), &dev);
        let batch = rank_heads::TokenBatch {
            input_ids: t(ids.clone()),
            token_type_ids: t(vec![0; n]),
            attention_mask: t(vec![1; n]),
        };
        let hidden: Vec<f32> = bi
            .encoder
            .encode(&batch)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        let h = hidden.len() / n;
        let mean: Vec<f64> = (0..h)
            .map(|j| (0..n).map(|i| hidden[i * h + j] as f64).sum::<f64>() / n as f64)
            .collect();
        let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let diff = mean
            .iter()
            .zip(row)
            .map(|(m, g)| (m / norm - *g as f64).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "{text}: max abs diff {diff}");
    }
}

#[test]
fn cosine_ranks_paraphrases_above_unrelated_texts() {
    let (bi, enc, _) = setup(64);
    let dev = NdArrayDevice::default();
    let query = "A man is eating food.";
    let docs = [
        "A man is riding a white horse on an enclosed ground.",
        "A man is eating a piece of bread.",
        "A monkey is playing drums.",
    ];
    let s = bi.score(query, &docs, &enc, 2, &dev).unwrap();
    assert!(s[1] > s[0] && s[1] > s[2], "{s:?}");
    assert!(s.iter().all(|c| (-1.0..=1.0 + 1e-6).contains(c)), "{s:?}");
}
