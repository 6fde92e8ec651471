//! Losses against closed forms, pooling under padding, templates and truncation, the LR
//! schedule, gradient clipping, and exact resume of training.

use std::path::{Path, PathBuf};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use mamba_blocks::MambaModel;
use rank_heads::loss::{bce, lce, margin_loss, ranknet};
use rank_heads::{
    CrossEncoder, PAPER_DECODER_TEMPLATE, PaddingSide, PairEncoder, Pooling, RankLoss,
    TemplateStyle, TokenBatch, TrainConfig, Trainer, Warmup,
};

type B = NdArray;

/// NdArray's seeded RNG is process-global: tests that need reproducible randomness hold this.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
type AD = Autodiff<NdArray>;

fn scalar(t: Tensor<B, 1>) -> f64 {
    t.into_scalar() as f64
}

#[test]
fn losses_match_closed_forms() {
    // Values computed by hand (Python `math`) for these two groups, positive at index 0.
    let dev = Default::default();
    let s = Tensor::<B, 2>::from_floats([[2.0, 1.0, 0.0, -0.5], [0.3, 1.7, -1.2, 0.0]], &dev);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(close(scalar(lce(s.clone())), 1.1278596339918887));
    assert!(close(
        scalar(RankLoss::Bce.compute(s.clone())),
        0.7482480981317521
    ));
    assert!(close(scalar(ranknet(s.clone())), 0.48254422753724596));
    assert!(close(
        scalar(margin_loss(s.clone(), 1.0)),
        0.5166666666666666
    ));
    assert!(close(
        scalar(RankLoss::Margin { margin: 1.0 }.compute(s.clone())),
        0.5166666666666666
    ));
    // BCE stays finite for large logits: softplus(-100) ~ 0, softplus(100) = 100.
    let big = Tensor::<B, 1>::from_floats([100.0, -100.0], &dev);
    let labels = Tensor::<B, 1>::from_floats([1.0, 1.0], &dev);
    assert!(close(scalar(bce(big, labels)), 50.0));
}

#[test]
fn pooling_picks_the_right_rows_under_padding() {
    let dev = Default::default();
    // hidden[b, t, :] = [10 b + t, -(10 b + t)]
    let vals: Vec<f32> = (0..2)
        .flat_map(|b| (0..4).flat_map(move |t| [(10 * b + t) as f32, -((10 * b + t) as f32)]))
        .collect();
    let hidden = Tensor::<B, 3>::from_data(TensorData::new(vals, [2, 4, 2]), &dev);
    let right = Tensor::<B, 2, Int>::from_ints([[1, 1, 1, 0], [1, 1, 0, 0]], &dev);
    let left = Tensor::<B, 2, Int>::from_ints([[0, 1, 1, 1], [0, 0, 1, 1]], &dev);
    let v = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap();
    assert_eq!(
        v(Pooling::LastToken.pool(hidden.clone(), &right)),
        [2.0, -2.0, 11.0, -11.0]
    );
    assert_eq!(
        v(Pooling::LastToken.pool(hidden.clone(), &left)),
        [3.0, -3.0, 13.0, -13.0]
    );
    assert_eq!(
        v(Pooling::Cls.pool(hidden.clone(), &right)),
        [0.0, 0.0, 10.0, -10.0]
    );
    // mean of real tokens: row 0 -> (0+1+2)/3, row 1 -> (10+11)/2
    assert_eq!(
        v(Pooling::Mean.pool(hidden, &right)),
        [1.0, -1.0, 10.5, -10.5]
    );
}

fn neox() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(test_support::neox_tokenizer()).unwrap()
}

#[test]
fn decoder_template_truncates_the_document_only() {
    let tok = neox();
    let style = TemplateStyle::Decoder {
        template: PAPER_DECODER_TEMPLATE.into(),
        eos_id: 0,
    };
    let query = "who led the manhattan project";
    let doc = "The Manhattan Project was a research and development undertaking during World War II that produced the first nuclear weapons. It was led by the United States with the support of the United Kingdom and Canada.";
    // Untruncated: exactly the tokens of the paper's text, then EOS.
    let long = PairEncoder::new(tok.clone(), style.clone(), 512, PaddingSide::Right).unwrap();
    let e = long.encode_pair(query, doc).unwrap();
    let text = format!("Document: {doc}\n\nQuery: {query}");
    let mut want: Vec<u32> = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    want.push(0);
    assert_eq!(e.ids, want);
    assert!(!e.truncated);
    // Truncated to 24 tokens: same prefix, the query part and EOS intact, length 24.
    let short = PairEncoder::new(tok.clone(), style.clone(), 24, PaddingSide::Right).unwrap();
    let t = short.encode_pair(query, doc).unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), 24);
    let tail: Vec<u32> = tok
        .encode(format!("\n\nQuery: {query}").as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(&t.ids[24 - 1 - tail.len()..23], &tail[..], "query part cut");
    assert_eq!(t.ids[23], 0, "EOS");
    assert_eq!(&t.ids[..5], &want[..5], "document start");
    // A query that cannot fit is an error, not a silent cut.
    let tiny = PairEncoder::new(tok, style, 8, PaddingSide::Right).unwrap();
    assert!(tiny.encode_pair(query, doc).is_err());
    // A document containing the placeholder text is not substituted.
    let e = long.encode_pair("q", "text with {query} inside").unwrap();
    let text = "Document: text with {query} inside\n\nQuery: q";
    assert_eq!(e.ids.len(), neox().encode(text, false).unwrap().len() + 1);
}

#[test]
fn padding_sides_and_masks() {
    let enc = PairEncoder::new(
        neox(),
        TemplateStyle::Decoder {
            template: PAPER_DECODER_TEMPLATE.into(),
            eos_id: 0,
        },
        64,
        PaddingSide::Left,
    )
    .unwrap();
    let b = enc
        .encode_batch(&[
            ("q", "a short doc"),
            ("a longer query here", "a somewhat longer document text"),
        ])
        .unwrap();
    let n0 = enc.encode_pair("q", "a short doc").unwrap().ids.len();
    assert_eq!(
        b.seq_len,
        enc.encode_pair("a longer query here", "a somewhat longer document text")
            .unwrap()
            .ids
            .len()
    );
    // row 0 left-padded: zeros then ones
    let row0 = &b.attention_mask[..b.seq_len];
    assert_eq!(row0.iter().filter(|m| **m == 1).count(), n0);
    assert!(row0[b.seq_len - n0..].iter().all(|m| *m == 1));
    assert!(enc.encode_batch(&[]).is_err());

    // Bucketed widths: padded up to a multiple of 16, capped at the length limit, the same
    // tokens and mask positions otherwise (left padding keeps the tokens at the end).
    let bucketed = enc.clone().with_pad_multiple(16);
    let long = enc
        .encode_pair("a longer query here", "a somewhat longer document text")
        .unwrap()
        .ids;
    let bb = bucketed
        .encode_batch(&[("a longer query here", "a somewhat longer document text")])
        .unwrap();
    assert_eq!(bb.seq_len, long.len().div_ceil(16) * 16);
    assert_eq!(
        bb.input_ids[bb.seq_len - long.len()..],
        long.iter().map(|&i| i as i64).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        bb.attention_mask.iter().filter(|m| **m == 1).count(),
        long.len()
    );
    let capped = enc.clone().with_pad_multiple(1000);
    let bc = capped.encode_batch(&[("q", "a short doc")]).unwrap();
    assert_eq!(bc.seq_len, 64);
}

#[test]
fn schedule_is_linear_warmup_then_linear_decay() {
    let c = TrainConfig {
        lr: 1.0,
        total_steps: 10,
        warmup: Warmup::Steps(4),
        ..TrainConfig::default()
    };
    let lrs: Vec<f64> = (0..10).map(|s| c.lr_at(s)).collect();
    let want = [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        5.0 / 6.0,
        4.0 / 6.0,
        3.0 / 6.0,
        2.0 / 6.0,
        1.0 / 6.0,
    ];
    for (a, b) in lrs.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{lrs:?}");
    }
    let r = TrainConfig {
        warmup: Warmup::Ratio(0.1),
        total_steps: 1000,
        ..TrainConfig::default()
    };
    assert_eq!(r.warmup_steps(), 100);
}

fn tiny_mamba_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mamba-blocks/tests/fixtures/tiny")
}

/// Deterministic micro-batches: 2 groups of 3 rows, random-looking ids, some right padding.
fn batch_for(index: usize) -> TokenBatch<AD> {
    let dev = Default::default();
    let (rows, len) = (6, 7);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in 0..rows {
        let real = len - (r + index) % 3;
        for t in 0..len {
            let x = (index * 131 + r * 17 + t * 7) % 500;
            ids.push(if t < real { x as i64 } else { 0 });
            mask.push((t < real) as i64);
        }
    }
    let t = |v: Vec<i64>| Tensor::<AD, 2, Int>::from_data(TensorData::new(v, [rows, len]), &dev);
    TokenBatch {
        input_ids: t(ids),
        token_type_ids: t(vec![0; rows * len]),
        attention_mask: t(mask),
    }
}

fn params(m: &CrossEncoder<AD, MambaModel<AD>>) -> Vec<f32> {
    use burn::module::Module;
    let rec = m.valid().into_record();
    let model = CrossEncoder::<B, MambaModel<B>>::new(
        MambaModel::load_dir(&tiny_mamba_dir(), &Default::default())
            .unwrap()
            .0,
        Pooling::LastToken,
        0.1,
        &Default::default(),
    )
    .load_record(rec);
    let mut out: Vec<f32> = model.classifier.weight.val().into_data().to_vec().unwrap();
    for l in &model.encoder.layers {
        out.extend(
            l.mixer
                .in_proj
                .weight
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        out.extend(l.mixer.a_log.val().into_data().to_vec::<f32>().unwrap());
        out.extend(
            l.mixer
                .dt_proj
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
    }
    out.extend(
        model
            .encoder
            .embeddings
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap(),
    );
    out
}

fn fresh() -> CrossEncoder<AD, MambaModel<AD>> {
    let dev = Default::default();
    let (enc, _) = MambaModel::<AD>::load_dir(&tiny_mamba_dir(), &dev).unwrap();
    // dropout on: resume must reproduce the random masks too
    AD::seed(&dev, 7);
    CrossEncoder::new(enc, Pooling::LastToken, 0.1, &dev)
}

fn config() -> TrainConfig {
    TrainConfig {
        lr: 1e-3,
        total_steps: 6,
        warmup: Warmup::Steps(2),
        accumulation: 2,
        group_size: 3,
        grad_clip_norm: Some(0.5),
        progress: false,
        log_every: 1,
        ..TrainConfig::default()
    }
}

#[test]
fn training_then_resume_equals_uninterrupted_training() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = NdArrayDevice::default();
    let mut data = |i: usize| Ok(batch_for(i));
    // uninterrupted: 6 steps
    let mut a = Trainer::new(fresh(), config(), dev).unwrap();
    let report = a.train(None, &mut data, None).unwrap();
    assert_eq!(report.steps, 6);
    let pa = params(&a.model);
    // 3 steps, checkpoint, drop everything, resume, 3 more
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    let mut b = Trainer::new(fresh(), config(), dev)
        .unwrap()
        .with_checkpoints(dir.path())
        .unwrap()
        .with_log(&log)
        .unwrap();
    b.train(Some(3), &mut data, None).unwrap();
    let mid = params(&b.model);
    drop(b);
    assert_ne!(
        mid, pa,
        "three steps already equal six: the test would prove nothing"
    );
    // resume from a differently initialised model: everything must come from the checkpoint
    let other = {
        let dev = Default::default();
        let (enc, _) = MambaModel::<AD>::load_dir(&tiny_mamba_dir(), &dev).unwrap();
        AD::seed(&dev, 999);
        CrossEncoder::new(enc, Pooling::LastToken, 0.1, &dev)
    };
    // a run killed after its step-3 checkpoint had logged steps 4 and 5 and half of 6: the
    // resumed run logs them again, so they go, and each step stays logged once
    let mut killed = std::fs::read_to_string(&log).unwrap();
    killed.push_str("{\"step\":4,\"loss\":1.0}\n{\"step\":5,\"loss\":1.0}\n{\"step\":6,\"lo");
    std::fs::write(&log, killed).unwrap();
    let mut c = Trainer::resume(other, config(), dir.path(), dev)
        .unwrap()
        .expect("a checkpoint")
        .with_log(&log)
        .unwrap();
    assert_eq!(c.step, 3);
    c.train(None, &mut data, None).unwrap();
    assert_eq!(params(&c.model), pa, "resumed training differs");
    let steps: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    // JSONL metrics: one line per step with loss, lr and tokens/s
    let lines = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 1);
    assert!(first["loss"].as_f64().unwrap().is_finite());
    assert!((first["lr"].as_f64().unwrap() - 0.5e-3).abs() < 1e-12);
    // a mismatched schedule refuses to resume
    let mut other_cfg = config();
    other_cfg.total_steps = 7;
    assert!(Trainer::resume(fresh(), other_cfg, dir.path(), dev).is_err());
}

#[test]
fn non_finite_weights_are_named_as_such_not_as_a_learning_rate_problem() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = NdArrayDevice::default();
    let mut data = |i: usize| Ok(batch_for(i));
    let mut m = fresh();
    m.encoder.embeddings.weight = m.encoder.embeddings.weight.map(|t| t.mul_scalar(f32::NAN));
    let err = Trainer::new(m, config(), dev)
        .unwrap()
        .train(None, &mut data, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weight tensors hold NaN") && !err.contains("learning rate"),
        "{err}"
    );
    // finite weights and a learning rate that blows up: the hint is the learning rate
    let cfg = TrainConfig {
        lr: 1e30,
        grad_clip_norm: None,
        ..config()
    };
    let mut t = Trainer::new(fresh(), cfg, dev).unwrap();
    let err = t.train(None, &mut data, None).unwrap_err().to_string();
    assert!(err.contains("learning rate"), "{err}");
    // the loss is read after the update is queued: the diverged update was taken back, so the
    // weights are those before it (finite) and the step count did not move past it
    let at: usize = err
        .split(" at step ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in: {err}"));
    assert_eq!(t.step, at, "{err}");
    let w = params(&t.model);
    assert!(
        w.iter().all(|v| v.is_finite()),
        "the diverged update was kept"
    );
}

#[test]
fn training_lowers_the_loss_on_a_learnable_signal() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    // Positive rows end with token 7; negatives never contain it. LCE should drop.
    let dev = NdArrayDevice::default();
    let make = |i: usize| {
        let (rows, len) = (8, 6);
        let mut ids = Vec::new();
        for r in 0..rows {
            for t in 0..len {
                let mut x = ((i * 37 + r * 11 + t * 5) % 400 + 20) as i64;
                if r % 4 == 0 && t == len - 1 {
                    x = 7;
                }
                ids.push(x);
            }
        }
        let t =
            |v: Vec<i64>| Tensor::<AD, 2, Int>::from_data(TensorData::new(v, [rows, len]), &dev);
        Ok(TokenBatch {
            input_ids: t(ids),
            token_type_ids: t(vec![0; rows * len]),
            attention_mask: t(vec![1; rows * len]),
        })
    };
    let mut data = make;
    let cfg = TrainConfig {
        lr: 3e-3,
        total_steps: 40,
        warmup: Warmup::Steps(4),
        group_size: 4,
        progress: false,
        log_every: 40,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(fresh(), cfg.clone(), dev).unwrap();
    let eval_loss = |m: &CrossEncoder<B, MambaModel<B>>| -> f64 {
        use rank_heads::Scorer;
        let mut total = 0.0;
        for i in 1000..1004 {
            let b = make(i).unwrap();
            let batch = TokenBatch::<B> {
                input_ids: b.input_ids.inner(),
                token_type_ids: b.token_type_ids.inner(),
                attention_mask: b.attention_mask.inner(),
            };
            let s = m.score(&batch).unwrap().reshape([2, 4]);
            total += scalar(lce(s));
        }
        total / 4.0
    };
    let before = eval_loss(&t.model.valid());
    let mut evals = |m: &CrossEncoder<B, MambaModel<B>>| Ok(-eval_loss(m));
    let report = t.train(None, &mut data, Some(&mut evals)).unwrap();
    let after = -report.evals.last().unwrap().1;
    assert!(
        after < 0.7 * before,
        "held-out LCE did not drop: {before:.4} -> {after:.4}"
    );
}

/// all-MiniLM-L6-v2's directory (downloaded on first use).
fn minilm_dir() -> PathBuf {
    test_support::minilm_dir()
}

#[test]
fn encoder_template_truncates_the_document_only() {
    let path = minilm_dir().join("tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&path).unwrap();
    let (cls, sep) = (
        tok.token_to_id("[CLS]").unwrap(),
        tok.token_to_id("[SEP]").unwrap(),
    );
    let query = "does vitamin d reduce the risk of fractures";
    let doc = "Vitamin D supplementation was studied in a randomised trial of older adults; \
               fractures were recorded over five years of follow up in every participant.";
    let word = |s: &str| -> Vec<u32> {
        let mut t = tok.clone();
        t.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        t.with_truncation(None).unwrap();
        t.with_padding(None);
        t.encode(s, false).unwrap().get_ids().to_vec()
    };
    let (q, d) = (word(query), word(doc));
    let enc =
        PairEncoder::from_file(&path, TemplateStyle::Encoder, 256, PaddingSide::Right).unwrap();
    // [CLS] q [SEP] d [SEP], token types 0 then 1
    let e = enc.encode_pair(query, doc).unwrap();
    let mut want = vec![cls];
    want.extend(&q);
    want.push(sep);
    want.extend(&d);
    want.push(sep);
    assert_eq!(e.ids, want);
    let types: Vec<u32> = (0..want.len()).map(|i| (i > q.len() + 1) as u32).collect();
    assert_eq!(e.type_ids, types);
    // cut to 20 tokens: the query and the three special tokens stay, the document is cut
    let short =
        PairEncoder::from_file(&path, TemplateStyle::Encoder, 20, PaddingSide::Right).unwrap();
    let t = short.encode_pair(query, doc).unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), 20);
    assert_eq!(&t.ids[1..1 + q.len()], &q[..]);
    assert_eq!(t.ids[q.len() + 1], sep);
    assert_eq!(&t.ids[q.len() + 2..19], &d[..19 - q.len() - 2]);
    assert_eq!(t.ids[19], sep);
    // a query longer than the limit is an error
    let tiny =
        PairEncoder::from_file(&path, TemplateStyle::Encoder, 6, PaddingSide::Right).unwrap();
    assert!(tiny.encode_pair(query, doc).is_err());
}
