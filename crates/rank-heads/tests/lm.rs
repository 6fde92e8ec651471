//! Causal-LM pretraining pieces: the next-token loss against a float64 reference computed on
//! the host from the encoder's hidden states and embedding; the tokenizer trainer; packing;
//! the loss of a tiny Mamba falling under the Trainer.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Int, Tensor, TensorData};
use mamba_blocks::{MambaConfig, MambaModel};
use rank_heads::lm::{EOS_TOKEN, PAD_TOKEN, PackedCorpus, train_tokenizer};
use rank_heads::{
    CausalLm, SequenceEncoder, TokenBatch, TokenEmbedding, TrainConfig, Trainer, Warmup,
};
use transformer_baselines::GptNeoXConfig;

type B = NdArray;

fn batch(ids: Vec<i64>, mask: Vec<i64>, rows: usize, cols: usize) -> TokenBatch<B> {
    let dev = Default::default();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, cols]), &dev);
    TokenBatch {
        token_type_ids: input_ids.zeros_like(),
        attention_mask: Tensor::from_data(TensorData::new(mask, [rows, cols]), &dev),
        input_ids,
    }
}

/// `sum over (b, t < L-1) with mask[b,t] * mask[b,t+1]` of `-log softmax(h[b,t] · Eᵀ)[id[b,t+1]]`
/// in float64.
fn reference<E: SequenceEncoder<B> + TokenEmbedding<B>>(
    enc: &E,
    b: &TokenBatch<B>,
) -> (f64, usize) {
    let h = enc.encode(b).unwrap();
    let [rows, cols, width] = h.dims();
    let h: Vec<f32> = h.into_data().to_vec().unwrap();
    let e = enc.token_embedding();
    let vocab = e.dims()[0];
    let e: Vec<f32> = e.into_data().to_vec().unwrap();
    let ids: Vec<i64> = b.input_ids.clone().into_data().to_vec().unwrap();
    let mask: Vec<i64> = b.attention_mask.clone().into_data().to_vec().unwrap();
    let (mut sum, mut n) = (0f64, 0usize);
    for r in 0..rows {
        for t in 0..cols - 1 {
            if mask[r * cols + t] == 0 || mask[r * cols + t + 1] == 0 {
                continue;
            }
            let hv = &h[(r * cols + t) * width..(r * cols + t + 1) * width];
            let logits: Vec<f64> = (0..vocab)
                .map(|v| {
                    (0..width)
                        .map(|k| hv[k] as f64 * e[v * width + k] as f64)
                        .sum()
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            sum += lse - logits[ids[r * cols + t + 1] as usize];
            n += 1;
        }
    }
    (sum, n)
}

#[test]
fn next_token_loss_matches_float64_reference() {
    let dev = Default::default();
    let cfg = GptNeoXConfig::new(32, 2, 4, 50);
    let enc = cfg.init::<B>(&dev).unwrap();
    // row 1 is right-padded after 4 tokens: its last predictions are not counted
    let b = batch(
        vec![3, 7, 1, 49, 0, 5, 2, 8, 9, 11, 4, 4],
        vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        2,
        6,
    );
    let (want, want_n) = reference(&enc, &b);
    let lm = CausalLm::<B, _>::new(enc);
    let (sum, n) = lm.loss_sum(&b).unwrap();
    assert_eq!((n, want_n), (8, 8));
    let got = sum.into_scalar() as f64;
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
    let mean = lm.loss(&b).unwrap().into_scalar() as f64;
    assert!((mean - want / 8.0).abs() < 1e-5, "{mean}");
    // logits agree with the same reference at one position
    let logits = lm.logits(&b).unwrap();
    assert_eq!(logits.dims(), [2, 6, 50]);
    // a one-token batch has nothing to predict
    let one = batch(vec![3], vec![1], 1, 1);
    assert!(lm.loss_sum(&one).is_err());
}

#[test]
fn mamba_next_token_loss_matches_float64_reference() {
    let dev = Default::default();
    let enc = MambaModel::<B>::new(&MambaConfig::new(16, 2, 40), &dev);
    let b = batch(vec![1, 2, 3, 4, 5, 39, 20, 0], vec![1; 8], 2, 4);
    let (want, want_n) = reference(&enc, &b);
    let (sum, n) = CausalLm::<B, _>::new(enc).loss_sum(&b).unwrap();
    assert_eq!((n, want_n), (6, 6));
    let got = sum.into_scalar() as f64;
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
}

fn corpus_docs() -> Vec<String> {
    // A small corpus with regular structure: a language model must learn it quickly.
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house", "red",
    ];
    (0..60)
        .map(|d| {
            (0..80)
                .map(|i| words[(d * 7 + i * i + i) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn tokenizer_trains_with_special_ids_and_round_trips() {
    let docs = corpus_docs();
    let tok = train_tokenizer(&docs, 300).unwrap();
    assert_eq!(tok.token_to_id(EOS_TOKEN), Some(0));
    assert_eq!(tok.token_to_id(PAD_TOKEN), Some(1));
    assert!(tok.get_vocab_size(true) <= 300);
    let text = "the red cat ran to a house, and Zebra!";
    let enc = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    // merges learnt: a frequent word is one token
    assert_eq!(tok.encode("house", false).unwrap().get_ids().len(), 1);
    assert!(train_tokenizer(&docs, 100).is_err());
}

#[test]
fn packing_joins_documents_with_eos_and_holds_out() {
    let docs = corpus_docs();
    let tok = train_tokenizer(&docs, 300).unwrap();
    let p = PackedCorpus::pack(&tok, &docs, 0, 16, 4).unwrap();
    let total: usize = docs
        .iter()
        .map(|d| tok.encode(d.as_str(), false).unwrap().get_ids().len() + 1)
        .sum();
    assert_eq!(p.train_len() + p.valid_len(), total / 16);
    assert_eq!(p.valid_len(), total / 16 / 4);
    // the first sequence starts with document 0's first tokens
    let first = tok.encode(docs[0].as_str(), false).unwrap();
    let b = p.train_batch::<B>(0, p.train_len(), 3, &Default::default());
    let ids: Vec<i64> = b.input_ids.into_data().to_vec().unwrap();
    let starts: Vec<&[i64]> = ids.chunks(16).collect();
    let want: Vec<i64> = first.get_ids()[..16].iter().map(|&i| i as i64).collect();
    assert!(starts.contains(&want.as_slice()));
    // one epoch visits every training sequence once, in an order that depends on the seed
    let other = p.train_batch::<B>(0, p.train_len(), 4, &Default::default());
    let other: Vec<i64> = other.input_ids.into_data().to_vec().unwrap();
    let mut a: Vec<&[i64]> = starts.clone();
    let mut o: Vec<&[i64]> = other.chunks(16).collect();
    assert_ne!(a, o);
    a.sort();
    o.sort();
    assert_eq!(a, o);
    assert!(PackedCorpus::pack(&tok, &docs[..1], 0, 4096, 4).is_err());
}

#[test]
fn pretraining_loss_falls() {
    let docs = corpus_docs();
    let tok = train_tokenizer(&docs, 300).unwrap();
    let p = PackedCorpus::pack(&tok, &docs, 0, 32, 10).unwrap();
    type AD = Autodiff<NdArray>;
    let dev = Default::default();
    let enc = MambaModel::<AD>::new(&MambaConfig::new(32, 2, p.vocab_size), &dev);
    let cfg = TrainConfig {
        lr: 1e-2,
        total_steps: 40,
        warmup: Warmup::Steps(2),
        group_size: 1,
        progress: false,
        eval_every: Some(40),
        ..TrainConfig::default()
    };
    let valid = p.valid_batch::<NdArray>(0, p.valid_len(), &dev);
    let mut t = Trainer::new(CausalLm::<AD, _>::new(enc), cfg, dev).unwrap();
    let before = t
        .model
        .loss(&p.valid_batch::<AD>(0, p.valid_len(), &dev))
        .unwrap();
    let before = before.into_scalar() as f64;
    let mut data = |i: usize| Ok(p.train_batch::<AD>(i * 8, 8, 1, &dev));
    let mut eval =
        |m: &CausalLm<NdArray, MambaModel<NdArray>>| Ok(m.loss(&valid)?.into_scalar() as f64);
    let r = t.train(None, &mut data, Some(&mut eval)).unwrap();
    let after = r.evals.last().unwrap().1;
    // uniform over the vocabulary is ln(300) = 5.7 nats; the regular text is far easier
    assert!(before > 4.5, "{before}");
    assert!(after < before - 2.0, "{before} -> {after}");
}
