//! trec_eval's judgement groups, `-R qrels_jg` (get_qrels_jg.c, form_res_rels_jg.c) and the
//! measures that read them: `map_avgjg`, `P_avgjg`, `Rprec_mult_avgjg` (the `qrels_jg` set,
//! with `runid` and `num_q`).
//!
//! A `qrels_jg` file is a qrels file whose second column names the judgement group (the user
//! who judged) instead of being ignored: `qid jg docid grade`. Each measure is computed for the
//! run against each judgement group of a query separately, then averaged over the query's
//! groups (a plain sum when there is one), then over queries.

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, ranked_grades};
use crate::measure::{parse_doubles, parse_long_cutoffs};
use crate::qrels::QueryQrels;
use crate::run::{QueryRun, Run};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

/// Judgements with judgement groups (trec_eval `-R qrels_jg`): query id -> judgement group ->
/// judgements. Queries and groups in byte order of their ids, as trec_eval sorts them.
#[derive(Debug, Clone, Default)]
pub struct QrelsJg {
    queries: BTreeMap<String, BTreeMap<String, QueryQrels>>,
}

impl QrelsJg {
    /// Read a `qrels_jg` file (`-` reads standard input; gzip data is decompressed).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name)
    }

    /// Parse `qrels_jg` text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref())
    }

    /// Parse a `qrels_jg` file from any reader; `name` is used in error messages.
    ///
    /// Format (trec_eval's get_qrels_jg.c): four whitespace-separated fields
    /// `qid jg docid grade` per line, `grade` an integer. Lines whose first field starts with
    /// `#` are comments and blank lines are skipped (as [`crate::Qrels`] does; trec_eval skips
    /// a comment line only when `#` is its first character). A document judged twice within
    /// one (query, group) is an error, as in trec_eval; the same document may be judged by
    /// several groups.
    pub fn from_reader(reader: impl Read, name: &Path) -> Result<Self> {
        let mut queries: BTreeMap<String, BTreeMap<String, QueryQrels>> = BTreeMap::new();
        crate::input::for_each_line(reader, name, |line_no, line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if fields.first().is_none_or(|f| f.starts_with('#')) {
                return Ok(());
            }
            let [qid, jg, docid, grade] = fields[..] else {
                return Err(Error::parse(
                    name,
                    line_no,
                    format!(
                        "expected 4 fields `qid jg docid grade`, found {}",
                        fields.len()
                    ),
                ));
            };
            let grade: i64 = grade.parse().map_err(|_| {
                Error::parse(
                    name,
                    line_no,
                    format!("relevance grade must be an integer, found {grade:?}"),
                )
            })?;
            let group = queries
                .entry(qid.to_string())
                .or_default()
                .entry(jg.to_string())
                .or_default();
            if let Some(first_line) = group.insert(docid, grade, line_no) {
                return Err(Error::Duplicate {
                    path: name.to_path_buf(),
                    line: line_no,
                    first_line,
                    qid: format!("{qid} (judgement group {jg})"),
                    docid: docid.to_string(),
                });
            }
            Ok(())
        })?;
        for groups in queries.values_mut() {
            for g in groups.values_mut() {
                g.finish();
            }
        }
        Ok(QrelsJg { queries })
    }

    /// The judgement groups of one query, in byte order of their names.
    pub fn get(&self, qid: &str) -> Option<&BTreeMap<String, QueryQrels>> {
        self.queries.get(qid)
    }

    /// Query ids in byte order.
    pub fn qids(&self) -> impl Iterator<Item = &str> {
        self.queries.keys().map(String::as_str)
    }

    /// Number of judged queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when there are no queries.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// A measure of trec_eval's `qrels_jg` set.
#[derive(Debug, Clone, PartialEq)]
pub enum JgMeasure {
    /// `runid`: the run's tag (in the `all` block only).
    RunId,
    /// `num_q`: the number of queries (in the `all` block only).
    NumQ,
    /// `map_avgjg`: average precision, averaged over judgement groups.
    MapAvgjg,
    /// `P_avgjg`: precision at each cutoff (ascending), averaged over judgement groups.
    PAvgjg(Vec<usize>),
    /// `Rprec_mult_avgjg`: precision at each multiple of R (ascending), averaged over
    /// judgement groups.
    RprecMultAvgjg(Vec<f64>),
}

const P_AVGJG_DEFAULT: [usize; 9] = [5, 10, 15, 20, 30, 100, 200, 500, 1000];
const RPREC_MULT_AVGJG_DEFAULT: [f64; 10] = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0];

impl JgMeasure {
    /// trec_eval's printed names of this measure's values.
    pub fn names(&self) -> Vec<String> {
        match self {
            JgMeasure::RunId => vec!["runid".into()],
            JgMeasure::NumQ => vec!["num_q".into()],
            JgMeasure::MapAvgjg => vec!["map_avgjg".into()],
            JgMeasure::PAvgjg(cuts) => cuts.iter().map(|k| format!("P_avgjg_{k}")).collect(),
            JgMeasure::RprecMultAvgjg(xs) => xs
                .iter()
                .map(|x| format!("Rprec_mult_avgjg_{x:.2}"))
                .collect(),
        }
    }

    fn rank(&self) -> usize {
        match self {
            JgMeasure::RunId => 0,
            JgMeasure::NumQ => 1,
            JgMeasure::MapAvgjg => 2,
            JgMeasure::PAvgjg(_) => 3,
            JgMeasure::RprecMultAvgjg(_) => 4,
        }
    }
}

/// Parse trec_eval `-m` arguments for `-R qrels_jg`: `qrels_jg` (the set: `runid`, `num_q`,
/// `map_avgjg`, `P_avgjg`, `Rprec_mult_avgjg`), or those names, `P_avgjg.5,10` (cutoffs read
/// as C's `atol`, sorted, positive, no duplicates) and `Rprec_mult_avgjg.0.5,1` (sorted, no
/// duplicates). As trec_eval: each measure once, in trec_eval's order, with the parameters of
/// its first parameterised mention. Other measures are an error: trec_eval cannot compute
/// them from judgement groups.
pub fn parse_jg_measures<S: AsRef<str>>(names: &[S]) -> Result<Vec<JgMeasure>> {
    let mut out: Vec<JgMeasure> = Vec::new();
    let mut explicit = [false; 5];
    for n in names {
        let n = n.as_ref().trim();
        let (base, params) = match n.split_once('.') {
            Some((b, p)) => (b, Some(p)),
            None => (n, None),
        };
        if params == Some("") {
            return Err(Error::Measure(n.into(), "empty parameter list".into()));
        }
        let ms = match (base, params) {
            ("qrels_jg", None) => vec![
                JgMeasure::RunId,
                JgMeasure::NumQ,
                JgMeasure::MapAvgjg,
                JgMeasure::PAvgjg(P_AVGJG_DEFAULT.to_vec()),
                JgMeasure::RprecMultAvgjg(RPREC_MULT_AVGJG_DEFAULT.to_vec()),
            ],
            ("runid", None) => vec![JgMeasure::RunId],
            ("num_q", None) => vec![JgMeasure::NumQ],
            ("map_avgjg", None) => vec![JgMeasure::MapAvgjg],
            ("P_avgjg", None) => vec![JgMeasure::PAvgjg(P_AVGJG_DEFAULT.to_vec())],
            ("P_avgjg", Some(p)) => vec![JgMeasure::PAvgjg(parse_long_cutoffs(n, p)?)],
            ("Rprec_mult_avgjg", None) => {
                vec![JgMeasure::RprecMultAvgjg(RPREC_MULT_AVGJG_DEFAULT.to_vec())]
            }
            ("Rprec_mult_avgjg", Some(p)) => {
                let mut xs = parse_doubles(p).ok_or_else(|| {
                    Error::Measure(n.into(), format!("levels must be numbers, found {p:?}"))
                })?;
                xs.sort_by(f64::total_cmp);
                if xs.windows(2).any(|w| w[0] == w[1]) {
                    return Err(Error::Measure(n.into(), "duplicate cutoffs".into()));
                }
                vec![JgMeasure::RprecMultAvgjg(xs)]
            }
            ("qrels_jg" | "runid" | "num_q" | "map_avgjg", Some(_)) => {
                return Err(Error::Measure(n.into(), "takes no parameters".into()));
            }
            _ => {
                return Err(Error::Measure(
                    n.into(),
                    "with judgement groups (-R qrels_jg) trec_eval computes only qrels_jg, \
                     runid, num_q, map_avgjg, P_avgjg and Rprec_mult_avgjg"
                        .into(),
                ));
            }
        };
        for m in ms {
            let r = m.rank();
            match out.iter_mut().find(|o| o.rank() == r) {
                // the first parameters given win (trec_eval's meas_arg lookup)
                Some(o) if params.is_some() && !explicit[r] => {
                    *o = m;
                    explicit[r] = true;
                }
                Some(_) => {}
                None => {
                    explicit[r] = params.is_some();
                    out.push(m);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid("no measure requested".into()));
    }
    out.sort_by_key(JgMeasure::rank);
    Ok(out)
}

/// Per-query values and summaries of an evaluation with judgement groups.
#[derive(Debug, Clone)]
pub struct JgEvaluation {
    /// The measures, in trec_eval's order.
    pub measures: Vec<JgMeasure>,
    /// trec_eval's printed name of each value (`P_avgjg_5`, ...), `runid` and `num_q` excluded.
    pub names: Vec<String>,
    /// Query id -> one value per name. Queries in byte order of their ids.
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// The mean over queries of each value.
    pub means: Vec<f64>,
    /// trec_eval's `runid`: the tag of the run's last line.
    pub run_id: String,
}

impl JgEvaluation {
    /// Number of queries averaged over.
    pub fn num_queries(&self) -> usize {
        self.per_query.len()
    }

    /// trec_eval's text output, byte for byte as `trec_eval -R qrels_jg [-q] -m ...` prints
    /// it: with `per_query`, each query's values, then the `all` block (`runid`, `num_q`,
    /// then the means).
    pub fn trec_eval_text(&self, per_query: bool) -> String {
        let mut out = String::new();
        if per_query {
            for (qid, values) in &self.per_query {
                for (name, v) in self.names.iter().zip(values) {
                    let _ = writeln!(out, "{name:<22}\t{qid}\t{v:6.4}");
                }
            }
        }
        if self.measures.contains(&JgMeasure::RunId) {
            let _ = writeln!(out, "{:<22}\tall\t{}", "runid", self.run_id);
        }
        if self.measures.contains(&JgMeasure::NumQ) {
            let _ = writeln!(out, "{:<22}\tall\t{}", "num_q", self.num_queries());
        }
        for (name, v) in self.names.iter().zip(&self.means) {
            let _ = writeln!(out, "{name:<22}\tall\t{v:6.4}");
        }
        out
    }
}

/// Evaluate `run` against judgement groups (trec_eval `-R qrels_jg`). Queries as
/// [`crate::evaluate`]: those of both run and qrels, or with `opts.complete` (`-c`) every
/// qrels query, one missing from the run being ranked as trec_eval ranks it (one unjudged
/// document). `opts.relevance_level` (`-l`), `judged_only` (`-J`) and `max_docs` (`-M`)
/// apply to each group's ranking as trec_eval applies them.
pub fn evaluate_jg(
    qrels: &QrelsJg,
    run: &Run,
    measures: &[JgMeasure],
    opts: &EvalOptions,
) -> Result<JgEvaluation> {
    if measures.is_empty() {
        return Err(Error::Invalid("no measure requested".into()));
    }
    if opts.relevance_level < 0 {
        return Err(Error::Invalid(format!(
            "relevance level must be >= 0, got {}",
            opts.relevance_level
        )));
    }
    if opts.max_docs == Some(0) {
        return Err(Error::Invalid("max_docs must be positive".into()));
    }
    let names: Vec<String> = measures
        .iter()
        .filter(|m| !matches!(m, JgMeasure::RunId | JgMeasure::NumQ))
        .flat_map(JgMeasure::names)
        .collect();
    let mut per_query = BTreeMap::new();
    for (qid, groups) in &qrels.queries {
        let bogus;
        let ranking = match run.get(qid) {
            Some(r) => r,
            None if opts.complete => {
                let mut b = QueryRun::new(qid);
                b.push_entry("ceci_nest_pas_un_docno", 1.0, 1);
                bogus = b;
                &bogus
            }
            None => continue,
        };
        let ranked: Vec<Vec<i64>> = groups
            .values()
            .map(|g| ranked_grades(g, ranking, opts.max_docs, opts.judged_only))
            .collect();
        let groups: Vec<&QueryQrels> = groups.values().collect();
        let mut values = Vec::with_capacity(names.len());
        for m in measures {
            match m {
                JgMeasure::RunId | JgMeasure::NumQ => {}
                JgMeasure::MapAvgjg => values.push(map_avgjg(&groups, &ranked, opts)),
                JgMeasure::PAvgjg(cuts) => {
                    values.extend(p_avgjg(&ranked, cuts, opts.relevance_level))
                }
                JgMeasure::RprecMultAvgjg(xs) => {
                    values.extend(rprec_mult_avgjg(&groups, &ranked, xs, opts))
                }
            }
        }
        per_query.insert(qid.clone(), values);
    }
    let n = per_query.len();
    let means = (0..names.len())
        .map(|i| {
            let sum = per_query.values().fold(0.0, |a, v: &Vec<f64>| a + v[i]);
            if n > 0 { sum / n as f64 } else { sum }
        })
        .collect();
    Ok(JgEvaluation {
        measures: measures.to_vec(),
        names,
        per_query,
        means,
        run_id: run.run_id().to_string(),
    })
}

/// trec_eval's output for `run` with `-R qrels_jg`, byte for byte (see
/// [`JgEvaluation::trec_eval_text`]). As trec_eval, it is an error when no query has both
/// results and judgements.
pub fn trec_eval_jg_output(
    qrels: &QrelsJg,
    run: &Run,
    measures: &[JgMeasure],
    opts: &EvalOptions,
    per_query: bool,
) -> Result<String> {
    let e = evaluate_jg(qrels, run, measures, opts)?;
    if e.num_queries() == 0 {
        return Err(Error::Invalid(
            "no queries with both results and relevance info".into(),
        ));
    }
    Ok(e.trec_eval_text(per_query))
}

/// Average over groups as trec_eval does: divided only when there are several.
fn per_group_mean(v: &mut [f64], num_jgs: usize) {
    if num_jgs > 1 {
        for x in v {
            *x /= num_jgs as f64;
        }
    }
}

/// m_map_avgjg.c
fn map_avgjg(groups: &[&QueryQrels], ranked: &[Vec<i64>], opts: &EvalOptions) -> f64 {
    let level = opts.relevance_level;
    let mut value = 0.0;
    for (g, r) in groups.iter().zip(ranked) {
        let (mut rel_so_far, mut sum) = (0u64, 0.0f64);
        for (i, &grade) in r.iter().enumerate() {
            if grade >= level {
                rel_so_far += 1;
                sum += rel_so_far as f64 / (i + 1) as f64;
            }
        }
        if rel_so_far > 0 {
            value += sum / g.num_relevant(level) as f64;
        }
    }
    let mut v = [value];
    per_group_mean(&mut v, groups.len());
    v[0]
}

/// m_P_avgjg.c
fn p_avgjg(ranked: &[Vec<i64>], cuts: &[usize], level: i64) -> Vec<f64> {
    let mut values = vec![0.0; cuts.len()];
    for r in ranked {
        for (v, &k) in values.iter_mut().zip(cuts) {
            let rel = r[..k.min(r.len())].iter().filter(|&&g| g >= level).count();
            *v += rel as f64 / k as f64;
        }
    }
    per_group_mean(&mut values, ranked.len());
    values
}

/// m_Rprec_mult_avgjg.c
fn rprec_mult_avgjg(
    groups: &[&QueryQrels],
    ranked: &[Vec<i64>],
    xs: &[f64],
    opts: &EvalOptions,
) -> Vec<f64> {
    let level = opts.relevance_level;
    let mut values = vec![0.0; xs.len()];
    for (g, r) in groups.iter().zip(ranked) {
        let num_rel = g.num_relevant(level) as f64;
        let num_ret = r.len() as i64;
        let num_rel_ret = r.iter().filter(|&&x| x >= level).count() as i64;
        let cutoffs: Vec<i64> = xs.iter().map(|x| (x * num_rel + 0.9) as i64).collect();
        let mut cur = xs.len() as isize - 1;
        while cur >= 0 && cutoffs[cur as usize] > num_ret {
            values[cur as usize] += num_rel_ret as f64 / cutoffs[cur as usize] as f64;
            cur -= 1;
        }
        let mut rel_so_far = num_rel_ret;
        let mut i = num_ret;
        while i > 0 && rel_so_far > 0 {
            let precis = rel_so_far as f64 / i as f64;
            while cur >= 0 && i == cutoffs[cur as usize] {
                values[cur as usize] += precis;
                cur -= 1;
            }
            if r[i as usize - 1] >= level {
                rel_so_far -= 1;
            }
            i -= 1;
        }
    }
    per_group_mean(&mut values, ranked.len());
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels() -> QrelsJg {
        // two groups for q1: A judges d1 and d3 relevant, B judges d2 relevant
        QrelsJg::from_str_named(
            "# judgement groups\nq1 A d1 1\nq1 A d2 0\nq1 A d3 1\n\nq1 B d2 2\nq1 B d1 0\n",
            "jg",
        )
        .unwrap()
    }

    #[test]
    fn averages_over_judgement_groups() {
        let run = Run::from_str_named(
            "q1 Q0 d1 1 3.0 r\nq1 Q0 d2 2 2.0 r\nq1 Q0 d4 3 1.0 r\n",
            "run",
        )
        .unwrap();
        let measures =
            parse_jg_measures(&["map_avgjg", "P_avgjg.2,1", "Rprec_mult_avgjg.1,2"]).unwrap();
        let e = evaluate_jg(&qrels(), &run, &measures, &EvalOptions::default()).unwrap();
        assert_eq!(
            e.names,
            [
                "map_avgjg",
                "P_avgjg_1",
                "P_avgjg_2",
                "Rprec_mult_avgjg_1.00",
                "Rprec_mult_avgjg_2.00"
            ]
        );
        let v = &e.per_query["q1"];
        // A: ranks 1,0,- -> AP = (1/1)/2 = 0.5; B: 0,2,- -> AP = (1/2)/1 = 0.5
        assert_eq!(v[0], 0.5);
        // P@1: A 1, B 0 -> 0.5; P@2: A 1/2, B 1/2 -> 0.5
        assert_eq!((v[1], v[2]), (0.5, 0.5));
        // Rprec_mult 1: A R=2, P@2 = 1/2; B R=1, P@1 = 0 -> 0.25.
        // 2: A cutoff 4 > 3 retrieved: 1/4; B P@2 = 1/2 -> 0.375
        assert_eq!((v[3], v[4]), (0.25, 0.375));
        let text = e.trec_eval_text(false);
        assert!(
            text.starts_with("map_avgjg             \tall\t0.5000\n"),
            "{text}"
        );
    }

    #[test]
    fn output_layout_and_complete() {
        let run = Run::from_str_named("q2 Q0 d1 1 3.0 tag\n", "run").unwrap();
        let measures = parse_jg_measures(&["qrels_jg", "P_avgjg.1"]).unwrap();
        assert_eq!(measures.len(), 5);
        assert_eq!(measures[3], JgMeasure::PAvgjg(vec![1]));
        // q1 is not in the run: without -c no query is left
        assert!(
            trec_eval_jg_output(&qrels(), &run, &measures, &EvalOptions::default(), true).is_err()
        );
        let opts = EvalOptions {
            complete: true,
            ..EvalOptions::default()
        };
        let out = trec_eval_jg_output(&qrels(), &run, &measures, &opts, true).unwrap();
        let want = "map_avgjg             \tq1\t0.0000\n\
                    P_avgjg_1             \tq1\t0.0000\n";
        assert!(out.starts_with(want), "{out}");
        assert!(out.contains("runid                 \tall\ttag\nnum_q                 \tall\t1\n"));
    }

    #[test]
    fn errors() {
        let e = QrelsJg::from_str_named("q1 A d1 1\nq1 A d1 0\n", "f").unwrap_err();
        assert!(e.to_string().starts_with("f:2:"), "{e}");
        let e = QrelsJg::from_str_named("q1 A d1\n", "f").unwrap_err();
        assert!(e.to_string().starts_with("f:1:"), "{e}");
        assert!(QrelsJg::from_str_named("q1 A d1 1\nq1 B d1 0\n", "f").is_ok());
        assert!(parse_jg_measures(&["map"]).is_err());
        assert!(parse_jg_measures(&["P_avgjg.0"]).is_err());
        assert!(parse_jg_measures(&["P_avgjg.5,5"]).is_err());
    }
}
