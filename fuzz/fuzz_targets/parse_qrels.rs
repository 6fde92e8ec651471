#![no_main]
//! Any bytes: the qrels parser returns Ok or an error, never panics; written qrels parse back.
use ir_metrics::Qrels;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = Qrels::from_reader(data, Path::new("fuzz")) {
        let mut out = Vec::new();
        q.write_to(&mut out).unwrap();
        let back = Qrels::from_reader(&out[..], Path::new("back")).expect("written qrels must parse");
        assert_eq!(back.len(), q.len());
    }
});
