//! trec_eval's preference judgements, `-R prefs` and `-R qrels_prefs` (get_prefs.c,
//! get_qrels_prefs.c, form_prefs_counts.c) and the preference measures (`all_prefs`:
//! m_prefs_*.c), ported line by line.
//!
//! A `prefs` file has lines `qid jg jsg docid rel_level`: within a judgement sub-group (jsg)
//! of a judgement group (jg), a document with a higher `rel_level` is preferred to one with a
//! lower level; a jg with several jsgs combines their preferences transitively; `rel_level`
//! 0 means non-relevant. `-R qrels_prefs` reads an ordinary qrels file (`qid jg docid grade`)
//! as preferences, one jsg per jg.

use crate::error::{Error, Result};
use crate::eval::EvalOptions;
use crate::run::{QueryRun, Run};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

/// One preference line.
#[derive(Debug, Clone, PartialEq)]
struct PrefLine {
    jg: String,
    jsg: String,
    docno: String,
    rel_level: f64,
}

/// Preference judgements (trec_eval `-R prefs` or `-R qrels_prefs`), by query id (byte order).
#[derive(Debug, Clone, Default)]
pub struct Prefs {
    queries: BTreeMap<String, Vec<PrefLine>>,
}

impl Prefs {
    /// Read a `prefs` file, `qid jg jsg docid rel_level` (trec_eval `-R prefs`); `-` reads
    /// standard input and gzip data is decompressed.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name, false)
    }

    /// Read a qrels file as preferences (trec_eval `-R qrels_prefs`): `qid jg docid grade`,
    /// the second column being the judgement group.
    pub fn from_qrels_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name, true)
    }

    /// Parse `prefs` text (`qrels` false) or qrels text read as preferences (`qrels` true);
    /// `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>, qrels: bool) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref(), qrels)
    }

    /// Parse from any reader: 5 whitespace-separated fields a line (4 with `qrels`, the
    /// sub-group then being `0` as in trec_eval), the last a number. Lines whose first field
    /// starts with `#` and blank lines are skipped (trec_eval skips a comment only when `#` is
    /// the line's first character, and calls a blank line malformed).
    pub fn from_reader(reader: impl Read, name: &Path, qrels: bool) -> Result<Self> {
        let mut queries: BTreeMap<String, Vec<PrefLine>> = BTreeMap::new();
        let want = if qrels { 4 } else { 5 };
        crate::input::for_each_line(reader, name, |line_no, line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.first().is_none_or(|x| x.starts_with('#')) {
                return Ok(());
            }
            if f.len() != want {
                let shape = if qrels {
                    "`qid jg docid rel_level`"
                } else {
                    "`qid jg jsg docid rel_level`"
                };
                return Err(Error::parse(
                    name,
                    line_no,
                    format!("expected {want} fields {shape}, found {}", f.len()),
                ));
            }
            let level = f[want - 1];
            let rel_level: f64 = level
                .parse()
                .ok()
                .filter(|x: &f64| !x.is_nan())
                .ok_or_else(|| {
                    Error::parse(
                        name,
                        line_no,
                        format!("rel_level must be a number, found {level:?}"),
                    )
                })?;
            let (jsg, docno) = if qrels { ("0", f[2]) } else { (f[2], f[3]) };
            queries.entry(f[0].to_string()).or_default().push(PrefLine {
                jg: f[1].to_string(),
                jsg: jsg.to_string(),
                docno: docno.to_string(),
                rel_level,
            });
            Ok(())
        })?;
        Ok(Prefs { queries })
    }

    /// Query ids in byte order.
    pub fn qids(&self) -> impl Iterator<Item = &str> {
        self.queries.keys().map(String::as_str)
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when there are no queries.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// A measure of trec_eval's `all_prefs` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrefsMeasure {
    /// `runid`
    RunId,
    /// `num_q`
    NumQ,
    /// `prefs_num_prefs_poss`
    NumPrefsPoss,
    /// `prefs_num_prefs_ful`
    NumPrefsFul,
    /// `prefs_num_prefs_ful_ret`
    NumPrefsFulRet,
    /// `prefs_simp`
    Simp,
    /// `prefs_pair`
    Pair,
    /// `prefs_avgjg`
    Avgjg,
    /// `prefs_avgjg_Rnonrel`
    AvgjgRnonrel,
    /// `prefs_simp_ret`
    SimpRet,
    /// `prefs_pair_ret`
    PairRet,
    /// `prefs_avgjg_ret`
    AvgjgRet,
    /// `prefs_avgjg_Rnonrel_ret`
    AvgjgRnonrelRet,
    /// `prefs_simp_imp`
    SimpImp,
    /// `prefs_pair_imp`
    PairImp,
    /// `prefs_avgjg_imp`
    AvgjgImp,
}

use PrefsMeasure as P;

/// Every preference measure, in trec_eval's order (`all_prefs`).
const ALL_PREFS: [PrefsMeasure; 16] = [
    P::RunId,
    P::NumQ,
    P::NumPrefsPoss,
    P::NumPrefsFul,
    P::NumPrefsFulRet,
    P::Simp,
    P::Pair,
    P::Avgjg,
    P::AvgjgRnonrel,
    P::SimpRet,
    P::PairRet,
    P::AvgjgRet,
    P::AvgjgRnonrelRet,
    P::SimpImp,
    P::PairImp,
    P::AvgjgImp,
];

impl PrefsMeasure {
    /// trec_eval's name.
    pub fn name(self) -> &'static str {
        match self {
            P::RunId => "runid",
            P::NumQ => "num_q",
            P::NumPrefsPoss => "prefs_num_prefs_poss",
            P::NumPrefsFul => "prefs_num_prefs_ful",
            P::NumPrefsFulRet => "prefs_num_prefs_ful_ret",
            P::Simp => "prefs_simp",
            P::Pair => "prefs_pair",
            P::Avgjg => "prefs_avgjg",
            P::AvgjgRnonrel => "prefs_avgjg_Rnonrel",
            P::SimpRet => "prefs_simp_ret",
            P::PairRet => "prefs_pair_ret",
            P::AvgjgRet => "prefs_avgjg_ret",
            P::AvgjgRnonrelRet => "prefs_avgjg_Rnonrel_ret",
            P::SimpImp => "prefs_simp_imp",
            P::PairImp => "prefs_pair_imp",
            P::AvgjgImp => "prefs_avgjg_imp",
        }
    }

    /// Counts, summed over queries and printed as integers.
    pub fn is_count(self) -> bool {
        matches!(self, P::NumPrefsPoss | P::NumPrefsFul | P::NumPrefsFulRet)
    }
}

/// Parse trec_eval `-m` arguments for `-R prefs` / `-R qrels_prefs`: `all_prefs` (every
/// preference measure), `prefs` (trec_eval's short set: `runid`, `num_q`,
/// `prefs_num_prefs_poss`, `prefs_num_prefs_ful`, `prefs_num_prefs_ful_ret`, `prefs_simp`,
/// `prefs_pair`, `prefs_avgjg`) or single names. Each measure once, in trec_eval's order.
pub fn parse_prefs_measures<S: AsRef<str>>(names: &[S]) -> Result<Vec<PrefsMeasure>> {
    let mut out = Vec::new();
    for n in names {
        let n = n.as_ref().trim();
        match n {
            "all_prefs" => out.extend(ALL_PREFS),
            "prefs" => out.extend(&ALL_PREFS[..8]),
            _ => match ALL_PREFS.iter().find(|m| m.name() == n) {
                Some(&m) => out.push(m),
                None => {
                    return Err(Error::Measure(
                        n.into(),
                        "with preferences (-R prefs, -R qrels_prefs) trec_eval computes only \
                         all_prefs, prefs, runid, num_q and the prefs_* measures"
                            .into(),
                    ));
                }
            },
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid("no measure requested".into()));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Per-query values and summaries of a preference evaluation.
#[derive(Debug, Clone)]
pub struct PrefsEvaluation {
    /// The measures, in trec_eval's order.
    pub measures: Vec<PrefsMeasure>,
    /// Query id -> one value per measure (0 for `runid`, 1 for `num_q`).
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// Summaries: sums for the counts, the number of queries for `num_q`, means otherwise.
    pub means: Vec<f64>,
    /// trec_eval's `runid`: the tag of the run's last line.
    pub run_id: String,
}

impl PrefsEvaluation {
    /// Number of queries averaged over.
    pub fn num_queries(&self) -> usize {
        self.per_query.len()
    }

    /// trec_eval's text output, byte for byte as `trec_eval -R prefs [-q] -m all_prefs`
    /// prints it.
    pub fn trec_eval_text(&self, per_query: bool) -> String {
        let mut out = String::new();
        let value = |out: &mut String, m: PrefsMeasure, qid: &str, v: f64| {
            let _ = write!(out, "{:<22}\t{qid}\t", m.name());
            if m.is_count() {
                let _ = writeln!(out, "{}", v as i64);
            } else {
                let _ = writeln!(out, "{v:6.4}");
            }
        };
        if per_query {
            for (qid, values) in &self.per_query {
                for (&m, &v) in self.measures.iter().zip(values) {
                    if !matches!(m, P::RunId | P::NumQ) {
                        value(&mut out, m, qid, v);
                    }
                }
            }
        }
        for (&m, &v) in self.measures.iter().zip(&self.means) {
            match m {
                P::RunId => {
                    let _ = writeln!(out, "{:<22}\tall\t{}", "runid", self.run_id);
                }
                P::NumQ => {
                    let _ = writeln!(out, "{:<22}\tall\t{}", "num_q", self.num_queries());
                }
                _ => value(&mut out, m, "all", v),
            }
        }
        out
    }
}

/// Evaluate `run` against preference judgements (trec_eval `-R prefs` / `-R qrels_prefs`).
/// Queries as [`crate::evaluate`]: those of both run and judgements, or with `opts.complete`
/// (`-c`) every judged query, one missing from the run being ranked as trec_eval ranks it
/// (one unjudged document). `opts.max_docs` (`-M`) cuts each ranking; the relevance level and
/// `judged_only` play no part in preference measures (as in trec_eval). Documents tied on
/// score are ranked by docid ascending, as trec_eval's form_prefs_counts.c does (unlike the
/// qrels measures). An inconsistent judgement group (a document in two equivalence classes of
/// one sub-group, or A > B and B > A after closure) is an error.
pub fn evaluate_prefs(
    prefs: &Prefs,
    run: &Run,
    measures: &[PrefsMeasure],
    opts: &EvalOptions,
) -> Result<PrefsEvaluation> {
    if measures.is_empty() {
        return Err(Error::Invalid("no measure requested".into()));
    }
    if opts.max_docs == Some(0) {
        return Err(Error::Invalid("max_docs must be positive".into()));
    }
    let mut per_query = BTreeMap::new();
    for (qid, lines) in &prefs.queries {
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
        let rp = form_prefs_counts(qid, lines, ranking, opts.max_docs)?;
        let values = measures.iter().map(|&m| rp.value(m)).collect();
        per_query.insert(qid.clone(), values);
    }
    let n = per_query.len();
    let means = measures
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let sum = per_query.values().fold(0.0, |a, v: &Vec<f64>| a + v[i]);
            match m {
                P::RunId => 0.0,
                P::NumQ => n as f64,
                m if m.is_count() => sum,
                _ if n > 0 => sum / n as f64,
                _ => sum,
            }
        })
        .collect();
    Ok(PrefsEvaluation {
        measures: measures.to_vec(),
        per_query,
        means,
        run_id: run.run_id().to_string(),
    })
}

/// trec_eval's output for `run` with `-R prefs` or `-R qrels_prefs`, byte for byte (see
/// [`PrefsEvaluation::trec_eval_text`]). As trec_eval, it is an error when no query has both
/// results and judgements.
pub fn trec_eval_prefs_output(
    prefs: &Prefs,
    run: &Run,
    measures: &[PrefsMeasure],
    opts: &EvalOptions,
    per_query: bool,
) -> Result<String> {
    let e = evaluate_prefs(prefs, run, measures, opts)?;
    if e.num_queries() == 0 {
        return Err(Error::Invalid(
            "no queries with both results and relevance info".into(),
        ));
    }
    Ok(e.trec_eval_text(per_query))
}

/// An equivalence class: the docid ranks (ascending) of one rel_level.
struct Ec {
    rel_level: f64,
    ranks: Vec<usize>,
}

/// trec_eval's JG: the preferences of one judgement group and their counts.
#[derive(Default)]
struct Jg {
    /// non-empty: EC representation; empty: preference array
    ecs: Vec<Ec>,
    /// preference array (num_judged x num_judged), when several sub-groups
    pa: Vec<bool>,
    rel_array: Vec<f64>,
    ful_ret: i64,
    poss_ret: i64,
    ful_imp: i64,
    poss_imp: i64,
    poss_notoccur: i64,
    num_nonrel: i64,
    num_nonrel_ret: i64,
    num_rel: i64,
    num_rel_ret: i64,
}

/// trec_eval's RESULTS_PREFS.
struct ResultsPrefs {
    jgs: Vec<Jg>,
    num_judged: usize,
    num_judged_ret: usize,
    /// counts array: ca[i * num_judged + j] = number of jgs preferring i to j
    ca: Vec<u32>,
}

fn form_prefs_counts(
    qid: &str,
    lines: &[PrefLine],
    run: &QueryRun,
    max_docs: Option<usize>,
) -> Result<ResultsPrefs> {
    // results by score descending, then docno ascending (form_prefs_counts.c's comparator)
    let mut docs: Vec<(&str, f64)> = run.iter().collect();
    docs.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    docs.truncate(max_docs.unwrap_or(usize::MAX));
    let judged: std::collections::BTreeSet<&str> = lines.iter().map(|l| l.docno.as_str()).collect();
    let mut rank_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (d, _) in &docs {
        if judged.contains(d) {
            let r = rank_of.len();
            rank_of.insert(d, r);
        }
    }
    let num_judged_ret = rank_of.len();
    let mut next = num_judged_ret;
    for d in &judged {
        rank_of.entry(d).or_insert_with(|| {
            next += 1;
            next - 1
        });
    }
    let num_judged = next;
    // prefs by jg, jsg, rel_level descending, rank
    let mut pr: Vec<(&PrefLine, usize)> = lines
        .iter()
        .map(|l| (l, rank_of[l.docno.as_str()]))
        .collect();
    pr.sort_by(|a, b| {
        a.0.jg
            .as_bytes()
            .cmp(b.0.jg.as_bytes())
            .then_with(|| a.0.jsg.as_bytes().cmp(b.0.jsg.as_bytes()))
            .then_with(|| {
                b.0.rel_level
                    .partial_cmp(&a.0.rel_level)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then_with(|| a.1.cmp(&b.1))
    });
    let mut rp = ResultsPrefs {
        jgs: Vec::new(),
        num_judged,
        num_judged_ret,
        ca: vec![0; num_judged * num_judged],
    };
    let mut start = 0;
    while start < pr.len() {
        let jg = &pr[start].0.jg;
        let end = start + pr[start..].iter().take_while(|p| &p.0.jg == jg).count();
        let group = &pr[start..end];
        let multi_jsg = group.iter().any(|p| p.0.jsg != group[0].0.jsg);
        let j = if multi_jsg {
            form_jg_pa(qid, group, &mut rp)?
        } else {
            form_jg_ec(qid, group, &mut rp)?
        };
        rp.jgs.push(j);
        start = end;
    }
    Ok(rp)
}

fn form_jg_ec(qid: &str, prefs: &[(&PrefLine, usize)], rp: &mut ResultsPrefs) -> Result<Jg> {
    let mut jg = Jg::default();
    for &(l, rank) in prefs {
        match jg.ecs.last_mut() {
            Some(ec) if ec.rel_level == l.rel_level => ec.ranks.push(rank),
            _ => jg.ecs.push(Ec {
                rel_level: l.rel_level,
                ranks: vec![rank],
            }),
        }
    }
    let njr = rp.num_judged_ret;
    let nj = rp.num_judged;
    for ec1 in 0..jg.ecs.len() {
        let e1 = &jg.ecs[ec1];
        let ret = e1.ranks.iter().take_while(|&&r| r < njr).count() as i64;
        if e1.rel_level > 0.0 {
            jg.num_rel_ret += ret;
            jg.num_rel += e1.ranks.len() as i64;
        } else {
            jg.num_nonrel_ret += ret;
            jg.num_nonrel += e1.ranks.len() as i64;
        }
        for ec2 in ec1 + 1..jg.ecs.len() {
            for &r1 in &jg.ecs[ec1].ranks {
                for &r2 in &jg.ecs[ec2].ranks {
                    rp.ca[r1 * nj + r2] += 1;
                    if r1 == r2 {
                        let doc = prefs.iter().find(|p| p.1 == r1).map_or("", |p| &p.0.docno);
                        return Err(Error::Invalid(format!(
                            "query {qid}, judgement group {}: document {doc:?} has different \
                             rel_levels in the same sub-group",
                            prefs[0].0.jg
                        )));
                    }
                    if r1 < r2 {
                        if r2 < njr {
                            jg.ful_ret += 1;
                        } else if r1 < njr {
                            jg.ful_imp += 1;
                        } else {
                            jg.poss_notoccur += 1;
                        }
                    } else if r1 < njr {
                        jg.poss_ret += 1;
                    } else if r2 < njr {
                        jg.poss_imp += 1;
                    } else {
                        jg.poss_notoccur += 1;
                    }
                }
            }
        }
    }
    jg.poss_ret += jg.ful_ret;
    jg.poss_imp += jg.ful_imp;
    Ok(jg)
}

fn form_jg_pa(qid: &str, prefs: &[(&PrefLine, usize)], rp: &mut ResultsPrefs) -> Result<Jg> {
    let nj = rp.num_judged;
    let njr = rp.num_judged_ret;
    let mut jg = Jg {
        pa: vec![false; nj * nj],
        rel_array: vec![-1.0; nj],
        ..Jg::default()
    };
    for (i, &(l, rank)) in prefs.iter().enumerate() {
        let cur = jg.rel_array[rank];
        if (cur > 0.0 && l.rel_level == 0.0) || (cur == 0.0 && l.rel_level > 0.0) {
            return Err(Error::Invalid(format!(
                "query {qid}, judgement group {}: document {:?} has both 0 and non-0 \
                 rel_level",
                l.jg, l.docno
            )));
        }
        jg.rel_array[rank] = l.rel_level;
        let mut j = i + 1;
        while j < prefs.len() && prefs[j].0.jsg == l.jsg && prefs[j].0.rel_level == l.rel_level {
            j += 1;
        }
        while j < prefs.len() && prefs[j].0.jsg == l.jsg {
            jg.pa[rank * nj + prefs[j].1] = true;
            j += 1;
        }
    }
    // transitive closure (trec_eval multiplies the array by itself until it stops changing)
    let a = &mut jg.pa;
    for i in 0..nj {
        a[i * nj + i] = true;
    }
    for k in 0..nj {
        for i in 0..nj {
            if a[i * nj + k] {
                for j in 0..nj {
                    if a[k * nj + j] {
                        a[i * nj + j] = true;
                    }
                }
            }
        }
    }
    for i in 0..nj {
        a[i * nj + i] = false;
    }
    for i in 0..nj {
        for j in 0..nj {
            if i != j && a[i * nj + j] && a[j * nj + i] {
                let doc = |r: usize| prefs.iter().find(|p| p.1 == r).map_or("", |p| &p.0.docno);
                return Err(Error::Invalid(format!(
                    "query {qid}, judgement group {}: inconsistent preferences between \
                     documents {:?} and {:?}",
                    prefs[0].0.jg,
                    doc(i),
                    doc(j)
                )));
            }
        }
    }
    // add_pa_pref_to_jg
    for i in 0..njr {
        if jg.rel_array[i] > 0.0 {
            jg.num_rel_ret += 1;
        } else if jg.rel_array[i] == 0.0 {
            jg.num_nonrel_ret += 1;
        }
    }
    jg.num_rel = jg.num_rel_ret;
    jg.num_nonrel = jg.num_nonrel_ret;
    for i in njr..nj {
        if jg.rel_array[i] > 0.0 {
            jg.num_rel += 1;
        } else if jg.rel_array[i] == 0.0 {
            jg.num_nonrel += 1;
        }
    }
    let a = &jg.pa;
    for i in 0..nj {
        for j in 0..nj {
            if i == j || !a[i * nj + j] {
                continue;
            }
            rp.ca[i * nj + j] += 1;
            match (i < njr, j < njr) {
                (true, true) if j < i => jg.poss_ret += 1,
                (true, true) => jg.ful_ret += 1,
                (true, false) => jg.ful_imp += 1,
                (false, true) => jg.poss_imp += 1,
                (false, false) => jg.poss_notoccur += 1,
            }
        }
    }
    jg.poss_ret += jg.ful_ret;
    jg.poss_imp += jg.ful_imp;
    Ok(jg)
}

impl ResultsPrefs {
    fn ca(&self, i: usize, j: usize) -> u32 {
        self.ca[i * self.num_judged + j]
    }

    /// m_prefs_pair*.c: the mean over document pairs with a preference of the share of the
    /// judgement groups preferring the better-ranked one; `imp` adds retrieved/unretrieved
    /// pairs, `notoccur` counts unretrieved pairs (with no share).
    fn pair(&self, imp: bool, notoccur: bool) -> f64 {
        let (njr, nj) = (self.num_judged_ret, self.num_judged);
        let (mut sum, mut num_pairs) = (0.0f64, 0i64);
        let mut add = |i: usize, j: usize, share: bool| {
            let (a, b) = (self.ca(i, j), self.ca(j, i));
            if a != 0 || b != 0 {
                num_pairs += 1;
                if share {
                    sum += a as f64 / (a + b) as f64;
                }
            }
        };
        for i in 0..njr {
            for j in i + 1..njr {
                add(i, j, true);
            }
        }
        if imp {
            for i in 0..njr {
                for j in njr..nj {
                    add(i, j, true);
                }
            }
        }
        if notoccur {
            for i in njr..nj {
                for j in i + 1..nj {
                    add(i, j, false);
                }
            }
        }
        if num_pairs > 0 {
            sum / num_pairs as f64
        } else {
            0.0
        }
    }

    /// Sum of `f(jg)` as ful/poss ratios over jgs with poss > 0, divided by the number of jgs
    /// when positive (m_prefs_avgjg*.c).
    fn avgjg(&self, f: impl Fn(&Jg) -> (i64, i64)) -> f64 {
        let mut sum = 0.0f64;
        for jg in &self.jgs {
            let (ful, poss) = f(jg);
            if poss != 0 {
                sum += ful as f64 / poss as f64;
            }
        }
        if sum > 0.0 {
            sum / self.jgs.len() as f64
        } else {
            0.0
        }
    }

    fn simp(&self, f: impl Fn(&Jg) -> (i64, i64)) -> f64 {
        let (mut ful, mut poss) = (0i64, 0i64);
        for jg in &self.jgs {
            let (a, b) = f(jg);
            ful += a;
            poss += b;
        }
        if poss != 0 {
            ful as f64 / poss as f64
        } else {
            0.0
        }
    }

    fn rnonrel(&self, ret: bool) -> f64 {
        let mut sum = 0.0f64;
        for jg in &self.jgs {
            let (r, n) = if ret {
                (jg.num_rel_ret, jg.num_nonrel_ret)
            } else {
                (jg.num_rel, jg.num_nonrel)
            };
            let (ful, poss) = if r >= n {
                let (mut ful, mut poss) = if ret {
                    (jg.ful_ret, jg.poss_ret)
                } else {
                    (
                        jg.ful_ret + jg.ful_imp,
                        jg.poss_ret + jg.poss_imp + jg.poss_notoccur,
                    )
                };
                ful += jg.num_rel_ret * (r - n);
                poss += jg.num_rel * (r - n);
                (ful, poss)
            } else {
                self.recalculate(jg, ret)
            };
            sum += ful as f64 / poss as f64;
        }
        if sum > 0.0 {
            sum / self.jgs.len() as f64
        } else {
            0.0
        }
    }

    /// `recalculate` of m_prefs_avgjg_Rnonrel.c (`ret` false) and
    /// m_prefs_avgjg_Rnonrel_ret.c (`ret` true), quirks included.
    fn recalculate(&self, jg: &Jg, ret: bool) -> (i64, i64) {
        let njr = self.num_judged_ret;
        let (mut ful, mut poss) = (0i64, 0i64);
        if !jg.ecs.is_empty() {
            let last = &jg.ecs[jg.ecs.len() - 1].ranks;
            let keep = if ret { jg.num_rel_ret } else { jg.num_rel };
            let new_nonrel = &last[..(keep.max(0) as usize).min(last.len())];
            // in the _ret variant, only retrieved documents (a prefix of each EC)
            let part = |v: &'_ [usize]| -> usize {
                if ret {
                    v.iter().take_while(|&&r| r < njr).count()
                } else {
                    v.len()
                }
            };
            let mut count = |r1: usize, r2: usize| {
                if r1 < r2 && (ret || r1 < njr) {
                    ful += 1;
                } else {
                    poss += 1;
                }
            };
            let n = jg.ecs.len();
            for ec1 in 0..n {
                let e1 = &jg.ecs[ec1].ranks;
                for ec2 in ec1 + 1..n.saturating_sub(1) {
                    let e2 = &jg.ecs[ec2].ranks;
                    for &r1 in &e1[..part(e1)] {
                        for &r2 in &e2[..part(e2)] {
                            count(r1, r2);
                        }
                    }
                }
            }
            for ec1 in 0..n {
                let e1 = &jg.ecs[ec1].ranks;
                for &r1 in &e1[..part(e1)] {
                    for &r2 in &new_nonrel[..part(new_nonrel)] {
                        count(r1, r2);
                    }
                }
            }
            poss += ful;
        } else {
            let nj = self.num_judged;
            let a = &jg.pa;
            let scan = if ret { njr } else { nj };
            let mut seen = 0i64;
            let mut first_discarded = scan;
            for i in 0..scan {
                if jg.rel_array[i] == 0.0 {
                    seen += 1;
                    if seen == jg.num_rel + 1 {
                        first_discarded = i;
                        break;
                    }
                }
            }
            let skip = |i: usize| i >= first_discarded && jg.rel_array[i] == 0.0;
            for i in 0..njr {
                if skip(i) {
                    continue;
                }
                for j in 0..i {
                    if !skip(j) && a[i * nj + j] {
                        poss += 1;
                    }
                }
                for j in i + 1..njr {
                    if !skip(j) && a[i * nj + j] {
                        ful += 1;
                    }
                }
                if !ret {
                    for j in njr..nj {
                        if !skip(j) && a[i * nj + j] {
                            ful += 1;
                        }
                    }
                }
            }
            if !ret {
                for i in njr..nj {
                    if skip(i) {
                        continue;
                    }
                    for j in 0..nj {
                        if !skip(j) && a[i * nj + j] {
                            poss += 1;
                        }
                    }
                }
            }
            poss += ful;
        }
        (ful, poss)
    }

    fn value(&self, m: PrefsMeasure) -> f64 {
        let all = |j: &Jg| {
            (
                j.ful_ret + j.ful_imp,
                j.poss_ret + j.poss_imp + j.poss_notoccur,
            )
        };
        let ret = |j: &Jg| (j.ful_ret, j.poss_ret);
        let imp = |j: &Jg| (j.ful_ret + j.ful_imp, j.poss_ret + j.poss_imp);
        match m {
            P::RunId => 0.0,
            P::NumQ => 1.0,
            P::NumPrefsPoss => self.jgs.iter().map(|j| all(j).1).sum::<i64>() as f64,
            P::NumPrefsFul => self.jgs.iter().map(|j| all(j).0).sum::<i64>() as f64,
            P::NumPrefsFulRet => self.jgs.iter().map(|j| j.ful_ret).sum::<i64>() as f64,
            P::Simp => self.simp(all),
            P::Pair => self.pair(true, true),
            P::Avgjg => self.avgjg(all),
            P::AvgjgRnonrel => self.rnonrel(false),
            P::SimpRet => self.simp(ret),
            P::PairRet => self.pair(false, false),
            P::AvgjgRet => self.avgjg(ret),
            P::AvgjgRnonrelRet => self.rnonrel(true),
            P::SimpImp => self.simp(imp),
            P::PairImp => self.pair(true, false),
            P::AvgjgImp => self.avgjg(imp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(prefs: &str) -> Result<PrefsEvaluation> {
        let prefs = Prefs::from_str_named(prefs, "prefs", false)?;
        // d2 first, then d1, then the unjudged d4; d3 (judged) is not retrieved
        let run =
            Run::from_str_named("q Q0 d2 1 3.0 r\nq Q0 d1 2 2.0 r\nq Q0 d4 3 1.0 r\n", "run")?;
        let measures = parse_prefs_measures(&["all_prefs"])?;
        evaluate_prefs(&prefs, &run, &measures, &EvalOptions::default())
    }

    /// The values of all_prefs (runid and num_q dropped).
    fn values(e: &PrefsEvaluation) -> Vec<f64> {
        e.per_query["q"][2..].to_vec()
    }

    #[test]
    fn equivalence_classes() {
        // d1 > d2 > d3 (non-relevant). Ranks: d2 0, d1 1 (retrieved), d3 2 (not).
        // d1 > d2 is retrieved but not fulfilled; d1 > d3 and d2 > d3 are implied fulfilled.
        let e = eval("# one user\nq A s d1 2\nq A s d2 1\nq A s d3 0\n").unwrap();
        let (t, z) = (2.0 / 3.0, 0.0);
        // poss ful ful_ret simp pair avgjg Rnonrel simp_ret pair_ret avgjg_ret Rnonrel_ret
        // simp_imp pair_imp avgjg_imp; Rnonrel: R = 2 >= N = 1: (2 + 2) / (3 + 2);
        // Rnonrel_ret: R = 2 retrieved, N = 0: (0 + 2 * 2) / (1 + 2 * 2)
        assert_eq!(
            values(&e),
            [3.0, 2.0, 0.0, t, t, t, 0.8, z, z, z, 0.8, t, t, t]
        );
        let text = e.trec_eval_text(true);
        assert!(text.starts_with("prefs_num_prefs_poss  \tq\t3\n"), "{text}");
        assert!(
            text.contains("prefs_simp            \tall\t0.6667\n"),
            "{text}"
        );
        assert!(text.contains("runid                 \tall\tr\nnum_q                 \tall\t1\n"));
    }

    #[test]
    fn preference_arrays_are_closed_transitively() {
        // two sub-groups: d1 > d2 and d2 > d3, so d1 > d3; every document relevant
        let e = eval("q B s1 d1 2\nq B s1 d2 1\nq B s2 d2 2\nq B s2 d3 1\n").unwrap();
        let t = 2.0 / 3.0;
        // Rnonrel: R = 3, N = 0: (2 + 2 * 3) / (3 + 3 * 3); Rnonrel_ret: R = 2 retrieved,
        // N = 0: (0 + 2 * 2) / (1 + 3 * 2), trec_eval multiplying by all relevant (3)
        assert_eq!(
            values(&e),
            [3.0, 2.0, 0.0, t, t, t, t, 0.0, 0.0, 0.0, 4.0 / 7.0, t, t, t]
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(eval("q B s1 d1 2\nq B s1 d2 1\nq B s2 d2 2\nq B s2 d1 1\n").is_err());
        assert!(eval("q A s d1 2\nq A s d1 1\n").is_err());
        let e = Prefs::from_str_named("q A s d1 2\nq A d1 1\n", "pf", false).unwrap_err();
        assert!(e.to_string().starts_with("pf:2:"), "{e}");
        let e = Prefs::from_str_named("q A d1 x\n", "qp", true).unwrap_err();
        assert!(e.to_string().starts_with("qp:1:"), "{e}");
        assert!(parse_prefs_measures(&["map"]).is_err());
        assert_eq!(parse_prefs_measures(&["prefs"]).unwrap().len(), 8);
    }
}
