//! End to end on real data and real weights: fine-tune all-MiniLM-L6-v2 as a cross-encoder on
//! SciFact train (BM25 hard negatives), rerank the BM25 candidates of SciFact test queries, and
//! check with trec_eval-exact nDCG@10 that training beats the untrained head. CI-sized settings
//! by default; `RANKMAMBA_E2E_{STEPS,QUERIES,DEPTH,MAXLEN}` enlarge them (`docs/results.md`).

use rankmamba::recipes::{MiniLmScifact, minilm_scifact};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn fine_tuned_minilm_beats_its_untrained_head_on_scifact() {
    let settings = MiniLmScifact {
        steps: env_usize("RANKMAMBA_E2E_STEPS", 80),
        test_queries: env_usize("RANKMAMBA_E2E_QUERIES", 50),
        depth: env_usize("RANKMAMBA_E2E_DEPTH", 20),
        max_length: env_usize("RANKMAMBA_E2E_MAXLEN", 96),
        ..MiniLmScifact::default()
    };
    let data = test_support::dataset("scifact");
    let minilm = test_support::minilm_dir();
    let r = minilm_scifact(&settings, &data, &minilm, None).unwrap();
    eprintln!("{settings:?}\n{r:?}");
    assert_eq!(r.queries, settings.test_queries);
    assert!(
        r.trained > r.untrained + 0.05,
        "fine-tuning did not help: untrained {:.4}, trained {:.4}",
        r.untrained,
        r.trained
    );
}
