//! Measure names: trec_eval style (`ndcg_cut.10`, `P_5`, `recip_rank`) and ir_measures style
//! (`nDCG@10`, `RR@10`, `AP`, `R@100`, `P(rel=2)@10`).

use crate::error::{Error, Result};
use std::fmt;

/// The family of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Reciprocal rank of the first relevant document (within the cutoff, if any).
    RR,
    /// nDCG with trec_eval's gains (the grade), over the whole ranking or the top k.
    Ndcg,
    /// Average precision (MAP per query); with a cutoff, trec_eval's `map_cut` (still divided
    /// by the number of relevant documents).
    AP,
    /// Precision at k (divided by k even when fewer documents were retrieved).
    P,
    /// Recall at k.
    Recall,
    /// Precision at R, R the number of relevant documents.
    RPrec,
    /// 1 if a relevant document is in the top k.
    Success,
    /// Fraction of the top k (or of the retrieved, if fewer) that has a judgement.
    Judged,
    /// Binary preference (Buckley and Voorhees 2004), as trec_eval.
    Bpref,
}

/// A measure with its parameters.
///
/// `rel` and `judged_only`, when set, override the evaluation's relevance level and
/// judged-only flag for this measure alone (ir_measures' `AP(rel=2)` and
/// `nDCG(judged_only=True)@10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Measure {
    /// Family.
    pub kind: Kind,
    /// Cutoff k (required for P, Recall, Success, Judged).
    pub cutoff: Option<usize>,
    /// Relevance level override.
    pub rel: Option<i64>,
    /// Judged-only override.
    pub judged_only: Option<bool>,
}

impl Measure {
    /// A measure without overrides.
    pub const fn new(kind: Kind, cutoff: Option<usize>) -> Self {
        Measure {
            kind,
            cutoff,
            rel: None,
            judged_only: None,
        }
    }

    /// Parse one measure name (trec_eval or ir_measures style). Use [`parse_measures`] for
    /// trec_eval's comma lists such as `P.5,10`.
    pub fn parse(name: &str) -> Result<Self> {
        let v = parse_measures(name)?;
        match v.as_slice() {
            [m] => Ok(*m),
            _ => Err(Error::Measure(
                name.into(),
                "names one measure per cutoff; use parse_measures for lists".into(),
            )),
        }
    }

    /// trec_eval's output name (`ndcg_cut_10`, `P_5`, `recip_rank`, `map_cut_100`); names
    /// trec_eval lacks use the ir_measures spelling (`RR@10`, `Judged@10`).
    pub fn trec_name(&self) -> String {
        if self.rel.is_some() || self.judged_only.is_some() {
            return self.to_string();
        }
        match (self.kind, self.cutoff) {
            (Kind::RR, None) => "recip_rank".into(),
            (Kind::Ndcg, None) => "ndcg".into(),
            (Kind::Ndcg, Some(k)) => format!("ndcg_cut_{k}"),
            (Kind::AP, None) => "map".into(),
            (Kind::AP, Some(k)) => format!("map_cut_{k}"),
            (Kind::P, Some(k)) => format!("P_{k}"),
            (Kind::Recall, Some(k)) => format!("recall_{k}"),
            (Kind::RPrec, _) => "Rprec".into(),
            (Kind::Success, Some(k)) => format!("success_{k}"),
            (Kind::Bpref, _) => "bpref".into(),
            _ => self.to_string(),
        }
    }

    /// True when the value depends on the relevance level.
    pub fn uses_relevance_level(&self) -> bool {
        !matches!(self.kind, Kind::Ndcg | Kind::Judged)
    }
}

/// ir_measures spelling: `nDCG@10`, `RR`, `AP@100`, `P(rel=2)@10`, `R@100`.
impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = match self.kind {
            Kind::RR => "RR",
            Kind::Ndcg => "nDCG",
            Kind::AP => "AP",
            Kind::P => "P",
            Kind::Recall => "R",
            Kind::RPrec => "Rprec",
            Kind::Success => "Success",
            Kind::Judged => "Judged",
            Kind::Bpref => "Bpref",
        };
        f.write_str(base)?;
        let mut params = Vec::new();
        if let Some(r) = self.rel {
            params.push(format!("rel={r}"));
        }
        if let Some(j) = self.judged_only {
            params.push(format!("judged_only={}", if j { "True" } else { "False" }));
        }
        if !params.is_empty() {
            write!(f, "({})", params.join(","))?;
        }
        if let Some(k) = self.cutoff {
            write!(f, "@{k}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Measure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Measure::parse(s)
    }
}

fn kind_needs_cutoff(kind: Kind) -> bool {
    matches!(kind, Kind::P | Kind::Recall | Kind::Success | Kind::Judged)
}

fn parse_cutoffs(name: &str, list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|c| match c.trim().parse::<usize>() {
            Ok(k) if k > 0 => Ok(k),
            _ => Err(Error::Measure(
                name.into(),
                format!("cutoff must be a positive integer, found {c:?}"),
            )),
        })
        .collect()
}

/// Parse a measure name into one or more measures (trec_eval allows `P.5,10,20`).
///
/// Accepted: trec_eval names `recip_rank`, `ndcg`, `ndcg_cut.K`, `map`, `map_cut.K`, `P.K`,
/// `recall.K`, `Rprec`, `success.K`, `bpref` (with `.` or `_` before the cutoffs), and
/// ir_measures names `RR[@K]`, `nDCG[@K]`, `AP[@K]`, `P@K`, `R@K`, `Rprec`/`R-Prec`,
/// `Success@K`, `Judged@K`, `Bpref`, optionally with `(rel=N)` and `(judged_only=True)`.
pub fn parse_measures(name: &str) -> Result<Vec<Measure>> {
    let err = |why: &str| Error::Measure(name.into(), why.into());
    let s = name.trim();
    if s.is_empty() {
        return Err(err("empty name"));
    }
    // ir_measures style
    if s.contains('@') || s.contains('(') || ir_base(s).is_some() {
        let (head, cutoff) = match s.split_once('@') {
            Some((h, c)) => (h, Some(parse_cutoffs(name, c)?)),
            None => (s, None),
        };
        let (base, params) = match head.split_once('(') {
            Some((b, p)) => {
                let p = p
                    .strip_suffix(')')
                    .ok_or_else(|| err("unclosed parenthesis"))?;
                (b, Some(p))
            }
            None => (head, None),
        };
        let kind = ir_base(base).ok_or_else(|| {
            err("expected one of RR, nDCG, AP, P, R, Rprec, Success, Judged, Bpref")
        })?;
        let mut m = Measure::new(kind, None);
        if let Some(p) = params {
            for kv in p.split(',').filter(|x| !x.trim().is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err("parameters are key=value"))?;
                match k.trim() {
                    "rel" => {
                        m.rel = Some(
                            v.trim()
                                .parse()
                                .map_err(|_| err("rel must be an integer"))?,
                        )
                    }
                    "judged_only" => {
                        m.judged_only = Some(match v.trim() {
                            "True" | "true" | "1" => true,
                            "False" | "false" | "0" => false,
                            _ => return Err(err("judged_only must be True or False")),
                        })
                    }
                    other => return Err(err(&format!("unknown parameter {other:?}"))),
                }
            }
        }
        return expand(name, m, cutoff);
    }
    // trec_eval style: base[.|_]cutoffs
    let (base, cutoffs) = match s.find(['.', '_']) {
        Some(_) if s == "recip_rank" => ("recip_rank", None),
        Some(_) => {
            // the cutoffs follow the last '.' or '_' (names themselves contain '_')
            let i = s.rfind(['.', '_']).unwrap_or(0);
            let (b, c) = (&s[..i], &s[i + 1..]);
            let takes_cutoffs = ["ndcg_cut", "map_cut", "P", "recall", "success"].contains(&b);
            if takes_cutoffs
                || (c.chars().all(|ch| ch.is_ascii_digit() || ch == ',') && !c.is_empty())
            {
                // a name that takes cutoffs: whatever follows must be cutoffs (`ndcg_cut.-1`
                // is a bad cutoff, not an unknown measure)
                (b, Some(parse_cutoffs(name, c)?))
            } else {
                (s, None)
            }
        }
        None => (s, None),
    };
    let kind = match (base, cutoffs.is_some()) {
        ("recip_rank", false) => Kind::RR,
        ("ndcg", false) | ("ndcg_cut", true) => Kind::Ndcg,
        ("map", false) | ("map_cut", true) => Kind::AP,
        ("P", true) => Kind::P,
        ("recall", true) => Kind::Recall,
        ("Rprec", false) => Kind::RPrec,
        ("success", true) => Kind::Success,
        ("bpref", false) => Kind::Bpref,
        _ => {
            return Err(err(
                "expected a trec_eval name (recip_rank, ndcg, ndcg_cut.K, map, map_cut.K, P.K, \
                 recall.K, Rprec, success.K, bpref) or an ir_measures name (nDCG@10, RR@10, AP, R@100, ...)",
            ));
        }
    };
    expand(name, Measure::new(kind, None), cutoffs)
}

fn ir_base(s: &str) -> Option<Kind> {
    Some(match s {
        "RR" | "MRR" => Kind::RR,
        "nDCG" | "NDCG" => Kind::Ndcg,
        "AP" | "MAP" => Kind::AP,
        "P" => Kind::P,
        "R" | "Recall" => Kind::Recall,
        "Rprec" | "R-Prec" | "RPrec" => Kind::RPrec,
        "Success" => Kind::Success,
        "Judged" => Kind::Judged,
        "Bpref" | "BPref" => Kind::Bpref,
        _ => return None,
    })
}

fn expand(name: &str, m: Measure, cutoffs: Option<Vec<usize>>) -> Result<Vec<Measure>> {
    match cutoffs {
        None if kind_needs_cutoff(m.kind) => Err(Error::Measure(
            name.into(),
            "this measure needs a cutoff (e.g. @10 or .10)".into(),
        )),
        None => Ok(vec![m]),
        Some(_) if matches!(m.kind, Kind::RPrec | Kind::Bpref) => Err(Error::Measure(
            name.into(),
            "this measure takes no cutoff".into(),
        )),
        Some(cs) => Ok(cs
            .into_iter()
            .map(|k| Measure {
                cutoff: Some(k),
                ..m
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Measure {
        Measure::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn both_spellings_agree() {
        assert_eq!(one("ndcg_cut.10"), one("nDCG@10"));
        assert_eq!(one("ndcg_cut_10"), one("nDCG@10"));
        assert_eq!(one("map"), one("AP"));
        assert_eq!(one("map_cut.100"), one("AP@100"));
        assert_eq!(one("recall.100"), one("R@100"));
        assert_eq!(one("P.10"), one("P@10"));
        assert_eq!(one("recip_rank"), one("RR"));
        assert_eq!(one("Rprec"), one("R-Prec"));
        assert_eq!(one("success.5"), one("Success@5"));
        assert_eq!(one("bpref"), one("Bpref"));
        assert_eq!(one("RR@10").cutoff, Some(10));
    }

    #[test]
    fn names_round_trip() {
        for s in [
            "nDCG@10",
            "RR@10",
            "AP",
            "P(rel=2)@10",
            "nDCG(judged_only=True)@5",
            "Judged@10",
        ] {
            assert_eq!(one(s).to_string(), s);
            assert_eq!(one(&one(s).to_string()), one(s));
        }
        assert_eq!(one("nDCG@10").trec_name(), "ndcg_cut_10");
        assert_eq!(one("P@5").trec_name(), "P_5");
    }

    #[test]
    fn comma_lists_expand() {
        let v = parse_measures("P.5,10,20").unwrap();
        assert_eq!(
            v.iter().map(|m| m.cutoff.unwrap()).collect::<Vec<_>>(),
            [5, 10, 20]
        );
    }

    #[test]
    fn bad_names_are_errors() {
        for s in [
            "",
            "P",
            "nDCG@0",
            "nDCG@x",
            "foo",
            "bpref.10",
            "AP(rel=x)",
            "P(q=1)@5",
            "ndcg_cut",
        ] {
            assert!(parse_measures(s).is_err(), "{s} should fail");
        }
        // a cutoff-taking name with a bad cutoff says so, instead of "unknown measure"
        for s in ["ndcg_cut.-1", "P_x", "map_cut.0"] {
            let e = parse_measures(s).unwrap_err().to_string();
            assert!(e.contains("cutoff must be a positive integer"), "{s}: {e}");
        }
    }
}
