//! Training groups: for each training query one judged-relevant document and `G - 1` hard
//! negatives from the first stage, sampled with a seeded, portable RNG.
//!
//! # Sampling
//! - The sampler keeps one *pool* per usable training query: its positives (documents judged
//!   with grade >= [`GroupConfig::positive_level`], by id) and its negative candidates (the
//!   first [`GroupConfig::top_k`] documents of the first-stage run in trec_eval's ranking order,
//!   minus every document judged relevant, i.e. with grade > 0, whatever `positive_level`).
//! - Pools are ordered by query id (byte order), whatever order the caller gave the ids in.
//! - Epoch `e` visits every pool once, in an order shuffled by a ChaCha8 stream keyed by
//!   `(seed, e)`. The group of query `q` in epoch `e` draws from a ChaCha8 stream keyed by
//!   `(seed, e, FNV-1a(q))`: one positive uniformly, then `G - 1` distinct negatives uniformly
//!   without replacement (in the drawn order). A query's group therefore does not depend on
//!   the other queries, and the same (seed, data) gives the same groups on every platform
//!   (ChaCha8, `rand` 0.9's portable integer sampling, no floats, no hash-map order).
//! - [`Position`] `(epoch, index)` names a group; [`GroupSampler::iter_from`] resumes exactly
//!   there after a restart.
//!
//! # Queries with too few negatives
//! [`TooFewNegatives::Skip`] (the default) leaves a query out when it has fewer than `G - 1`
//! negative candidates: every group then has `G` distinct documents. [`TooFewNegatives::Repeat`]
//! keeps it as long as it has at least one candidate: all candidates in a random order, then
//! the remaining slots drawn uniformly with replacement (so some negatives repeat). Queries
//! without a positive, absent from the run, or without any candidate are always left out;
//! [`GroupSampler::skipped`] lists them with the reason.

use crate::error::{Error, Result};
use crate::msmarco::TrainingExample;
use crate::types::{Corpus, Document, Queries, Query};
use ir_metrics::{Qrels, Run};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// What to do with a query that has fewer than `G - 1` negative candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TooFewNegatives {
    /// Leave the query out (every group has `G` distinct documents).
    #[default]
    Skip,
    /// Use every candidate, then fill the group by drawing candidates again (with replacement).
    Repeat,
}

/// Parameters of a [`GroupSampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Documents per group `G` (one positive + `G - 1` negatives), at least 2.
    pub group_size: usize,
    /// Negatives come from the first `top_k` documents of the run (or of an example's list).
    pub top_k: usize,
    /// Minimum grade of a positive (at least 1; e.g. 2 for TREC DL passage, as trec_eval's
    /// `-l 2`). Documents with 0 < grade < `positive_level` are neither positive nor negative.
    pub positive_level: i64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Policy for queries with fewer than `G - 1` negative candidates.
    pub too_few: TooFewNegatives,
}

impl Default for GroupConfig {
    /// `G = 8`, negatives from the top 100, positives of grade >= 1, seed 0, skip short queries.
    fn default() -> Self {
        GroupConfig {
            group_size: 8,
            top_k: 100,
            positive_level: 1,
            seed: 0,
            too_few: TooFewNegatives::Skip,
        }
    }
}

impl GroupConfig {
    fn validate(&self) -> Result<()> {
        if self.group_size < 2 {
            return Err(Error::Invalid(format!(
                "group size must be at least 2 (one positive, one negative), got {}",
                self.group_size
            )));
        }
        if self.top_k == 0 {
            return Err(Error::Invalid("top_k must be positive".into()));
        }
        if self.positive_level < 1 {
            return Err(Error::Invalid(format!(
                "positive_level must be at least 1 (grade 0 is non-relevant), got {}",
                self.positive_level
            )));
        }
        Ok(())
    }
}

/// One training group: a query and `G` document ids, the positive first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Query id.
    pub qid: String,
    /// Document ids: `docids[0]` is the positive, the rest are negatives.
    pub docids: Vec<String>,
}

impl Group {
    /// The positive document.
    pub fn positive(&self) -> &str {
        &self.docids[0]
    }

    /// The negative documents.
    pub fn negatives(&self) -> &[String] {
        &self.docids[1..]
    }

    /// The query text and the document texts ([`Document::contents`]: title + text), positive
    /// first. An id missing from `queries` or `corpus` is an error naming it.
    pub fn texts<'a>(&self, queries: &'a Queries, corpus: &'a Corpus) -> Result<GroupTexts<'a>> {
        let query = queries
            .get(&self.qid)
            .ok_or_else(|| Error::Invalid(format!("no text for query {:?}", self.qid)))?;
        let docs = self
            .docids
            .iter()
            .map(|d| {
                corpus.get(d).map(Document::contents).ok_or_else(|| {
                    Error::Invalid(format!("no text for document {d:?} (query {})", self.qid))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupTexts { query, docs })
    }
}

/// The texts of a [`Group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTexts<'a> {
    /// Query text.
    pub query: &'a str,
    /// Document texts, the positive first.
    pub docs: Vec<Cow<'a, str>>,
}

/// Where a group sits in the stream of groups: epoch, then index within the epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Position {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Index of the group within the epoch (0-based).
    pub index: usize,
}

/// Why a training query has no group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// No document judged with grade >= `positive_level` (or none with a text).
    NoPositive,
    /// The query retrieved nothing in the first-stage run.
    NotInRun,
    /// Fewer negative candidates than needed (`available` < `needed`, or none at all).
    TooFewNegatives {
        /// Candidates in the top-k, judged-relevant documents excluded.
        available: usize,
        /// `G - 1`.
        needed: usize,
    },
}

/// A training query left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Query id.
    pub qid: String,
    /// The reason.
    pub reason: SkipReason,
}

#[derive(Debug, Clone)]
struct Pool {
    qid: String,
    positives: Vec<String>,
    negatives: Vec<String>,
}

/// Seeded sampler of training groups. See the module documentation for the exact procedure.
#[derive(Debug, Clone)]
pub struct GroupSampler {
    config: GroupConfig,
    pools: Vec<Pool>,
    skipped: Vec<Skipped>,
}

/// Training data built from `{"query","pos","neg"}` examples: synthetic ids, their texts and
/// the sampler.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Query `i` (0-based position of the example) has id `"i"`.
    pub queries: Queries,
    /// Passage `j` of the positives of example `i` has id `"i:pos:j"`; negatives `"i:neg:j"`.
    pub corpus: Corpus,
    /// The group sampler over these ids.
    pub sampler: GroupSampler,
}

impl TrainingData {
    /// The texts of a group of this data.
    pub fn texts(&self, group: &Group) -> Result<GroupTexts<'_>> {
        group.texts(&self.queries, &self.corpus)
    }
}

impl GroupSampler {
    /// Pools from judged queries and a first-stage run.
    ///
    /// `qids`: the training queries (any order, repeats ignored). Positives: documents of
    /// `qrels` with grade >= `positive_level`. Negative candidates: the run's top `top_k`
    /// documents (trec_eval order) without any document judged with grade > 0.
    pub fn from_run<'a>(
        qids: impl IntoIterator<Item = &'a str>,
        qrels: &Qrels,
        run: &Run,
        config: GroupConfig,
    ) -> Result<Self> {
        Self::from_run_where(qids, qrels, run, config, |_| true)
    }

    /// As [`from_run`](Self::from_run), keeping only documents for which `available(docid)` is
    /// true (e.g. those with a text in the corpus), among positives and among the top-k
    /// candidates (the top-k cut comes first).
    pub fn from_run_where<'a>(
        qids: impl IntoIterator<Item = &'a str>,
        qrels: &Qrels,
        run: &Run,
        config: GroupConfig,
        available: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        config.validate()?;
        let qids: BTreeSet<&str> = qids.into_iter().collect();
        let mut pools = Vec::new();
        let mut skipped = Vec::new();
        for qid in qids {
            let judged = qrels.get(qid);
            let mut positives: Vec<String> = judged
                .map(|j| {
                    j.iter()
                        .filter(|&(d, g)| g >= config.positive_level && available(d))
                        .map(|(d, _)| d.to_string())
                        .collect()
                })
                .unwrap_or_default();
            positives.sort_unstable();
            let candidates: Option<Vec<String>> = run.get(qid).map(|r| {
                r.ranked()
                    .into_iter()
                    .take(config.top_k)
                    .filter(|&(d, _)| {
                        judged.and_then(|j| j.get(d)).is_none_or(|g| g <= 0) && available(d)
                    })
                    .map(|(d, _)| d.to_string())
                    .collect()
            });
            let reason = if positives.is_empty() {
                Some(SkipReason::NoPositive)
            } else {
                match &candidates {
                    None => Some(SkipReason::NotInRun),
                    Some(c) => short_reason(c.len(), &config),
                }
            };
            match reason {
                Some(reason) => skipped.push(Skipped {
                    qid: qid.to_string(),
                    reason,
                }),
                None => pools.push(Pool {
                    qid: qid.to_string(),
                    positives,
                    negatives: candidates.unwrap_or_default(),
                }),
            }
        }
        Ok(GroupSampler {
            config,
            pools,
            skipped,
        })
    }

    /// A sampler over `{"query","pos","neg"}` examples (MS MARCO training sample): positives
    /// are the `pos` passages, negative candidates the first `top_k` `neg` passages. Ids are
    /// synthetic (see [`TrainingData`]).
    pub fn from_examples(
        examples: &[TrainingExample],
        config: GroupConfig,
    ) -> Result<TrainingData> {
        config.validate()?;
        let mut queries = Queries::new();
        let mut corpus = Corpus::new();
        let mut pools = Vec::new();
        let mut skipped = Vec::new();
        for (i, e) in examples.iter().enumerate() {
            let qid = i.to_string();
            queries.insert(Query {
                id: qid.clone(),
                text: e.query.clone(),
            });
            let mut add = |kind: &str, j: usize, text: &str| {
                let id = format!("{i}:{kind}:{j}");
                corpus.insert(Document {
                    id: id.clone(),
                    title: String::new(),
                    text: text.to_string(),
                });
                id
            };
            let positives: Vec<String> = e
                .pos
                .iter()
                .enumerate()
                .map(|(j, t)| add("pos", j, t))
                .collect();
            let negatives: Vec<String> = e
                .neg
                .iter()
                .take(config.top_k)
                .enumerate()
                .map(|(j, t)| add("neg", j, t))
                .collect();
            let reason = if positives.is_empty() {
                Some(SkipReason::NoPositive)
            } else {
                short_reason(negatives.len(), &config)
            };
            match reason {
                Some(reason) => skipped.push(Skipped { qid, reason }),
                None => pools.push(Pool {
                    qid,
                    positives,
                    negatives,
                }),
            }
        }
        pools.sort_by(|a, b| a.qid.cmp(&b.qid));
        Ok(TrainingData {
            queries,
            corpus,
            sampler: GroupSampler {
                config,
                pools,
                skipped,
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Groups per epoch (the number of usable training queries).
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// True when no query is usable.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The usable query ids, in byte order.
    pub fn qids(&self) -> impl Iterator<Item = &str> {
        self.pools.iter().map(|p| p.qid.as_str())
    }

    /// The positives and negative candidates of query `qid`, if it is usable.
    pub fn candidates(&self, qid: &str) -> Option<(&[String], &[String])> {
        self.pools
            .binary_search_by(|p| p.qid.as_str().cmp(qid))
            .ok()
            .map(|i| (&self.pools[i].positives[..], &self.pools[i].negatives[..]))
    }

    /// The training queries left out, with the reason, in id order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The order in which epoch `epoch` visits the pools.
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.pools.len()).collect();
        order.shuffle(&mut rng(self.config.seed, epoch, 0, b"rd-order"));
        order
    }

    fn sample(&self, pool: &Pool, epoch: u64) -> Group {
        let mut rng = rng(self.config.seed, epoch, fnv1a(&pool.qid), b"rd-group");
        let need = self.config.group_size - 1;
        let mut docids = Vec::with_capacity(self.config.group_size);
        docids.push(pool.positives[rng.random_range(0..pool.positives.len())].clone());
        let n = pool.negatives.len();
        if n >= need {
            let picked = rand::seq::index::sample(&mut rng, n, need);
            docids.extend(picked.iter().map(|i| pool.negatives[i].clone()));
        } else {
            // only with TooFewNegatives::Repeat: every candidate once, then draws with replacement
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut rng);
            docids.extend(all.iter().map(|&i| pool.negatives[i].clone()));
            for _ in n..need {
                docids.push(pool.negatives[rng.random_range(0..n)].clone());
            }
        }
        Group {
            qid: pool.qid.clone(),
            docids,
        }
    }

    /// All groups of epoch `epoch`, in visiting order; `groups(e)[i]` is the group at
    /// `Position { epoch: e, index: i }`.
    pub fn groups(&self, epoch: u64) -> Vec<Group> {
        self.order(epoch)
            .into_iter()
            .map(|i| self.sample(&self.pools[i], epoch))
            .collect()
    }

    /// The group at `pos`, or `None` when `pos.index >= len()`.
    pub fn group_at(&self, pos: Position) -> Option<Group> {
        if pos.index >= self.pools.len() {
            return None;
        }
        let order = self.order(pos.epoch);
        Some(self.sample(&self.pools[order[pos.index]], pos.epoch))
    }

    /// Groups from `start` on, epoch after epoch, each with its position (an endless stream
    /// unless the sampler is empty). To resume training after the group at `p`, start at
    /// [`GroupSampler::next_position`]`(p)`.
    pub fn iter_from(&self, start: Position) -> GroupIter<'_> {
        GroupIter {
            sampler: self,
            pos: start,
            order: None,
        }
    }

    /// The position after `pos` (the next index, or the first group of the next epoch).
    pub fn next_position(&self, pos: Position) -> Position {
        if pos.index + 1 < self.pools.len() {
            Position {
                epoch: pos.epoch,
                index: pos.index + 1,
            }
        } else {
            Position {
                epoch: pos.epoch + 1,
                index: 0,
            }
        }
    }
}

fn short_reason(available: usize, config: &GroupConfig) -> Option<SkipReason> {
    let needed = config.group_size - 1;
    let short = match config.too_few {
        TooFewNegatives::Skip => available < needed,
        TooFewNegatives::Repeat => available == 0,
    };
    short.then_some(SkipReason::TooFewNegatives { available, needed })
}

/// Endless iterator of (position, group), see [`GroupSampler::iter_from`].
pub struct GroupIter<'a> {
    sampler: &'a GroupSampler,
    pos: Position,
    order: Option<(u64, Vec<usize>)>,
}

impl Iterator for GroupIter<'_> {
    type Item = (Position, Group);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.sampler;
        if s.pools.is_empty() {
            return None;
        }
        if self.pos.index >= s.pools.len() {
            self.pos = Position {
                epoch: self.pos.epoch + 1,
                index: 0,
            };
        }
        if self
            .order
            .as_ref()
            .is_none_or(|(e, _)| *e != self.pos.epoch)
        {
            self.order = Some((self.pos.epoch, s.order(self.pos.epoch)));
        }
        let (_, order) = self.order.as_ref().expect("set above");
        let pos = self.pos;
        let group = s.sample(&s.pools[order[pos.index]], pos.epoch);
        self.pos = s.next_position(pos);
        Some((pos, group))
    }
}

/// A ChaCha8 generator keyed by (seed, epoch, salt, tag), all little-endian: portable.
fn rng(seed: u64, epoch: u64, salt: u64, tag: &[u8; 8]) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&salt.to_le_bytes());
    key[24..].copy_from_slice(tag);
    ChaCha8Rng::from_seed(key)
}

/// 64-bit FNV-1a of a string (fixed, unlike `std`'s hasher).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // from the FNV reference (draft-eastlake-fnv): "" and "a", "foobar"
        assert_eq!(fnv1a(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a("foobar"), 0x85944171f73967e8);
    }
}
