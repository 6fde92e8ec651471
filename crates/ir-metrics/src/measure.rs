//! Measure names: trec_eval style (`ndcg_cut.10`, `P_5`, `recip_rank`, `all_trec`, `P`) and
//! ir_measures style (`nDCG@10`, `RR@10`, `AP`, `R@100`, `P(rel=2)@10`).
//!
//! Every measure of trec_eval 10.0's `all_trec` set is known, with trec_eval's default
//! parameters and its parameter syntax (`P.5,7,3`, `iprec_at_recall..10,.20`,
//! `ndcg.1=3,2=9,4=4.5`, `utility.2,-1,0,0`, `Rprec_mult.5.0,0.2`, `relstring.20`).

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// The family of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Reciprocal rank of the first relevant document (within the cutoff, if any).
    RR,
    /// nDCG: trec_eval's `ndcg` (gains = grades, or the `level=gain` parameters) without a
    /// cutoff, `ndcg_cut` (gains = grades) with one.
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
    /// trec_eval `runid`: the run's tag (printed in the summary only).
    RunId,
    /// trec_eval `num_q`: number of queries averaged over (summary only).
    NumQ,
    /// trec_eval `num_ret`: documents retrieved (summed over queries).
    NumRet,
    /// trec_eval `num_rel`: relevant documents (summed over queries).
    NumRel,
    /// trec_eval `num_rel_ret`: relevant documents retrieved (summed over queries).
    NumRelRet,
    /// trec_eval `gm_map`: AP per query, geometric mean over queries (floor 0.00001).
    GmMap,
    /// trec_eval `iprec_at_recall_L`: interpolated precision at recall level L.
    IprecAtRecall,
    /// trec_eval `relstring`: the grades of the first N documents as a string (per query only).
    RelString,
    /// trec_eval `infAP` (Yilmaz and Aslam 2006).
    InfAP,
    /// trec_eval `gm_bpref`: bpref per query, geometric mean over queries.
    GmBpref,
    /// trec_eval `Rprec_mult_X`: precision at X times R.
    RprecMult,
    /// trec_eval `utility` (coefficients for rel ret, nonrel ret, rel not ret, nonrel not ret).
    Utility,
    /// trec_eval `11pt_avg`: interpolated precision averaged over recall levels.
    ElevenPtAvg,
    /// trec_eval `binG`.
    BinG,
    /// trec_eval `G` (normalized gain).
    G,
    /// trec_eval `ndcg_rel`: nDCG averaged over the relevant documents.
    NdcgRel,
    /// trec_eval `Rndcg`: nDCG averaged over the R-level changes.
    Rndcg,
    /// trec_eval `relative_P_k`: relevant in the top k over min(k, R).
    RelativeP,
    /// trec_eval `set_P`: relevant retrieved over retrieved.
    SetP,
    /// trec_eval `set_relative_P`: relevant retrieved over min(retrieved, R).
    SetRelativeP,
    /// trec_eval `set_recall`: relevant retrieved over R.
    SetRecall,
    /// trec_eval `set_map`: set_P times set_recall.
    SetMap,
    /// trec_eval `set_F` (beta parameter, default 1).
    SetF,
    /// trec_eval `num_nonrel_judged_ret`: judged non-relevant documents retrieved (summed).
    NumNonrelJudgedRet,
    /// trec_eval `rbp`: rank-biased precision (persistence `p`, default 0.9).
    Rbp,
    /// trec_eval `rbp_resid`: the residual of rbp over unjudged documents.
    RbpResid,
    /// trec_eval `unj_k`: fraction of the top k that is unjudged (divided by k).
    Unj,
}

/// A real-valued parameter (a recall level or a multiple of R), stored by its bits so that a
/// [`Measure`] stays `Copy`, `Eq`, `Hash` and `Ord` (ordered numerically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Level(u64);

impl Level {
    /// The level `x`.
    pub fn new(x: f64) -> Self {
        Level(x.to_bits())
    }
    /// Its value.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.get().total_cmp(&other.get())
    }
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
    /// Cutoff k (required for P, Recall, Success, Judged, RelativeP, Unj).
    pub cutoff: Option<usize>,
    /// Relevance level override.
    pub rel: Option<i64>,
    /// Judged-only override.
    pub judged_only: Option<bool>,
    /// The level of `iprec_at_recall` and `Rprec_mult` (required for those).
    pub level: Option<Level>,
    /// trec_eval's parameter text of `utility`, `11pt_avg`, `set_F`, `relstring` (numbers) and
    /// `ndcg`, `ndcg_rel`, `Rndcg`, `G`, `rbp`, `rbp_resid` (`level=gain` pairs, `p=` for rbp),
    /// exactly as given: it is part of the printed name (`utility_2,-1,0,0`). `None`: defaults.
    pub params: Option<&'static str>,
}

/// How a trec_eval family takes parameters.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// None.
    Plain,
    /// Integer cutoffs, sorted, one measure each (`P.5,10`).
    LongCut(&'static [usize]),
    /// Real cutoffs, sorted, one measure each (`iprec_at_recall..1,.2`).
    DoubleCut(&'static [f64]),
    /// A list of numbers, one measure named after the text (`utility.2,-1,0,0`).
    Doubles(&'static [f64]),
    /// `name=value` pairs, one measure named after the text (`ndcg.1=3,2=9`).
    Pairs,
}

/// A trec_eval measure family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    style: Style,
}

const CUTS: &[usize] = &[5, 10, 15, 20, 30, 100, 200, 500, 1000];
const ELEVEN: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const RPREC_MULTS: &[f64] = &[0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0];

/// trec_eval 10.0's measure table, in its order (the order measures are printed in).
const FAMILIES: &[Family] = &[
    fam("runid", Kind::RunId, Style::Plain),
    fam("num_q", Kind::NumQ, Style::Plain),
    fam("num_ret", Kind::NumRet, Style::Plain),
    fam("num_rel", Kind::NumRel, Style::Plain),
    fam("num_rel_ret", Kind::NumRelRet, Style::Plain),
    fam("map", Kind::AP, Style::Plain),
    fam("gm_map", Kind::GmMap, Style::Plain),
    fam("Rprec", Kind::RPrec, Style::Plain),
    fam("bpref", Kind::Bpref, Style::Plain),
    fam("recip_rank", Kind::RR, Style::Plain),
    fam(
        "iprec_at_recall",
        Kind::IprecAtRecall,
        Style::DoubleCut(ELEVEN),
    ),
    fam("P", Kind::P, Style::LongCut(CUTS)),
    fam("relstring", Kind::RelString, Style::Doubles(&[10.0])),
    fam("recall", Kind::Recall, Style::LongCut(CUTS)),
    fam("infAP", Kind::InfAP, Style::Plain),
    fam("gm_bpref", Kind::GmBpref, Style::Plain),
    fam("Rprec_mult", Kind::RprecMult, Style::DoubleCut(RPREC_MULTS)),
    fam(
        "utility",
        Kind::Utility,
        Style::Doubles(&[1.0, -1.0, 0.0, 0.0]),
    ),
    fam("11pt_avg", Kind::ElevenPtAvg, Style::Doubles(ELEVEN)),
    fam("binG", Kind::BinG, Style::Plain),
    fam("G", Kind::G, Style::Pairs),
    fam("ndcg", Kind::Ndcg, Style::Pairs),
    fam("ndcg_rel", Kind::NdcgRel, Style::Pairs),
    fam("Rndcg", Kind::Rndcg, Style::Pairs),
    fam("ndcg_cut", Kind::Ndcg, Style::LongCut(CUTS)),
    fam("map_cut", Kind::AP, Style::LongCut(CUTS)),
    fam("relative_P", Kind::RelativeP, Style::LongCut(CUTS)),
    fam("success", Kind::Success, Style::LongCut(&[1, 5, 10])),
    fam("set_P", Kind::SetP, Style::Plain),
    fam("set_relative_P", Kind::SetRelativeP, Style::Plain),
    fam("set_recall", Kind::SetRecall, Style::Plain),
    fam("set_map", Kind::SetMap, Style::Plain),
    fam("set_F", Kind::SetF, Style::Doubles(&[1.0])),
    fam(
        "num_nonrel_judged_ret",
        Kind::NumNonrelJudgedRet,
        Style::Plain,
    ),
    fam("rbp", Kind::Rbp, Style::Pairs),
    fam("rbp_resid", Kind::RbpResid, Style::Pairs),
    fam("unj", Kind::Unj, Style::LongCut(&[5, 10, 20])),
];

const fn fam(name: &'static str, kind: Kind, style: Style) -> Family {
    Family { name, kind, style }
}

/// trec_eval's `official` set: what it prints when no `-m` is given.
pub const OFFICIAL: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "map",
    "gm_map",
    "Rprec",
    "bpref",
    "recip_rank",
    "iprec_at_recall",
    "P",
];

/// trec_eval's `all_trec` set (printed in table order).
pub const ALL_TREC: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "map",
    "gm_map",
    "Rprec",
    "bpref",
    "recip_rank",
    "iprec_at_recall",
    "P",
    "relstring",
    "recall",
    "infAP",
    "gm_bpref",
    "Rprec_mult",
    "utility",
    "11pt_avg",
    "binG",
    "G",
    "ndcg",
    "ndcg_rel",
    "Rndcg",
    "ndcg_cut",
    "map_cut",
    "relative_P",
    "success",
    "set_P",
    "set_relative_P",
    "set_recall",
    "set_map",
    "set_F",
    "num_nonrel_judged_ret",
    "rbp",
    "rbp_resid",
    "unj",
];

/// trec_eval's `set` set.
pub const SET: &[&str] = &[
    "runid",
    "num_q",
    "num_ret",
    "num_rel",
    "num_rel_ret",
    "utility",
    "set_P",
    "set_recall",
    "set_relative_P",
    "set_map",
    "set_F",
];

fn nickname(s: &str) -> Option<&'static [&'static str]> {
    match s {
        "official" => Some(OFFICIAL),
        "all_trec" => Some(ALL_TREC),
        "set" => Some(SET),
        _ => None,
    }
}

/// Intern a parameter text (a few distinct strings per process: measure names).
fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&t) = set.get(s) {
        return t;
    }
    let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(t);
    t
}

impl Measure {
    /// A measure without overrides.
    pub const fn new(kind: Kind, cutoff: Option<usize>) -> Self {
        Measure {
            kind,
            cutoff,
            rel: None,
            judged_only: None,
            level: None,
            params: None,
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

    /// The trec_eval family of this measure (`None` for ir_measures-only measures such as
    /// `RR@10`, `Judged@10` or ones with `rel=` / `judged_only=` overrides).
    pub(crate) fn family(&self) -> Option<(usize, &'static Family)> {
        if self.rel.is_some() || self.judged_only.is_some() {
            return None;
        }
        FAMILIES.iter().enumerate().find(|(_, f)| {
            f.kind == self.kind
                && match f.style {
                    Style::LongCut(_) => self.cutoff.is_some(),
                    Style::DoubleCut(_) => self.level.is_some() && self.cutoff.is_none(),
                    _ => self.cutoff.is_none(),
                }
        })
    }

    /// The numbers of a `Doubles` family (`utility`, `11pt_avg`, `set_F`, `relstring`):
    /// parsed from `params`, or the defaults.
    pub fn doubles(&self) -> Vec<f64> {
        let default = self
            .family()
            .and_then(|(_, f)| match f.style {
                Style::Doubles(d) => Some(d.to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        match self.params {
            Some(p) => parse_doubles(p).unwrap_or(default),
            None => default,
        }
    }

    /// The `name=value` pairs of a `Pairs` family (`ndcg`, `G`, `rbp`, ...); empty by default.
    pub fn pairs(&self) -> Vec<(&'static str, f64)> {
        self.params
            .and_then(|p| parse_pairs(p).ok())
            .unwrap_or_default()
    }

    /// trec_eval's output name (`ndcg_cut_10`, `P_5`, `recip_rank`, `iprec_at_recall_0.10`,
    /// `utility_2,-1,0,0`); names trec_eval lacks use the ir_measures spelling (`RR@10`,
    /// `Judged@10`).
    pub fn trec_name(&self) -> String {
        let Some((_, f)) = self.family() else {
            return self.ir_name();
        };
        match f.style {
            Style::Plain => f.name.into(),
            Style::LongCut(_) => format!("{}_{}", f.name, self.cutoff.unwrap_or(0)),
            Style::DoubleCut(_) => {
                format!("{}_{:.2}", f.name, self.level.map_or(0.0, Level::get))
            }
            Style::Doubles(_) | Style::Pairs => match self.params {
                Some(p) => format!("{}_{p}", f.name),
                None => f.name.into(),
            },
        }
    }

    /// True when the value depends on the relevance level.
    pub fn uses_relevance_level(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Ndcg
                | Kind::Judged
                | Kind::RunId
                | Kind::NumQ
                | Kind::NumRet
                | Kind::RelString
                | Kind::G
                | Kind::Rbp
                | Kind::RbpResid
                | Kind::Unj
        )
    }

    /// True for trec_eval's count measures, printed as integers (`num_ret`, `num_rel`,
    /// `num_rel_ret`, `num_nonrel_judged_ret`, `num_q`).
    pub fn is_count(&self) -> bool {
        self.family().is_some()
            && matches!(
                self.kind,
                Kind::NumQ
                    | Kind::NumRet
                    | Kind::NumRel
                    | Kind::NumRelRet
                    | Kind::NumNonrelJudgedRet
            )
    }

    /// ir_measures spelling for the measures ir_measures has.
    fn ir_name(&self) -> String {
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
            // trec_eval-only families with an override (not produced by the parser)
            other => FAMILIES
                .iter()
                .find(|f| f.kind == other)
                .map_or("?", |f| f.name),
        };
        let mut s = base.to_string();
        let mut params = Vec::new();
        if let Some(r) = self.rel {
            params.push(format!("rel={r}"));
        }
        if let Some(j) = self.judged_only {
            params.push(format!("judged_only={}", if j { "True" } else { "False" }));
        }
        if !params.is_empty() {
            s.push_str(&format!("({})", params.join(",")));
        }
        if let Some(k) = self.cutoff {
            s.push_str(&format!("@{k}"));
        }
        s
    }
}

/// ir_measures spelling for the measures ir_measures has (`nDCG@10`, `RR`, `AP@100`,
/// `P(rel=2)@10`, `R@100`), trec_eval's output name for the others (`num_ret`,
/// `iprec_at_recall_0.10`, `ndcg_1=3,2=9`); either parses back to the same measure.
impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain_ir = matches!(
            self.kind,
            Kind::RR
                | Kind::Ndcg
                | Kind::AP
                | Kind::P
                | Kind::Recall
                | Kind::RPrec
                | Kind::Success
                | Kind::Judged
                | Kind::Bpref
        ) && self.params.is_none()
            && self.level.is_none();
        if plain_ir {
            f.write_str(&self.ir_name())
        } else {
            f.write_str(&self.trec_name())
        }
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

/// trec_eval's cutoffs (`atol`: the leading integer, so `23.4` is 23), sorted; each must be
/// positive, without duplicates.
pub(crate) fn parse_long_cutoffs(name: &str, list: &str) -> Result<Vec<usize>> {
    let mut v = list
        .split(',')
        .map(|c| {
            let t = c.trim_start();
            let digits = t
                .strip_prefix('+')
                .unwrap_or(t)
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let head = &t.strip_prefix('+').unwrap_or(t)[..digits];
            match head.parse::<usize>() {
                Ok(k) if k > 0 && !t.starts_with('-') => Ok(k),
                _ => Err(Error::Measure(
                    name.into(),
                    format!("cutoff must be a positive integer, found {c:?}"),
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    v.sort_unstable();
    if v.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::Measure(name.into(), "duplicate cutoffs".into()));
    }
    Ok(v)
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

pub(crate) fn parse_doubles(list: &str) -> Option<Vec<f64>> {
    list.split(',').map(parse_number).collect()
}

fn parse_pairs(list: &'static str) -> std::result::Result<Vec<(&'static str, f64)>, String> {
    list.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("expected name=value pairs, found {kv:?}"))?;
            let v = parse_number(v).ok_or_else(|| format!("{v:?} is not a number"))?;
            Ok((k, v))
        })
        .collect()
}

/// The measures of one trec_eval family with parameter text `params` (`None`: defaults).
fn expand_family(name: &str, f: &Family, params: Option<&str>) -> Result<Vec<Measure>> {
    let err = |why: String| Error::Measure(name.into(), why);
    let base = Measure::new(f.kind, None);
    match (f.style, params) {
        (Style::Plain, None) => Ok(vec![base]),
        (Style::Plain, Some(_)) => Err(err("this measure takes no cutoff or parameter".into())),
        (Style::LongCut(d), p) => {
            let cuts = match p {
                Some(p) => parse_long_cutoffs(name, p)?,
                None => d.to_vec(),
            };
            Ok(cuts
                .into_iter()
                .map(|k| Measure {
                    cutoff: Some(k),
                    ..base
                })
                .collect())
        }
        (Style::DoubleCut(d), p) => {
            let mut levels = match p {
                Some(p) => parse_doubles(p)
                    .ok_or_else(|| err(format!("levels must be numbers, found {p:?}")))?,
                None => d.to_vec(),
            };
            levels.sort_by(f64::total_cmp);
            if levels.windows(2).any(|w| w[0] == w[1]) {
                return Err(err("duplicate cutoffs".into()));
            }
            Ok(levels
                .into_iter()
                .map(|x| Measure {
                    level: Some(Level::new(x)),
                    ..base
                })
                .collect())
        }
        (Style::Doubles(_) | Style::Pairs, None) => Ok(vec![base]),
        (Style::Doubles(_), Some(p)) => {
            let v = parse_doubles(p)
                .ok_or_else(|| err(format!("parameters must be numbers, found {p:?}")))?;
            match f.kind {
                Kind::Utility if v.len() != 4 => {
                    return Err(err("utility takes 4 coefficients".into()));
                }
                Kind::SetF | Kind::RelString if v.len() != 1 => {
                    return Err(err("takes one number".into()));
                }
                _ => {}
            }
            Ok(vec![Measure {
                params: Some(intern(p)),
                ..base
            }])
        }
        (Style::Pairs, Some(p)) => {
            let p = intern(p);
            parse_pairs(p).map_err(err)?;
            Ok(vec![Measure {
                params: Some(p),
                ..base
            }])
        }
    }
}

/// The longest trec_eval family name that `s` starts with, followed by nothing, `.` or `_`;
/// with the text after the separator.
fn match_family(s: &str) -> Option<(&'static Family, Option<&str>)> {
    FAMILIES
        .iter()
        .filter_map(|f| {
            let rest = s.strip_prefix(f.name)?;
            match rest.chars().next() {
                None => Some((f, None)),
                Some('.' | '_') => Some((f, Some(&rest[1..]))),
                _ => None,
            }
        })
        .max_by_key(|(f, _)| f.name.len())
}

/// Parse a measure name into one or more measures.
///
/// Accepted:
/// - trec_eval's sets `official` (what trec_eval prints without `-m`), `all_trec` and `set`;
/// - every trec_eval family of `all_trec`, bare (`P`, `ndcg_cut`, `iprec_at_recall`,
///   `utility`: trec_eval's default parameters) or with parameters after `.` or `_`
///   (`P.5,10`, `ndcg_cut_10`, `iprec_at_recall..10,.20`, `Rprec_mult.0.2,5.0`,
///   `utility.2,-1,0,0`, `11pt_avg..25,.5,.75`, `ndcg.1=3,2=9,4=4.5`, `rbp.p=0.8`,
///   `relstring.20`, `set_F.0.5`); cutoff lists are sorted as trec_eval sorts them and read
///   as C's `atol` reads them (`ndcg_cut.23.4` is `ndcg_cut_23`);
/// - trec_eval's output names (`iprec_at_recall_0.10`, `ndcg_1=3,2=9`);
/// - ir_measures names `RR[@K]`, `nDCG[@K]`, `AP[@K]`, `P@K`, `R@K`, `Rprec`/`R-Prec`,
///   `Success@K`, `Judged@K`, `Bpref`, optionally with `(rel=N)` and `(judged_only=True)`.
pub fn parse_measures(name: &str) -> Result<Vec<Measure>> {
    let err = |why: &str| Error::Measure(name.into(), why.into());
    let s = name.trim();
    if s.is_empty() {
        return Err(err("empty name"));
    }
    if let Some(list) = nickname(s) {
        let mut out = Vec::new();
        for n in list {
            out.extend(parse_measures(n)?);
        }
        return Ok(out);
    }
    if !s.contains('@')
        && !s.contains('(')
        && let Some((f, params)) = match_family(s)
    {
        return expand_family(name, f, params);
    }
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
    Err(err(
        "expected a trec_eval name (official, all_trec, recip_rank, ndcg, ndcg_cut.K, map, \
         map_cut.K, P.K, recall.K, Rprec, success.K, bpref, num_ret, iprec_at_recall, ...) or an \
         ir_measures name (nDCG@10, RR@10, AP, R@100, ...)",
    ))
}

/// Parse several names as trec_eval parses its `-m` options: each name is expanded by
/// [`parse_measures`]; where a family is asked for both with trec_eval's defaults (by a set
/// such as `all_trec`, or bare, as in `P`) and with explicit parameters (`P.5,7`), only the
/// explicit ones are kept (`-m all_trec -m relstring.20` gives `relstring_20` alone, as in
/// trec_eval). Repeated measures are kept once, in first-seen order.
pub fn parse_measure_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Measure>> {
    let mut entries: Vec<(Measure, bool)> = Vec::new();
    let mut explicit: HashSet<&'static str> = HashSet::new();
    for n in names {
        let n = n.as_ref().trim();
        let defaults = nickname(n).is_some()
            || (!n.contains('@') && !n.contains('(') && FAMILIES.iter().any(|f| f.name == n));
        for m in parse_measures(n)? {
            if !defaults && let Some((_, f)) = m.family() {
                explicit.insert(f.name);
            }
            entries.push((m, defaults));
        }
    }
    let mut out: Vec<Measure> = Vec::new();
    for (m, defaults) in entries {
        let shadowed = defaults && m.family().is_some_and(|(_, f)| explicit.contains(f.name));
        if !shadowed && !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
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

/// Position of `m` in trec_eval's print order: its family's place in trec_eval's table, then
/// its cutoff or level. Measures trec_eval lacks come after all of trec_eval's.
pub(crate) fn print_rank(m: &Measure) -> (usize, usize, Option<Level>) {
    match m.family() {
        Some((i, _)) => (i, m.cutoff.unwrap_or(0), m.level),
        None => (usize::MAX, 0, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Measure {
        Measure::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn names(s: &str) -> Vec<String> {
        parse_measures(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .iter()
            .map(Measure::trec_name)
            .collect()
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
            "num_ret",
            "iprec_at_recall_0.10",
            "Rprec_mult_5.00",
            "utility_2,-1,0,0",
            "11pt_avg_.25,.5,.75",
            "ndcg_1=3,2=9,4=4.5",
            "relstring_20",
            "relative_P_5",
            "unj_10",
            "rbp",
            "set_F",
        ] {
            assert_eq!(one(s).to_string(), s);
            assert_eq!(one(&one(s).to_string()), one(s));
        }
        assert_eq!(one("nDCG@10").trec_name(), "ndcg_cut_10");
        assert_eq!(one("P@5").trec_name(), "P_5");
        assert_eq!(one("utility.2,-1,0,0").trec_name(), "utility_2,-1,0,0");
    }

    #[test]
    fn families_take_trec_eval_parameters() {
        assert_eq!(names("P.5,7,3"), ["P_3", "P_5", "P_7"]);
        assert_eq!(
            names("ndcg_cut.10,20,23.4"),
            ["ndcg_cut_10", "ndcg_cut_20", "ndcg_cut_23"]
        );
        assert_eq!(
            names("iprec_at_recall..10,.20,.25,.75,.50"),
            [
                "iprec_at_recall_0.10",
                "iprec_at_recall_0.20",
                "iprec_at_recall_0.25",
                "iprec_at_recall_0.50",
                "iprec_at_recall_0.75"
            ]
        );
        assert_eq!(
            names("Rprec_mult.5.0,0.2,0.35"),
            ["Rprec_mult_0.20", "Rprec_mult_0.35", "Rprec_mult_5.00"]
        );
        assert_eq!(names("success"), ["success_1", "success_5", "success_10"]);
        assert_eq!(names("P").len(), 9);
        assert_eq!(names("unj"), ["unj_5", "unj_10", "unj_20"]);
        assert_eq!(names("ndcg.1=3,2=9,4=4.5"), ["ndcg_1=3,2=9,4=4.5"]);
        assert_eq!(one("ndcg.1=3,2=9").pairs(), [("1", 3.0), ("2", 9.0)]);
        assert_eq!(one("utility").doubles(), [1.0, -1.0, 0.0, 0.0]);
        assert_eq!(one("11pt_avg..25,.5").doubles(), [0.25, 0.5]);
        let off = names("official");
        assert_eq!(off.len(), 10 + 11 + 9);
        assert_eq!(&off[..3], ["runid", "num_q", "num_ret"]);
        let all = names("all_trec");
        assert_eq!(all.len(), 100, "{all:?}");
        assert!(all.contains(&"relstring".to_string()));
    }

    #[test]
    fn explicit_parameters_replace_defaults_in_lists() {
        let v = parse_measure_list(&["all_trec", "relstring.20"]).unwrap();
        let n: Vec<String> = v.iter().map(Measure::trec_name).collect();
        assert!(n.contains(&"relstring_20".to_string()));
        assert!(!n.contains(&"relstring".to_string()));
        let v = parse_measure_list(&["P", "P.5", "nDCG@10", "ndcg_cut.10"]).unwrap();
        assert_eq!(v.len(), 2);
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
            "R",
            "nDCG@0",
            "nDCG@x",
            "foo",
            "bpref.10",
            "AP(rel=x)",
            "P(q=1)@5",
            "P.5,5",
            "utility.1,2",
            "ndcg.1",
            "iprec_at_recall.x",
            "map.5",
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
