//! Parity with HF `transformers` (`MambaForCausalLM`, slow PyTorch path, float64) on the tiny
//! random checkpoints of `scripts/gen_mamba_fixtures.py`: hidden states, logits and parameter
//! gradients; both checkpoint layouts; bf16 storage; padded batches; save/load round trip.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use mamba_blocks::{MambaConfig, MambaForCausalLM, MambaModel};
use safetensors::SafeTensors;

type B = NdArray;
type AD = Autodiff<NdArray>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reference tensors of one fixture.
struct Outputs {
    bytes: Vec<u8>,
}

impl Outputs {
    fn open(name: &str) -> Self {
        let p = fixtures().join(name).join("outputs.safetensors");
        Outputs {
            bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        }
    }

    fn has(&self, key: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .names()
            .contains(&key)
    }

    fn f32(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap_or_else(|_| panic!("no `{key}`"));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (v, t.shape().to_vec())
    }

    fn ids<BB: Backend>(&self, key: &str, dev: &BB::Device) -> Tensor<BB, 2, Int> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap();
        let v: Vec<i64> = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let s = t.shape();
        Tensor::from_data(TensorData::new(v, [s[0], s[1]]), dev)
    }

    fn tensor<BB: Backend, const D: usize>(&self, key: &str, dev: &BB::Device) -> Tensor<BB, D> {
        let (v, s) = self.f32(key);
        Tensor::from_data(TensorData::new(v, s), dev)
    }
}

/// max |a - b| / max |b|: the error relative to the tensor's scale.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    err / scale
}

fn to_vec<BB: Backend, const D: usize>(t: Tensor<BB, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn check_forward(name: &str, tol: f32) {
    let dev = Default::default();
    let (model, config) =
        MambaForCausalLM::<B>::load_dir(&fixtures().join(name), &dev).expect("load");
    let out = Outputs::open(name);
    let ids = out.ids::<B>("input_ids", &dev);
    let hidden = model.backbone.forward(ids.clone(), None).unwrap();
    let logits = model.logits(hidden.clone());
    let (want_h, shape_h) = out.f32("hidden");
    let (want_l, shape_l) = out.f32("logits");
    assert_eq!(hidden.dims().to_vec(), shape_h);
    assert_eq!(logits.dims()[2], config.padded_vocab_size());
    assert_eq!(logits.dims().to_vec(), shape_l);
    let eh = rel_err(&to_vec(hidden), &want_h);
    let el = rel_err(&to_vec(logits), &want_l);
    eprintln!("{name}: hidden rel err {eh:.2e}, logits rel err {el:.2e}");
    assert!(eh < tol && el < tol, "{name}: hidden {eh:e}, logits {el:e}");
}

#[test]
fn tiny_hf_layout_matches_transformers() {
    check_forward("tiny", 1e-4);
}

#[test]
fn odd_sizes_and_options_match_transformers() {
    // hidden 36, state 7, conv 3, dt rank 5, untied head, in/out bias, no conv bias.
    check_forward("odd", 1e-4);
}

#[test]
fn original_state_spaces_layout_matches_transformers() {
    // `backbone.embedding`, d_model / n_layer / ssm_cfg config, vocab 509 padded to 512.
    let c = MambaConfig::from_file(&fixtures().join("tiny-original/config.json")).unwrap();
    assert_eq!((c.vocab_size, c.padded_vocab_size()), (509, 512));
    check_forward("tiny-original", 1e-4);
}

#[test]
fn bf16_checkpoint_is_converted() {
    // Reference computed on the bf16-rounded weights: conversion must be exact.
    check_forward("tiny-bf16", 1e-4);
}

fn check_grads(name: &str) {
    let dev = Default::default();
    let (model, _) = MambaForCausalLM::<AD>::load_dir(&fixtures().join(name), &dev).unwrap();
    let out = Outputs::open(name);
    let ids = out.ids::<AD>("input_ids", &dev);
    let proj: Tensor<AD, 3> = out.tensor("proj", &dev);
    let loss = (model.forward(ids, None).unwrap() * proj).sum();
    let (want_loss, _) = out.f32("loss");
    let got_loss = to_vec(loss.clone())[0];
    assert!(
        (got_loss - want_loss[0]).abs() <= 1e-4 * want_loss[0].abs().max(1.0),
        "loss {got_loss} vs {}",
        want_loss[0]
    );
    let grads = loss.backward();
    let layer = |i: usize| &model.backbone.layers[i];
    // (fixture key, gradient as [rows, cols] in PyTorch layout)
    let mut checked = 0;
    let mut worst = 0f32;
    let mut check = |key: &str, got: Option<Vec<f32>>| {
        if !out.has(key) {
            return;
        }
        let got = got.unwrap_or_else(|| panic!("no gradient for {key}"));
        let (want, _) = out.f32(key);
        let e = rel_err(&got, &want);
        worst = worst.max(e);
        assert!(e < 1e-4, "{name} {key}: rel err {e:e}");
        checked += 1;
    };
    let g1 = |p: &burn::module::Param<Tensor<AD, 1>>| p.grad(&grads).map(to_vec);
    let g2 = |p: &burn::module::Param<Tensor<AD, 2>>| p.grad(&grads).map(to_vec);
    // Burn's Linear weight is [in, out]: transpose to PyTorch's [out, in].
    let lin =
        |p: &burn::module::Param<Tensor<AD, 2>>| p.grad(&grads).map(|g| to_vec(g.transpose()));
    let g3 = |p: &burn::module::Param<Tensor<AD, 3>>| p.grad(&grads).map(to_vec);
    check(
        "grad.backbone.embeddings.weight",
        g2(&model.backbone.embeddings.weight),
    );
    check(
        "grad.backbone.layers.0.mixer.A_log",
        g2(&layer(0).mixer.a_log),
    );
    check("grad.backbone.layers.0.mixer.D", g1(&layer(0).mixer.d));
    check(
        "grad.backbone.layers.0.mixer.conv1d.weight",
        g3(&layer(0).mixer.conv1d.weight),
    );
    check(
        "grad.backbone.layers.0.mixer.x_proj.weight",
        lin(&layer(0).mixer.x_proj.weight),
    );
    check(
        "grad.backbone.layers.1.mixer.in_proj.weight",
        lin(&layer(1).mixer.in_proj.weight),
    );
    check(
        "grad.backbone.layers.1.mixer.dt_proj.weight",
        lin(&layer(1).mixer.dt_proj.weight),
    );
    check(
        "grad.backbone.layers.1.mixer.dt_proj.bias",
        layer(1).mixer.dt_proj.bias.as_ref().and_then(g1),
    );
    check(
        "grad.backbone.layers.1.mixer.out_proj.weight",
        lin(&layer(1).mixer.out_proj.weight),
    );
    check(
        "grad.backbone.layers.1.norm.weight",
        g1(&layer(1).norm.weight),
    );
    check(
        "grad.backbone.norm_f.weight",
        g1(&model.backbone.norm_f.weight),
    );
    eprintln!("{name}: {checked} gradients, worst rel err {worst:.2e}");
    assert!(checked >= 10, "only {checked} gradients checked");
}

#[test]
fn gradients_match_transformers() {
    check_grads("tiny");
    check_grads("odd");
}

#[test]
fn left_padded_batch_matches_transformers() {
    // transformers zeroes padded positions' inputs; with no in_proj bias its real positions
    // are exact under left padding, and so are ours (zero step size at padding).
    let dev = Default::default();
    let (model, _) = MambaModel::<B>::load_dir(&fixtures().join("tiny"), &dev).unwrap();
    let out = Outputs::open("tiny");
    let ids = out.ids::<B>("padded_ids", &dev);
    let mask = out.ids::<B>("padded_mask", &dev);
    let mask_v: Vec<i64> = mask.clone().into_data().convert::<i64>().to_vec().unwrap();
    let got = to_vec(model.forward(ids, Some(mask)).unwrap());
    let (want, shape) = out.f32("padded_hidden");
    let h = shape[2];
    let (g, w): (Vec<f32>, Vec<f32>) = got
        .chunks(h)
        .zip(want.chunks(h))
        .zip(&mask_v)
        .filter(|(_, m)| **m == 1)
        .flat_map(|((a, b), _)| a.iter().copied().zip(b.iter().copied()))
        .unzip();
    let e = rel_err(&g, &w);
    eprintln!("left-padded batch vs transformers: rel err {e:.2e}");
    assert!(e < 1e-4, "{e:e}");
}

/// The last real token's hidden state of every sequence, alone and in a padded batch.
#[test]
fn padding_is_an_exact_no_op_left_and_right() {
    let dev = Default::default();
    // The odd model has an in_proj bias: the case where zeroing inputs alone would leak.
    for name in ["tiny", "odd"] {
        let (model, config) = MambaModel::<B>::load_dir(&fixtures().join(name), &dev).unwrap();
        let seqs: [&[i64]; 3] = [&[5, 17, 3, 99, 42, 7, 8], &[250, 11], &[1, 2, 3, 4, 5]];
        let h = config.hidden_size;
        let alone: Vec<Vec<f32>> = seqs
            .iter()
            .map(|s| {
                let ids =
                    Tensor::<B, 2, Int>::from_data(TensorData::new(s.to_vec(), [1, s.len()]), &dev);
                let out = to_vec(model.forward(ids, None).unwrap());
                out[(s.len() - 1) * h..].to_vec()
            })
            .collect();
        let max_len = 9; // longer than every sequence: padding on both sides of each
        for left in [true, false] {
            let mut ids = vec![0i64; seqs.len() * max_len];
            let mut mask = vec![0i64; seqs.len() * max_len];
            for (i, s) in seqs.iter().enumerate() {
                let off = if left { max_len - s.len() } else { 0 };
                for (j, t) in s.iter().enumerate() {
                    ids[i * max_len + off + j] = *t;
                    mask[i * max_len + off + j] = 1;
                }
                // pad tokens that are not 0, so that a leak would show
                for j in 0..max_len {
                    if mask[i * max_len + j] == 0 {
                        ids[i * max_len + j] = 200 + j as i64;
                    }
                }
            }
            let ids =
                Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [seqs.len(), max_len]), &dev);
            let maskt =
                Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [seqs.len(), max_len]), &dev);
            let out = to_vec(model.forward(ids, Some(maskt)).unwrap());
            for (i, s) in seqs.iter().enumerate() {
                let last = if left { max_len - 1 } else { s.len() - 1 };
                let got = &out[(i * max_len + last) * h..(i * max_len + last + 1) * h];
                let e = got
                    .iter()
                    .zip(&alone[i])
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(e < 1e-5, "{name} left={left} seq {i}: max abs diff {e:e}");
            }
        }
    }
}

#[test]
fn save_then_load_round_trips() {
    let dev = Default::default();
    let (model, config) = MambaForCausalLM::<B>::load_dir(&fixtures().join("odd"), &dev).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    model.save_pretrained(&config, tmp.path()).unwrap();
    let (again, config2) = MambaForCausalLM::<B>::load_dir(tmp.path(), &dev).unwrap();
    assert_eq!(config, config2);
    let names = model_io_names(&tmp.path().join("model.safetensors"));
    assert!(
        names.contains(&"backbone.layers.0.mixer.A_log".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"lm_head.weight".to_string()));
    let a = model.into_record();
    let b = again.into_record();
    let (ma, mb) = (
        MambaForCausalLM::<B>::new(&config, &dev).load_record(a),
        MambaForCausalLM::<B>::new(&config, &dev).load_record(b),
    );
    let ids = Tensor::<B, 2, Int>::from_ints([[3, 1, 4, 1, 5, 9, 2, 6]], &dev);
    let (x, y) = (
        to_vec(ma.forward(ids.clone(), None).unwrap()),
        to_vec(mb.forward(ids, None).unwrap()),
    );
    assert_eq!(x, y, "reloaded model differs");
    // the tiny model has a tied head: nothing written for it
    let (tiny, tconf) = MambaForCausalLM::<B>::load_dir(&fixtures().join("tiny"), &dev).unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    tiny.save_pretrained(&tconf, tmp2.path()).unwrap();
    let names = model_io_names(&tmp2.path().join("model.safetensors"));
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "{names:?}");
    check_forward_dir(tmp2.path(), "tiny");
}

fn check_forward_dir(dir: &Path, reference: &str) {
    let dev = Default::default();
    let (model, _) = MambaForCausalLM::<B>::load_dir(dir, &dev).unwrap();
    let out = Outputs::open(reference);
    let logits = to_vec(
        model
            .forward(out.ids::<B>("input_ids", &dev), None)
            .unwrap(),
    );
    let (want, _) = out.f32("logits");
    let e = rel_err(&logits, &want);
    assert!(e < 1e-4, "{e:e}");
}

fn model_io_names(p: &Path) -> Vec<String> {
    let bytes = std::fs::read(p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.names().into_iter().map(String::from).collect()
}

#[test]
fn autodiff_model_valid_matches_inner() {
    // The Autodiff model's inference copy gives the same logits as the plain backend.
    let dev = Default::default();
    let (ad, _) = MambaForCausalLM::<AD>::load_dir(&fixtures().join("tiny"), &dev).unwrap();
    let (plain, _) = MambaForCausalLM::<B>::load_dir(&fixtures().join("tiny"), &dev).unwrap();
    let ids = Tensor::<B, 2, Int>::from_ints([[7, 8, 9]], &dev);
    let a = to_vec(ad.valid().forward(ids.clone(), None).unwrap());
    let b = to_vec(plain.forward(ids, None).unwrap());
    assert_eq!(a, b);
}
