//! Output in trec_eval's text format (byte for byte as trec_eval 10.0) and as JSON.

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, Evaluation, evaluate};
use crate::measure::{Kind, Measure, print_rank};
use crate::qrels::Qrels;
use crate::run::Run;
use crate::zscore::ZScores;
use std::fmt::Write;

/// trec_eval's output for `run`, byte for byte: what `trec_eval [-q] [-c] [-l N] [-M N] [-J]
/// -m ... qrels run` prints (see [`trec_eval_text`]). Pass the measures of
/// [`crate::parse_measure_list`] (e.g. `["official"]`, trec_eval's default, or
/// `["all_trec"]`). As trec_eval, it is an error when no query has both results and
/// judgements.
pub fn trec_eval_output(
    qrels: &Qrels,
    run: &Run,
    measures: &[Measure],
    opts: &EvalOptions,
    per_query: bool,
) -> Result<String> {
    let e = evaluate(qrels, run, measures, opts)?;
    if e.num_queries() == 0 {
        return Err(Error::Invalid(
            "no queries with both results and relevance info".into(),
        ));
    }
    Ok(trec_eval_text(&e, per_query))
}

/// C's `%6.4f`.
fn fixed4(out: &mut String, v: f64) {
    if v.is_nan() {
        let _ = write!(
            out,
            "{:>6}",
            if v.is_sign_negative() { "-nan" } else { "nan" }
        );
    } else if v.is_infinite() {
        let _ = write!(out, "{:>6}", if v < 0.0 { "-inf" } else { "inf" });
    } else {
        let _ = write!(out, "{v:6.4}");
    }
}

/// C's `(long) value` printed with `%ld`.
fn long(out: &mut String, v: f64) {
    let _ = write!(out, "{}", v as i64);
}

/// trec_eval's text format, byte for byte as trec_eval 10.0 prints it: `name<TAB>qid<TAB>value`
/// with the name left-aligned to 22 columns.
///
/// - Order: trec_eval's measure table (`runid`, `num_q`, `num_ret`, ..., `map`, `gm_map`, ...,
///   `unj`), cutoffs and levels ascending, whatever the order given; measures trec_eval lacks
///   (`RR@10`, `Judged@10`, overrides such as `P(rel=2)@10`) follow, in the order given.
/// - With `per_query` (`-q`): each query's block (queries in id order), then the `all` block.
///   `runid`, `num_q`, `gm_map` and `gm_bpref` are printed in the `all` block only,
///   `relstring` in the query blocks only (as `'0012-.'`).
/// - Values: `%6.4f`; the counts `num_q`, `num_ret`, `num_rel`, `num_rel_ret` and
///   `num_nonrel_judged_ret` as integers; `runid` as the run's tag.
pub fn trec_eval_text(e: &Evaluation, per_query: bool) -> String {
    render(e, per_query, false)
}

/// trec_eval's `-Z` output, byte for byte: what `trec_eval -Z Zmean_file [-q] ...` prints.
/// `e` is an evaluation standardised by [`ZScores::apply`]. As [`trec_eval_text`], but every
/// numeric measure is printed as `Z<name>` (the name left-aligned to 22 columns after the `Z`)
/// with `%6.4f`, counts included; `runid` and `relstring` are printed as without `-Z`.
pub fn trec_eval_zscore_text(e: &Evaluation, per_query: bool) -> String {
    render(e, per_query, true)
}

/// trec_eval's `-Z Zmean_file` output for `run`: [`trec_eval_output`] with the per-query
/// values standardised by `zscores` (see [`ZScores::apply`]) and printed by
/// [`trec_eval_zscore_text`].
pub fn trec_eval_zscore_output(
    qrels: &Qrels,
    run: &Run,
    measures: &[Measure],
    opts: &EvalOptions,
    per_query: bool,
    zscores: &ZScores,
) -> Result<String> {
    let e = evaluate(qrels, run, measures, opts)?;
    if e.num_queries() == 0 {
        return Err(Error::Invalid(
            "no queries with both results and relevance info".into(),
        ));
    }
    let z = zscores.apply(&e, qrels, opts);
    Ok(trec_eval_zscore_text(&z, per_query))
}

fn render(e: &Evaluation, per_query: bool, zscore: bool) -> String {
    let mut order: Vec<usize> = (0..e.measures.len()).collect();
    order.sort_by_key(|&i| print_rank(&e.measures[i]));
    let names: Vec<String> = e.measures.iter().map(Measure::trec_name).collect();
    let mut out = String::new();
    let line = |out: &mut String, i: usize, qid: &str| {
        let _ = write!(out, "{:<22}\t{qid}\t", names[i]);
    };
    // `Z` in front of a numeric measure's name with -Z
    let zline = |out: &mut String, i: usize, qid: &str| {
        if zscore {
            out.push('Z');
        }
        line(out, i, qid);
    };
    if per_query {
        for (qid, values) in &e.per_query {
            for &i in &order {
                let m = &e.measures[i];
                let trec = m.family().is_some();
                match m.kind {
                    Kind::RunId | Kind::NumQ | Kind::GmMap | Kind::GmBpref if trec => continue,
                    Kind::RelString if trec => {
                        line(&mut out, i, qid);
                        let s = e.strings.get(&(i, qid.clone())).map_or("", String::as_str);
                        let _ = write!(out, "'{s}'");
                    }
                    _ => {
                        zline(&mut out, i, qid);
                        if m.is_count() && !zscore {
                            long(&mut out, values[i]);
                        } else {
                            fixed4(&mut out, values[i]);
                        }
                    }
                }
                out.push('\n');
            }
        }
    }
    for &i in &order {
        let m = &e.measures[i];
        let trec = m.family().is_some();
        match m.kind {
            Kind::RelString if trec => continue,
            Kind::RunId if trec => {
                line(&mut out, i, "all");
                out.push_str(&e.run_id);
            }
            _ => {
                zline(&mut out, i, "all");
                if m.is_count() && !zscore {
                    long(&mut out, e.means[i]);
                } else {
                    fixed4(&mut out, e.means[i]);
                }
            }
        }
        out.push('\n');
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
