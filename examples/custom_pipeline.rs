//! A user's own encoder behind `SequenceEncoder`, with the ranking head, loss, trainer and
//! reranker of `rank-heads` around it.
//!
//! The encoder here is deliberately small (token embeddings, each token multiplied by the mean
//! of the pair, one linear layer); any Burn module that maps a token batch to hidden states
//! works the same way. It is trained for a few steps to prefer documents that share words with
//! the query, then reranks three documents.
//!
//! ```sh
//! cargo run --release --example custom_pipeline
//! ```
//! The GPT-NeoX tokenizer is `tokenizers/gpt-neox-20b/tokenizer.json`, found by the data lookup
//! order (`docs/data.md`).

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation};
use rank_heads::{
    CrossEncoder, PaddingSide, PairEncoder, Pooling, RankError, RankLoss, Reranker,
    SequenceEncoder, TemplateStyle, TokenBatch, TrainConfig, Trainer, Warmup,
};

/// The user's encoder: embeddings, one position-wise layer, and a query/document interaction
/// (each token times the mean of the pair).
#[derive(Module, Debug)]
struct TinyEncoder<B: Backend> {
    embed: Embedding<B>,
    mix: Linear<B>,
}

impl<B: Backend> TinyEncoder<B> {
    fn new(vocab: usize, hidden: usize, device: &B::Device) -> Self {
        TinyEncoder {
            embed: EmbeddingConfig::new(vocab, hidden).init(device),
            mix: LinearConfig::new(2 * hidden, hidden).init(device),
        }
    }
}

impl<B: Backend> SequenceEncoder<B> for TinyEncoder<B> {
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        let [b, l] = batch.input_ids.dims();
        let h = self.embed.forward(batch.input_ids.clone()); // [b, l, H]
        let m = batch.attention_mask.clone().float().reshape([b, l, 1]);
        let mean = (h.clone() * m.clone()).sum_dim(1) / m.sum_dim(1).clamp_min(1.0); // [b, 1, H]
        let ctx = mean.expand([b, l, self.hidden_size()]);
        // a multiplicative interaction: how much each token agrees with the whole pair
        Ok(activation::gelu(
            self.mix.forward(Tensor::cat(vec![h.clone(), h * ctx], 2)),
        ))
    }

    fn hidden_size(&self) -> usize {
        self.embed.weight.dims()[1]
    }
}

type B = NdArray;
type AD = Autodiff<NdArray>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokenizer = rankmamba::models::neox_tokenizer()?;
    let pairs = PairEncoder::from_file(
        &tokenizer,
        TemplateStyle::Decoder {
            template: rank_heads::PAPER_DECODER_TEMPLATE.into(),
            eos_id: 0,
        },
        64,
        PaddingSide::Right,
    )?;
    let dev = NdArrayDevice::default();
    AD::seed(&dev, 1);
    let model = CrossEncoder::new(
        TinyEncoder::<AD>::new(50_280, 32, &dev),
        Pooling::Mean,
        0.0,
        &dev,
    );

    // Training groups: the positive repeats the query's topic word, the negatives do not.
    let topics = ["ocean", "volcano", "piano", "comet", "glacier", "violin"];
    let steps = std::env::var("EXAMPLE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut batches = |i: usize| -> Result<TokenBatch<AD>, RankError> {
        let t = topics[i % topics.len()];
        let o1 = topics[(i + 1) % topics.len()];
        let o2 = topics[(i + 2) % topics.len()];
        let query = format!("facts about the {t}");
        let docs = [
            format!("the {t} is a well studied {t}"),
            format!("the {o1} is a well studied {o1}"),
            format!("the {o2} is a well studied {o2}"),
        ];
        let rows: Vec<(&str, &str)> = docs.iter().map(|d| (query.as_str(), d.as_str())).collect();
        Ok(pairs.encode_batch(&rows)?.to_tensors(&dev))
    };
    let config = TrainConfig {
        lr: 3e-2,
        total_steps: steps,
        warmup: Warmup::Steps(5),
        group_size: 3,
        loss: RankLoss::Lce,
        progress: false,
        log_every: steps,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, config, dev)?;
    let report = trainer.train(None, &mut batches, None)?;
    println!(
        "trained {} steps, last loss {:.4}",
        report.steps, report.last_loss
    );

    let model: CrossEncoder<B, TinyEncoder<B>> = trainer.model.valid();
    let reranker = Reranker {
        model: &model,
        encoder: &pairs,
        batch_size: 8,
        device: dev,
    };
    let docs = [
        "a well studied comet",
        "the violin is a well studied violin",
        "a well studied ocean",
    ];
    for (i, score) in reranker.rerank("facts about the violin", &docs)? {
        println!("{score:8.3}  {}", docs[i]);
    }
    Ok(())
}
