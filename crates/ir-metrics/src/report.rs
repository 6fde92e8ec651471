//! Output in trec_eval's text format and as JSON.

use crate::eval::Evaluation;
use std::fmt::Write;

/// trec_eval's format: `measure<TAB>qid<TAB>value` with the name left-aligned to 22 columns
/// and 4 decimals; per-query lines (if `per_query`) then the `all` lines, measure by measure
/// as trec_eval prints them.
pub fn trec_eval_text(e: &Evaluation, per_query: bool) -> String {
    let mut out = String::new();
    for (i, m) in e.measures.iter().enumerate() {
        let name = m.trec_name();
        if per_query {
            for (qid, v) in &e.per_query {
                let _ = writeln!(out, "{name:<22}\t{qid}\t{:.4}", v[i]);
            }
        }
        let _ = writeln!(out, "{name:<22}\tall\t{:.4}", e.means[i]);
    }
    out
}

/// JSON: `{"measures": [...], "means": {name: value}, "per_query": {qid: {name: value}}}`
/// with names in ir_measures spelling and full precision.
pub fn json(e: &Evaluation, per_query: bool) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let names: Vec<String> = e.measures.iter().map(|m| m.to_string()).collect();
    let means: Map<String, Value> = names
        .iter()
        .cloned()
        .zip(e.means.iter().map(|&v| json!(v)))
        .collect();
    let mut obj = json!({ "measures": names, "num_queries": e.num_queries(), "means": means });
    if per_query {
        let pq: Map<String, Value> = e
            .per_query
            .iter()
            .map(|(q, v)| {
                let row: Map<String, Value> = names
                    .iter()
                    .cloned()
                    .zip(v.iter().map(|&x| json!(x)))
                    .collect();
                (q.clone(), Value::Object(row))
            })
            .collect();
        obj["per_query"] = Value::Object(pq);
    }
    obj
}
