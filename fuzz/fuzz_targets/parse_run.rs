#![no_main]
//! Any bytes: the run parser returns Ok or an error, never panics; a parsed run written back
//! out parses again to the same number of entries, and evaluating it does not panic.
use ir_metrics::{EvalOptions, Measure, Qrels, Run, evaluate};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(run) = Run::from_reader(data, Path::new("fuzz")) {
        let mut out = Vec::new();
        run.write_to(&mut out).unwrap();
        let back = Run::from_reader(&out[..], Path::new("back")).expect("written run must parse");
        assert_eq!(back.num_entries(), run.num_entries());
        let qrels = Qrels::from_triples(run.queries().iter().flat_map(|q| q.iter().take(3).map(move |(d, _)| (q.qid(), d, 1)))).unwrap();
        let m: Vec<Measure> = ["nDCG@10", "AP", "RR@5", "bpref", "Rprec", "Judged@3"].iter().map(|s| Measure::parse(s).unwrap()).collect();
        let _ = evaluate(&qrels, &run, &m, &EvalOptions { judged_only: data.len() % 2 == 0, max_docs: Some(5), ..Default::default() }).unwrap();
    }
});
