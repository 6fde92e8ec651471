//! trec_eval 10.0's per-query measures, ported from its `m_*.c` files line by line (the same
//! arithmetic in the same order, so that values agree to the last printed digit).
//!
//! Every function takes `ranked`, trec_eval's `results_rel_list`: the grade of each retrieved
//! document in ranking order, [`NONPOOL`] for documents without a judgement and [`UNJUDGED`]
//! for documents judged with a negative grade.

use crate::eval::{NONPOOL, UNJUDGED};
use crate::measure::{Kind, Level, Measure};
use crate::qrels::QueryQrels;

/// trec_eval's `MIN_GEO_MEAN`: the floor of per-query values in geometric means.
pub const MIN_GEO_MEAN: f64 = 0.00001;
/// trec_eval's `INFAP_EPSILON`.
const INFAP_EPSILON: f64 = 0.00001;

/// trec_eval's `RES_RELS` summary of one query.
pub(crate) struct Stats<'a> {
    pub ranked: &'a [i64],
    pub level: i64,
    pub num_ret: usize,
    pub num_rel: u64,
    pub num_rel_ret: u64,
    pub num_nonpool: u64,
    pub num_unjudged: u64,
    /// (grade, count) of the judged documents with grade >= 0, ascending.
    pub levels: &'a [(i64, u64)],
}

impl<'a> Stats<'a> {
    pub(crate) fn new(ranked: &'a [i64], qrels: &'a QueryQrels, level: i64) -> Self {
        let mut s = Stats {
            ranked,
            level,
            num_ret: ranked.len(),
            num_rel: qrels.num_relevant(level),
            num_rel_ret: 0,
            num_nonpool: 0,
            num_unjudged: 0,
            levels: qrels.levels(),
        };
        for &g in ranked {
            match g {
                NONPOOL => s.num_nonpool += 1,
                UNJUDGED => s.num_unjudged += 1,
                g if g >= level => s.num_rel_ret += 1,
                _ => {}
            }
        }
        s
    }

    fn is_rel(&self, g: i64) -> bool {
        g >= self.level
    }

    /// Count of judged documents at `grade` (trec_eval's `rel_levels[grade]`).
    fn at_level(&self, grade: i64) -> u64 {
        self.levels
            .iter()
            .find(|(g, _)| *g == grade)
            .map_or(0, |(_, c)| *c)
    }

    /// trec_eval's `num_rel_levels`: the highest judged grade (>= 0) plus one.
    fn num_rel_levels(&self) -> i64 {
        self.levels
            .iter()
            .rev()
            .find(|(_, c)| *c > 0)
            .map_or(0, |(g, _)| g + 1)
    }

    fn rel_in(&self, k: usize) -> u64 {
        self.ranked[..k.min(self.num_ret)]
            .iter()
            .filter(|&&g| self.is_rel(g))
            .count() as u64
    }
}

/// One gain level of trec_eval's `GAINS` (gain_init.c).
#[derive(Debug, Clone, Copy)]
struct Gain {
    level: i64,
    gain: f64,
    count: u64,
}

/// trec_eval's `setup_gains`: `level=gain` pairs first (names that are integers), then every
/// level from 0 to the highest judged grade with gain = level unless given; sorted by gain with
/// trec_eval's comparator (the difference truncated to an int), stably.
fn setup_gains(m: &Measure, s: &Stats) -> Vec<Gain> {
    let mut gains: Vec<Gain> = m
        .pairs()
        .into_iter()
        .filter(|(name, _)| valid_int(name))
        .filter_map(|(name, g)| {
            Some(Gain {
                level: name.trim_start_matches('+').parse().ok()?,
                gain: g,
                count: 0,
            })
        })
        .collect();
    let custom = gains.len();
    for i in 0..s.num_rel_levels() {
        match gains[..custom].iter_mut().find(|g| g.level == i) {
            Some(g) => g.count = s.at_level(i),
            None => gains.push(Gain {
                level: i,
                gain: i as f64,
                count: s.at_level(i),
            }),
        }
    }
    // insertion sort: stable, and never upset by the comparator's non-transitive ties
    let cmp = |a: &Gain, b: &Gain| (a.gain - b.gain) as i32;
    for i in 1..gains.len() {
        let mut j = i;
        while j > 0 && cmp(&gains[j - 1], &gains[j]) > 0 {
            gains.swap(j - 1, j);
            j -= 1;
        }
    }
    gains
}

fn valid_int(s: &str) -> bool {
    let d = s.strip_prefix(['-', '+']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn get_gain(grade: i64, gains: &[Gain]) -> f64 {
    gains
        .iter()
        .find(|g| g.level == grade)
        .map_or(0.0, |g| g.gain)
}

/// The ideal ranking's gains, walked as trec_eval walks them: `next()` moves one rank down.
struct Ideal<'a> {
    gains: &'a [Gain],
    cur: isize,
    at: u64,
    gain: f64,
}

impl<'a> Ideal<'a> {
    fn new(gains: &'a [Gain]) -> Self {
        let cur = gains.len() as isize - 1;
        Ideal {
            gains,
            cur,
            at: 0,
            gain: if cur >= 0 {
                gains[cur as usize].gain
            } else {
                0.0
            },
        }
    }
    fn step(&mut self) {
        self.at += 1;
        while self.cur >= 0 && self.at > self.gains[self.cur as usize].count {
            self.at = 1;
            self.cur -= 1;
            self.gain = if self.cur >= 0 {
                self.gains[self.cur as usize].gain
            } else {
                0.0
            };
        }
    }
}

fn log2(x: f64) -> f64 {
    x.log2()
}

/// The value of a trec_eval-only measure (and string, for `relstring`).
pub(crate) fn value(m: &Measure, s: &Stats) -> (f64, Option<String>) {
    let v = match m.kind {
        Kind::RunId => 0.0,
        Kind::NumQ => 1.0,
        Kind::NumRet => s.num_ret as f64,
        Kind::NumRel => s.num_rel as f64,
        Kind::NumRelRet => s.num_rel_ret as f64,
        Kind::GmMap => ap(s),
        Kind::GmBpref => bpref(s),
        Kind::IprecAtRecall => iprec(s, m.level.map_or(f64::NAN, Level::get)),
        Kind::RelString => return (0.0, Some(relstring(m, s))),
        Kind::InfAP => infap(s),
        Kind::RprecMult => rprec_mult(s, m.level.map_or(f64::NAN, Level::get)),
        Kind::Utility => {
            let p = m.doubles();
            if p.len() != 4 {
                return (f64::NAN, None);
            }
            let (rr, ret, rel) = (s.num_rel_ret as f64, s.num_ret as f64, s.num_rel as f64);
            // -N (number of documents in the collection) is trec_eval's default, 0
            p[0] * rr + p[1] * (ret - rr) + p[2] * (rel - rr) + p[3] * (0.0 + rr - ret - rel)
        }
        Kind::ElevenPtAvg => {
            let levels = m.doubles();
            if levels.is_empty() {
                return (f64::NAN, None);
            }
            // trec_eval adds the cutoffs from the last to the first
            let sum = levels
                .iter()
                .rev()
                .fold(0.0, |acc, &x| acc + iprec_or_zero(s, x));
            sum / levels.len() as f64
        }
        Kind::BinG => bin_g(s),
        Kind::G => g(m, s),
        Kind::Ndcg => ndcg(m, s),
        Kind::NdcgRel => ndcg_rel(m, s),
        Kind::Rndcg => rndcg(m, s),
        Kind::RelativeP => match m.cutoff {
            Some(k) if s.num_rel > 0 => s.rel_in(k) as f64 / k.min(s.num_rel as usize) as f64,
            Some(_) => 0.0,
            None => f64::NAN,
        },
        Kind::SetP => {
            if s.num_ret > 0 {
                s.num_rel_ret as f64 / s.num_ret as f64
            } else {
                0.0
            }
        }
        Kind::SetRelativeP => {
            if s.num_ret > 0 && s.num_rel > 0 {
                s.num_rel_ret as f64 / (s.num_ret as u64).min(s.num_rel) as f64
            } else {
                0.0
            }
        }
        Kind::SetRecall => {
            if s.num_rel > 0 {
                s.num_rel_ret as f64 / s.num_rel as f64
            } else {
                0.0
            }
        }
        Kind::SetMap => {
            if s.num_ret > 0 && s.num_rel > 0 {
                (s.num_rel_ret as f64 * s.num_rel_ret as f64)
                    / (s.num_ret as f64 * s.num_rel as f64)
            } else {
                0.0
            }
        }
        Kind::SetF => {
            if s.num_rel_ret > 0 {
                let p = s.num_rel_ret as f64 / s.num_ret as f64;
                let r = s.num_rel_ret as f64 / s.num_rel as f64;
                let x = m.doubles().first().copied().unwrap_or(1.0);
                (x + 1.0) * p * r / (x * p + r)
            } else {
                0.0
            }
        }
        Kind::NumNonrelJudgedRet => {
            (s.num_ret as u64 - s.num_nonpool - s.num_unjudged - s.num_rel_ret) as f64
        }
        Kind::Rbp => rbp(m, s),
        Kind::RbpResid => rbp_resid(m, s),
        Kind::Unj => match m.cutoff {
            Some(k) => {
                let n = s.ranked[..k.min(s.num_ret)]
                    .iter()
                    .filter(|&&g| g == NONPOOL || g == UNJUDGED)
                    .count();
                n as f64 / k as f64
            }
            None => f64::NAN,
        },
        // the measures of eval.rs
        Kind::RR
        | Kind::AP
        | Kind::P
        | Kind::Recall
        | Kind::RPrec
        | Kind::Success
        | Kind::Judged
        | Kind::Bpref => f64::NAN,
    };
    (v, None)
}

fn ap(s: &Stats) -> f64 {
    let (mut found, mut sum) = (0u64, 0.0f64);
    for (i, &g) in s.ranked.iter().enumerate() {
        if s.is_rel(g) {
            found += 1;
            sum += found as f64 / (i + 1) as f64;
        }
    }
    if found > 0 {
        sum / s.num_rel as f64
    } else {
        0.0
    }
}

fn bpref(s: &Stats) -> f64 {
    let num_nonrel: u64 = s
        .levels
        .iter()
        .filter(|(g, _)| *g < s.level)
        .map(|(_, c)| c)
        .sum();
    let (mut nonrel_so_far, mut b) = (0u64, 0.0f64);
    for &g in s.ranked {
        if g < 0 {
            continue;
        }
        if g < s.level {
            nonrel_so_far += 1;
        } else if nonrel_so_far > 0 {
            b += 1.0 - (nonrel_so_far.min(s.num_rel) as f64) / (num_nonrel.min(s.num_rel) as f64);
        } else {
            b += 1.0;
        }
    }
    if s.num_rel > 0 {
        b / s.num_rel as f64
    } else {
        b
    }
}

/// trec_eval's interpolated precision at recall `x` (m_iprec_at_recall.c, 10.0: the cutoff is
/// `lround(x * num_rel)`); `None` where trec_eval leaves the value at 0 (cutoff beyond the
/// relevant retrieved).
fn iprec_cut(s: &Stats, x: f64) -> Option<f64> {
    let cutoff = (x * s.num_rel as f64).round() as i64;
    if cutoff > s.num_rel_ret as i64 {
        return None;
    }
    let mut int_precis = s.num_rel_ret as f64 / s.num_ret as f64;
    let mut rel_so_far = s.num_rel_ret as i64;
    let mut i = s.num_ret;
    while i > 0 && rel_so_far > 0 {
        let precis = rel_so_far as f64 / i as f64;
        if int_precis < precis {
            int_precis = precis;
        }
        if s.is_rel(s.ranked[i - 1]) {
            if rel_so_far == cutoff {
                return Some(int_precis);
            }
            rel_so_far -= 1;
        }
        i -= 1;
    }
    Some(int_precis)
}

fn iprec(s: &Stats, x: f64) -> f64 {
    iprec_cut(s, x).unwrap_or(0.0)
}

fn iprec_or_zero(s: &Stats, x: f64) -> f64 {
    iprec_cut(s, x).unwrap_or(0.0)
}

/// m_Rprec_mult.c: precision at `(long)(x * num_rel + 0.9)` documents.
fn rprec_mult(s: &Stats, x: f64) -> f64 {
    let cutoff = (x * s.num_rel as f64 + 0.9) as i64;
    if cutoff > s.num_ret as i64 {
        return s.num_rel_ret as f64 / cutoff as f64;
    }
    if cutoff <= 0 {
        return 0.0;
    }
    let k = cutoff as usize;
    // trec_eval walks up from the bottom and stops once every relevant document is passed
    let rel = s.rel_in(k);
    if rel == 0 { 0.0 } else { rel as f64 / k as f64 }
}

fn relstring(m: &Measure, s: &Stats) -> String {
    let len = m.doubles().first().copied().unwrap_or(10.0) as i64;
    let len = len.clamp(0, s.num_ret as i64) as usize;
    s.ranked[..len]
        .iter()
        .map(|&r| match r {
            r if r > 9 => '>',
            r if r >= 0 => char::from(b'0' + r as u8),
            NONPOOL => '-',
            UNJUDGED => '.',
            _ => '<',
        })
        .collect()
}

fn infap(s: &Stats) -> f64 {
    let (mut nonrel, mut rel, mut unjudged) = (0i64, 0i64, 0i64);
    let mut inf_ap = 0.0f64;
    for (j, &g) in s.ranked.iter().enumerate() {
        if g == NONPOOL {
            continue;
        }
        if g == UNJUDGED {
            unjudged += 1;
            continue;
        }
        if g >= 0 && g < s.level {
            nonrel += 1;
        } else {
            rel += 1;
            if j == 0 {
                inf_ap += 1.0;
            } else {
                let fj = j as f64;
                inf_ap += 1.0 / (fj + 1.0)
                    + (fj / (fj + 1.0))
                        * (((rel - 1 + nonrel + unjudged) as f64) / fj)
                        * (((rel - 1) as f64 + INFAP_EPSILON)
                            / ((rel - 1 + nonrel) as f64 + 2.0 * INFAP_EPSILON));
            }
        }
    }
    if s.num_rel > 0 {
        inf_ap /= s.num_rel as f64;
    }
    inf_ap
}

fn bin_g(s: &Stats) -> f64 {
    let (mut rel, mut sum) = (0i64, 0.0f64);
    for (i, &g) in s.ranked.iter().enumerate() {
        if s.is_rel(g) {
            rel += 1;
            sum += 1.0 / log2((3 + i as i64 - rel) as f64);
        }
    }
    if rel > 0 { sum / s.num_rel as f64 } else { 0.0 }
}

fn g(m: &Measure, s: &Stats) -> f64 {
    let gains = setup_gains(m, s);
    let mut ideal = Ideal::new(&gains);
    let (mut results_g, mut sum_results, mut sum_ideal, mut sum_cost) = (0.0, 0.0, 0.0, 0.0);
    let min_cost = 1.0;
    let mut i = 0;
    while i < s.num_ret && ideal.gain > 0.0 {
        let rg = get_gain(s.ranked[i], &gains);
        sum_results += rg;
        ideal.step();
        if ideal.gain > 0.0 {
            sum_ideal += ideal.gain;
        }
        if ideal.gain >= min_cost {
            sum_cost += ideal.gain;
        } else {
            sum_cost += min_cost;
        }
        if rg != 0.0 {
            results_g += rg / log2(2.0 + sum_cost - sum_results);
        }
        i += 1;
    }
    while i < s.num_ret {
        let rg = get_gain(s.ranked[i], &gains);
        sum_results += rg;
        sum_cost += min_cost;
        if rg != 0.0 {
            results_g += rg / log2(2.0 + sum_cost - sum_results);
        }
        i += 1;
    }
    while ideal.gain > 0.0 {
        ideal.step();
        if ideal.gain > 0.0 {
            sum_ideal += ideal.gain;
        }
    }
    if sum_ideal > 0.0 {
        results_g / sum_ideal
    } else {
        0.0
    }
}

/// m_ndcg.c (without a cutoff; gains from the parameters or the grades).
fn ndcg(m: &Measure, s: &Stats) -> f64 {
    let gains = setup_gains(m, s);
    let mut ideal = Ideal::new(&gains);
    let (mut results_dcg, mut ideal_dcg) = (0.0, 0.0);
    let mut i = 0usize;
    while i < s.num_ret && ideal.gain > 0.0 {
        let rg = get_gain(s.ranked[i], &gains);
        if rg != 0.0 {
            results_dcg += rg / log2((i + 2) as f64);
        }
        ideal.step();
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        i += 1;
    }
    while i < s.num_ret {
        let rg = get_gain(s.ranked[i], &gains);
        if rg != 0.0 {
            results_dcg += rg / log2((i + 2) as f64);
        }
        i += 1;
    }
    while ideal.gain > 0.0 {
        ideal.step();
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        i += 1;
    }
    if ideal_dcg > 0.0 {
        results_dcg / ideal_dcg
    } else {
        0.0
    }
}

fn ndcg_rel(m: &Measure, s: &Stats) -> f64 {
    let gains = setup_gains(m, s);
    let mut ideal = Ideal::new(&gains);
    let (mut results_dcg, mut ideal_dcg, mut sum) = (0.0, 0.0, 0.0);
    let (mut num_rel_ret, mut num_rel) = (0i64, 0i64);
    let mut i = 0usize;
    while i < s.num_ret && ideal.gain > 0.0 {
        let rg = get_gain(s.ranked[i], &gains);
        if rg != 0.0 {
            results_dcg += rg / log2((i + 2) as f64);
        }
        ideal.step();
        if ideal.gain > 0.0 {
            num_rel += 1;
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        if rg > 0.0 {
            sum += results_dcg / ideal_dcg;
            num_rel_ret += 1;
        }
        i += 1;
    }
    while i < s.num_ret {
        let rg = get_gain(s.ranked[i], &gains);
        if rg != 0.0 {
            results_dcg += rg / log2((i + 2) as f64);
        }
        if rg > 0.0 {
            sum += results_dcg / ideal_dcg;
            num_rel_ret += 1;
        }
        i += 1;
    }
    while ideal.gain > 0.0 {
        ideal.step();
        if ideal.gain > 0.0 {
            num_rel += 1;
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        i += 1;
    }
    sum += (num_rel - num_rel_ret) as f64 * results_dcg / ideal_dcg;
    if sum > 0.0 { sum / num_rel as f64 } else { 0.0 }
}

fn rndcg(m: &Measure, s: &Stats) -> f64 {
    let gains = setup_gains(m, s);
    if s.num_rel == 0 {
        return 0.0;
    }
    let mut ideal = Ideal::new(&gains);
    let (mut results_dcg, mut ideal_dcg, mut sum) = (0.0, 0.0, 0.0);
    let mut old_ideal_gain = ideal.gain;
    let mut changes = 0i64;
    let mut i = 0usize;
    while i < s.num_ret && ideal.gain > 0.0 {
        let rg = get_gain(s.ranked[i], &gains);
        ideal.step();
        if old_ideal_gain != ideal.gain {
            if ideal_dcg > 0.0 {
                sum += results_dcg / ideal_dcg;
                changes += 1;
            }
            old_ideal_gain = ideal.gain;
        }
        if rg != 0.0 {
            results_dcg += rg / log2((i + 2) as f64);
        }
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        i += 1;
    }
    if i < s.num_ret {
        while i < s.num_ret {
            let rg = get_gain(s.ranked[i], &gains);
            if rg != 0.0 {
                results_dcg += rg / log2((i + 2) as f64);
            }
            i += 1;
        }
        if ideal_dcg > 0.0 {
            sum += results_dcg / ideal_dcg;
            changes += 1;
        }
    }
    while ideal.gain > 0.0 {
        ideal.step();
        if old_ideal_gain != ideal.gain {
            if ideal_dcg > 0.0 {
                sum += results_dcg / ideal_dcg;
                changes += 1;
            }
            old_ideal_gain = ideal.gain;
        }
        if ideal.gain > 0.0 {
            ideal_dcg += ideal.gain / log2((i + 2) as f64);
        }
        i += 1;
    }
    sum / changes as f64
}

fn persistence(m: &Measure) -> f64 {
    m.pairs()
        .iter()
        .filter(|(n, _)| *n == "p")
        .map(|(_, v)| *v)
        .next_back()
        .unwrap_or(0.9)
}

/// m_rbp.c. trec_eval leaves `min` and `max` uninitialised before scanning the gains; they are
/// taken as 0 here (which reproduces trec_eval's test outputs): gains outside [0, 1] are
/// rescaled by (g - min) / (max - min).
fn rbp(m: &Measure, s: &Stats) -> f64 {
    let p = persistence(m);
    let mut gains = setup_gains(m, s);
    let (mut min, mut max) = (0.0f64, 0.0f64);
    for g in &gains {
        if g.gain < min {
            min = g.gain;
        }
        if g.gain > max {
            max = g.gain;
        }
    }
    if min < 0.0 || max > 1.0 {
        for g in &mut gains {
            g.gain = (g.gain - min) / (max - min);
        }
    }
    let (mut sum, mut cur_p) = (0.0, 1.0);
    for &r in s.ranked {
        let gain = get_gain(r, &gains);
        if gain != 0.0 {
            sum += gain * cur_p;
        }
        cur_p *= p;
    }
    (1.0 - p) * sum
}

fn rbp_resid(m: &Measure, s: &Stats) -> f64 {
    let p = persistence(m);
    let (mut unj, mut sum, mut cur_p) = (0u64, 0.0, 1.0);
    for &r in s.ranked {
        if r < 0 {
            unj += 1;
            sum += cur_p;
        }
        cur_p *= p;
    }
    if unj > 0 {
        cur_p + (1.0 - p) * sum
    } else {
        0.0
    }
}
