//! trec_eval's `-Z Zmean_file`: per-query values standardised against the mean and standard
//! deviation of each (query, measure) in a reference file (get_zscores.c, convert_zscores.c).
//!
//! The file has one `qid measure_name mean stddev` line per (query, measure), fields separated
//! by whitespace. A query's value `v` of a measure becomes `(v - mean) / stddev`; with a
//! standard deviation of 0 it becomes 0 when `v == mean`; it becomes
//! [`MISSING_ZSCORE_VALUE`] (-1000000) when `v != mean` there, or when the file has no line
//! for the query and measure. Summaries (`all`) are then formed from the standardised values
//! as trec_eval forms them from the raw ones (means, sums for the counts, `num_q` the number
//! of queries, `gm_map`/`gm_bpref` the exponential of the mean of the standardised logs).

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, Evaluation, summarize};
use crate::measure::Kind;
use crate::qrels::Qrels;
use crate::trec_measures::MIN_GEO_MEAN;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::Read;
use std::path::Path;

/// trec_eval's `MISSING_ZSCORE_VALUE`: the value printed for a (query, measure) without a
/// usable mean and standard deviation.
pub const MISSING_ZSCORE_VALUE: f64 = -1_000_000.0;

/// The means and standard deviations of a `-Z` file: query id -> measure name -> (mean,
/// stddev).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZScores {
    queries: BTreeMap<String, BTreeMap<String, (f64, f64)>>,
}

impl ZScores {
    /// Read a z-score file (`-` reads standard input; gzip data is decompressed).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name)
    }

    /// Parse z-score text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref())
    }

    /// Parse a z-score file from any reader; `name` is used in error messages.
    ///
    /// Format (trec_eval's get_zscores.c): each line exactly four whitespace-separated fields
    /// `qid measure_name mean stddev`; a blank line or another number of fields is an error,
    /// as in trec_eval, and so is an empty file. `mean` and `stddev` must be numbers (trec_eval
    /// reads them with `atof`, which turns garbage into 0 silently). A (qid, measure) given
    /// twice is an error (trec_eval would use one of the two, unspecified which).
    pub fn from_reader(mut reader: impl Read, name: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|source| Error::Io {
            path: name.to_path_buf(),
            source,
        })?;
        if bytes.starts_with(crate::BOM) {
            bytes.drain(..crate::BOM.len());
        }
        if bytes.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: empty z-score file (trec_eval: cannot read zscores file)",
                name.display()
            )));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64
                + 1;
            Error::parse(name, line, format!("not valid UTF-8 ({e})"))
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut queries: BTreeMap<String, BTreeMap<String, (f64, f64)>> = BTreeMap::new();
        let mut lines_of: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (i, line) in text.split('\n').enumerate() {
            let line_no = i as u64 + 1;
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [qid, meas, mean, stddev] = fields[..] else {
                return Err(Error::parse(
                    name,
                    line_no,
                    format!(
                        "expected 4 fields `qid measure mean stddev`, found {}",
                        fields.len()
                    ),
                ));
            };
            let number = |s: &str, what: &str| {
                s.parse::<f64>().map_err(|_| {
                    Error::parse(
                        name,
                        line_no,
                        format!("{what} must be a number, found {s:?}"),
                    )
                })
            };
            let (mean, stddev) = (number(mean, "mean")?, number(stddev, "stddev")?);
            match lines_of.entry((qid.to_string(), meas.to_string())) {
                Entry::Occupied(first) => {
                    return Err(Error::parse(
                        name,
                        line_no,
                        format!(
                            "query {qid:?} measure {meas:?} given twice (first on line {})",
                            first.get()
                        ),
                    ));
                }
                Entry::Vacant(v) => {
                    v.insert(line_no);
                }
            }
            queries
                .entry(qid.to_string())
                .or_default()
                .insert(meas.to_string(), (mean, stddev));
        }
        Ok(ZScores { queries })
    }

    /// The (mean, stddev) of `measure` (trec_eval's printed name, e.g. `P_10`) for `qid`.
    pub fn get(&self, qid: &str, measure: &str) -> Option<(f64, f64)> {
        self.queries.get(qid)?.get(measure).copied()
    }

    /// Number of queries in the file.
    pub fn num_queries(&self) -> usize {
        self.queries.len()
    }

    /// trec_eval's `te_convert_to_zscore` for one value.
    pub fn convert(&self, qid: &str, measure: &str, value: f64) -> f64 {
        match self.get(qid, measure) {
            None => MISSING_ZSCORE_VALUE,
            Some((mean, stddev)) if stddev != 0.0 => (value - mean) / stddev,
            Some((mean, _)) if value == mean => 0.0,
            Some(_) => MISSING_ZSCORE_VALUE,
        }
    }

    /// `e` with every per-query value standardised (trec_eval `-Z`) and the summaries formed
    /// again from the standardised values. `qrels` and `opts` must be those `e` was evaluated
    /// with (with `-c`, trec_eval's `num_rel` summary counts the qrels' relevant documents,
    /// unstandardised). `gm_map` and `gm_bpref` are standardised as trec_eval keeps them per
    /// query, as `ln(max(value, 0.00001))`, and summarised as `exp(mean)`; strings
    /// (`relstring`) are kept. Print the result with [`crate::report::trec_eval_zscore_text`].
    pub fn apply(&self, e: &Evaluation, qrels: &Qrels, opts: &EvalOptions) -> Evaluation {
        let names: Vec<String> = e.measures.iter().map(|m| m.trec_name()).collect();
        let is_gm: Vec<bool> = e
            .measures
            .iter()
            .map(|m| m.family().is_some() && matches!(m.kind, Kind::GmMap | Kind::GmBpref))
            .collect();
        let per_query: BTreeMap<String, Vec<f64>> = e
            .per_query
            .iter()
            .map(|(qid, values)| {
                let z = values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let v = if is_gm[i] {
                            v.max(MIN_GEO_MEAN).ln()
                        } else {
                            v
                        };
                        self.convert(qid, &names[i], v)
                    })
                    .collect();
                (qid.clone(), z)
            })
            .collect();
        let n = per_query.len();
        let means = e
            .measures
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let column = per_query.values().map(|v| v[i]);
                if is_gm[i] {
                    if n == 0 {
                        0.0
                    } else {
                        (column.fold(0.0, |a, b| a + b) / n as f64).exp()
                    }
                } else {
                    summarize(m, column, n, qrels, opts)
                }
            })
            .collect();
        Evaluation {
            measures: e.measures.clone(),
            per_query,
            means,
            run_id: e.run_id.clone(),
            strings: e.strings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_converts_as_trec_eval() {
        let z = ZScores::from_str_named("q1 P_5 0.5 0.25\n  q1\tmap 0.2 0  \nq2 P_5 0 0.5", "z")
            .unwrap();
        assert_eq!(z.num_queries(), 2);
        assert_eq!(z.convert("q1", "P_5", 1.0), 2.0);
        assert_eq!(z.convert("q1", "map", 0.2), 0.0);
        assert_eq!(z.convert("q1", "map", 0.3), MISSING_ZSCORE_VALUE);
        assert_eq!(z.convert("q1", "ndcg", 0.3), MISSING_ZSCORE_VALUE);
        assert_eq!(z.convert("q3", "P_5", 0.3), MISSING_ZSCORE_VALUE);
        assert_eq!(z.convert("q2", "P_5", -0.25), -0.5);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, line) in [
            ("q1 P_5 0.5 0.25\nq1 P_5 0.5\n", 2),
            ("q1 P_5 0.5 0.25\n\nq1 map 0 1\n", 2),
            ("q1 P_5 0.5 0.25 9\n", 1),
            ("q1 P_5 x 0.25\n", 1),
            ("q1 P_5 1 1\nq2 P_5 1 1\nq1 P_5 2 2\n", 3),
        ] {
            match ZScores::from_str_named(text, "zf") {
                Err(Error::Parse { path, line: l, .. }) => {
                    assert_eq!((path.to_str(), l), (Some("zf"), line), "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(ZScores::from_str_named("", "zf").is_err());
    }

    #[test]
    fn standardised_output_matches_trec_eval_format() {
        use crate::{Run, parse_measure_list, trec_eval_zscore_output};
        let qrels = Qrels::from_str_named("q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 1\n", "qrels").unwrap();
        let run = Run::from_str_named(
            "q1 Q0 d1 1 2.0 r\nq1 Q0 d2 2 1.0 r\nq2 Q0 d2 1 1.0 r\n",
            "run",
        )
        .unwrap();
        let measures = parse_measure_list(&["num_ret", "P.1", "gm_map"]).unwrap();
        // q1: num_ret 2, P_1 1, ln(AP) = ln 1 = 0; q2: num_ret 1, P_1 0, ln(max(0, 1e-5))
        let z = ZScores::from_str_named(
            "q1 num_ret 1 0.5\nq1 P_1 0.5 0.25\nq1 gm_map 0 1\nq2 num_ret 1 0\n\
             q2 gm_map -11.512925464970229 0\n",
            "z",
        )
        .unwrap();
        let out =
            trec_eval_zscore_output(&qrels, &run, &measures, &EvalOptions::default(), true, &z)
                .unwrap();
        let want = "Znum_ret               \tq1\t2.0000\n\
                    ZP_1                   \tq1\t2.0000\n\
                    Znum_ret               \tq2\t0.0000\n\
                    ZP_1                   \tq2\t-1000000.0000\n\
                    Znum_ret               \tall\t2.0000\n\
                    Zgm_map                \tall\t1.0000\n\
                    ZP_1                   \tall\t-499999.0000\n";
        assert_eq!(out, want);
    }
}
