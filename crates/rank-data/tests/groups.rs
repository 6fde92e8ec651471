//! Training groups: determinism, seeds, epochs, resumption, exclusion of judged-relevant
//! documents, short queries; on synthetic data (checked against the files' text) and on the
//! shared data.

mod common;

use proptest::prelude::*;
use rank_data::{
    Group, GroupConfig, GroupSampler, Position, Qrels, Run, SkipReason, TooFewNegatives,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A synthetic training set as text. Query `qK` (K < nq) has judged documents: `qK-p0..p2`
/// grade 2, `qK-w0` grade 1 (weakly relevant), `qK-n0` grade 0; its run ranks `ncand`
/// documents `qK-c0..` (scores strictly decreasing), with the judged ones mixed in at
/// ranks 2, 5, 8 and 11.
struct Synth {
    qrels: String,
    run: String,
}

fn synth(nq: usize, ncand: usize) -> Synth {
    let mut qrels = String::new();
    let mut run = String::new();
    for k in 0..nq {
        for p in 0..3 {
            qrels.push_str(&format!("q{k} 0 q{k}-p{p} 2\n"));
        }
        qrels.push_str(&format!("q{k} 0 q{k}-w0 1\nq{k} 0 q{k}-n0 0\n"));
        let mut ranked: Vec<String> = (0..ncand).map(|c| format!("q{k}-c{c}")).collect();
        for (at, d) in [(1, "p0"), (4, "w0"), (7, "n0"), (10, "p1")] {
            if at <= ranked.len() {
                ranked.insert(at, format!("q{k}-{d}"));
            }
        }
        for (r, d) in ranked.iter().enumerate() {
            run.push_str(&format!("q{k} Q0 {d} {} {} synth\n", r + 1, 1000 - r));
        }
    }
    Synth { qrels, run }
}

/// Grades and top-k read back from the text with plain string handling (not the library).
fn grades(qrels: &str) -> HashMap<(String, String), i64> {
    qrels
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ((f[0].to_string(), f[2].to_string()), f[3].parse().unwrap())
        })
        .collect()
}

fn top_k(run: &str, k: usize) -> HashMap<String, HashSet<String>> {
    let mut m: HashMap<String, HashSet<String>> = HashMap::new();
    for l in run.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f[3].parse::<usize>().unwrap() <= k {
            m.entry(f[0].to_string())
                .or_default()
                .insert(f[2].to_string());
        }
    }
    m
}

fn sampler(s: &Synth, qids: &[&str], config: GroupConfig) -> GroupSampler {
    let qrels = Qrels::from_str_named(&s.qrels, "qrels").unwrap();
    let run = Run::from_str_named(&s.run, "run").unwrap();
    GroupSampler::from_run(qids.iter().copied(), &qrels, &run, config).unwrap()
}

fn qids(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("q{k}")).collect()
}

#[track_caller]
fn check_group(g: &Group, s: &Synth, config: &GroupConfig, distinct: bool) {
    let grades = grades(&s.qrels);
    let top = top_k(&s.run, config.top_k);
    let grade = |d: &str| grades.get(&(g.qid.clone(), d.to_string())).copied();
    assert_eq!(g.docids.len(), config.group_size);
    let pg = grade(g.positive()).expect("positive is judged");
    assert!(
        pg >= config.positive_level,
        "positive {} has grade {pg}",
        g.positive()
    );
    for n in g.negatives() {
        assert!(grade(n).is_none_or(|x| x <= 0), "{n} is judged relevant");
        assert!(
            top[&g.qid].contains(n),
            "{n} not in the top {}",
            config.top_k
        );
    }
    if distinct {
        let set: HashSet<&String> = g.docids.iter().collect();
        assert_eq!(set.len(), g.docids.len(), "repeated document in {g:?}");
    }
}

#[test]
fn groups_obey_the_rules_and_are_reproducible() {
    let s = synth(20, 40);
    let ids = qids(20);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let config = GroupConfig {
        group_size: 8,
        top_k: 30,
        positive_level: 2,
        seed: 42,
        too_few: TooFewNegatives::Skip,
    };
    let a = sampler(&s, &refs, config);
    assert_eq!(a.len(), 20);
    assert!(a.skipped().is_empty());
    // the same data given in another order, and repeated, gives the same sampler
    let mut shuffled = refs.clone();
    shuffled.reverse();
    shuffled.extend(refs.iter().take(5));
    let b = sampler(&s, &shuffled, config);
    for epoch in 0..5 {
        let ga = a.groups(epoch);
        assert_eq!(ga, b.groups(epoch), "epoch {epoch}");
        // each epoch visits every query once
        let seen: BTreeSet<&str> = ga.iter().map(|g| g.qid.as_str()).collect();
        assert_eq!(seen.len(), 20);
        for g in &ga {
            check_group(g, &s, &config, true);
        }
    }
    // the weakly relevant document (grade 1) is neither a positive (level 2) nor a negative
    for g in a.groups(0).iter().chain(a.groups(1).iter()) {
        assert!(!g.docids.iter().any(|d| d.ends_with("-w0")), "{g:?}");
    }
    // epochs differ in order and in content; seeds differ
    assert_ne!(a.groups(0), a.groups(1));
    let q0 = |gs: Vec<Group>| gs.into_iter().find(|g| g.qid == "q0").unwrap();
    assert_ne!(q0(a.groups(0)).docids, q0(a.groups(1)).docids);
    let c = sampler(&s, &refs, GroupConfig { seed: 43, ..config });
    assert_ne!(a.groups(0), c.groups(0));
    let order = |gs: &[Group]| gs.iter().map(|g| g.qid.clone()).collect::<Vec<_>>();
    assert_ne!(order(&a.groups(0)), order(&c.groups(0)));
}

#[test]
fn negatives_and_positives_cover_their_pools() {
    // over many epochs every candidate shows up as a negative and every positive as positive
    let s = synth(1, 12);
    let config = GroupConfig {
        group_size: 4,
        top_k: 100,
        positive_level: 1,
        seed: 7,
        too_few: TooFewNegatives::Skip,
    };
    let a = sampler(&s, &["q0"], config);
    let mut negs = BTreeSet::new();
    let mut pos = BTreeSet::new();
    for e in 0..200 {
        let g = &a.groups(e)[0];
        check_group(g, &s, &config, true);
        pos.insert(g.positive().to_string());
        negs.extend(g.negatives().iter().cloned());
    }
    // positive_level 1: p0, p1, p2 (grade 2) and w0 (grade 1)
    let want_pos: BTreeSet<String> = ["q0-p0", "q0-p1", "q0-p2", "q0-w0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(pos, want_pos);
    // candidates: c0..c11 and the judged non-relevant n0
    let mut want_neg: BTreeSet<String> = (0..12).map(|c| format!("q0-c{c}")).collect();
    want_neg.insert("q0-n0".into());
    assert_eq!(negs, want_neg);
}

#[test]
fn positions_resume_exactly() {
    let s = synth(7, 20);
    let ids = qids(7);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let a = sampler(
        &s,
        &refs,
        GroupConfig {
            seed: 3,
            ..GroupConfig::default()
        },
    );
    assert_eq!(a.len(), 7);
    let mut expected: Vec<(Position, Group)> = Vec::new();
    for epoch in 0..3 {
        for (index, g) in a.groups(epoch).into_iter().enumerate() {
            expected.push((Position { epoch, index }, g));
        }
    }
    let all: Vec<_> = a.iter_from(Position::default()).take(21).collect();
    assert_eq!(all, expected);
    // resume in the middle of epoch 1, from a freshly built sampler
    let b = sampler(
        &s,
        &refs,
        GroupConfig {
            seed: 3,
            ..GroupConfig::default()
        },
    );
    let start = Position { epoch: 1, index: 4 };
    let resumed: Vec<_> = b.iter_from(start).take(10).collect();
    assert_eq!(resumed, expected[11..21]);
    for (p, g) in &expected {
        assert_eq!(b.group_at(*p).as_ref(), Some(g));
    }
    assert_eq!(b.group_at(Position { epoch: 0, index: 7 }), None);
    assert_eq!(
        b.next_position(Position { epoch: 2, index: 6 }),
        Position { epoch: 3, index: 0 }
    );
    // a position past the end of an epoch rolls over to the next one
    assert_eq!(
        b.iter_from(Position { epoch: 0, index: 9 })
            .next()
            .unwrap()
            .0
            .epoch,
        1
    );
}

#[test]
fn short_queries_are_skipped_or_padded() {
    // q0: 3 candidates; q1: 30; q2: no candidate left after excluding relevant documents;
    // q3: judged but not in the run; q4: in the run, no positive
    let mut s = synth(2, 30);
    s.run = s
        .run
        .lines()
        .filter(|l| {
            !l.starts_with("q0 ")
                || ["q0-c0 ", "q0-c1 ", "q0-p0 ", "q0-c2 "]
                    .iter()
                    .any(|d| l.contains(d))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    s.qrels.push_str("q2 0 q2-a 1\nq2 0 q2-b 0\nq3 0 q3-a 1\n");
    s.run
        .push_str("q2 Q0 q2-a 1 2.0 synth\nq4 Q0 x 1 1.0 synth\n");
    let ids = ["q0", "q1", "q2", "q3", "q4"];
    let config = GroupConfig {
        group_size: 8,
        top_k: 100,
        positive_level: 1,
        seed: 1,
        too_few: TooFewNegatives::Skip,
    };
    let skip = sampler(&s, &ids, config);
    assert_eq!(skip.qids().collect::<Vec<_>>(), ["q1"]);
    let reasons: BTreeMap<&str, &SkipReason> = skip
        .skipped()
        .iter()
        .map(|x| (x.qid.as_str(), &x.reason))
        .collect();
    assert_eq!(
        reasons["q0"],
        &SkipReason::TooFewNegatives {
            available: 3,
            needed: 7
        }
    );
    assert_eq!(
        reasons["q2"],
        &SkipReason::TooFewNegatives {
            available: 0,
            needed: 7
        }
    );
    assert_eq!(reasons["q3"], &SkipReason::NotInRun);
    assert_eq!(reasons["q4"], &SkipReason::NoPositive);

    let repeat = sampler(
        &s,
        &ids,
        GroupConfig {
            too_few: TooFewNegatives::Repeat,
            ..config
        },
    );
    assert_eq!(repeat.qids().collect::<Vec<_>>(), ["q0", "q1"]);
    assert_eq!(
        repeat.skipped().len(),
        3,
        "q2 (no candidate), q3, q4 still skipped"
    );
    for e in 0..10 {
        for g in repeat.groups(e) {
            check_group(&g, &s, &config, g.qid == "q1");
            if g.qid == "q0" {
                let negs: BTreeSet<&str> = g.negatives().iter().map(String::as_str).collect();
                assert_eq!(
                    negs,
                    BTreeSet::from(["q0-c0", "q0-c1", "q0-c2"]),
                    "all used"
                );
            }
        }
    }
}

#[test]
fn bad_configs_are_errors() {
    let s = synth(1, 5);
    let qrels = Qrels::from_str_named(&s.qrels, "qrels").unwrap();
    let run = Run::from_str_named(&s.run, "run").unwrap();
    for config in [
        GroupConfig {
            group_size: 1,
            ..GroupConfig::default()
        },
        GroupConfig {
            top_k: 0,
            ..GroupConfig::default()
        },
        GroupConfig {
            positive_level: 0,
            ..GroupConfig::default()
        },
    ] {
        let r = GroupSampler::from_run(["q0"], &qrels, &run, config);
        assert!(matches!(r, Err(rank_data::Error::Invalid(_))), "{config:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    /// Random judgements and runs: positives always judged >= level, negatives never judged
    /// relevant and always in the top-k, same seed -> same groups.
    #[test]
    fn random_data_keeps_the_invariants(
        judged in proptest::collection::vec((0usize..6, 0usize..30, -1i64..4), 1..80),
        depth in 1usize..30,
        top_k in 1usize..40,
        g in 2usize..6,
        seed in any::<u64>(),
        repeat in any::<bool>(),
    ) {
        let mut qrels = String::new();
        let mut seen = HashSet::new();
        for (q, d, grade) in judged {
            if seen.insert((q, d)) {
                qrels.push_str(&format!("q{q} 0 d{d} {grade}\n"));
            }
        }
        let mut run = String::new();
        for q in 0..6 {
            for r in 0..depth {
                let d = (r * 7 + q * 3) % 30;
                run.push_str(&format!("q{q} Q0 d{d} {} {} t\n", r + 1, 100 - r));
            }
        }
        let run: String = {
            // drop repeated docs of a query (d cycles when depth > 30 / gcd)
            let mut seen = HashSet::new();
            let mut rank = HashMap::new();
            run.lines().filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if !seen.insert((f[0].to_string(), f[2].to_string())) { return None; }
                let r = rank.entry(f[0].to_string()).or_insert(0usize);
                *r += 1;
                Some(format!("{} Q0 {} {} {} t\n", f[0], f[2], r, 100 - *r))
            }).collect()
        };
        let s = Synth { qrels, run };
        let config = GroupConfig {
            group_size: g, top_k, positive_level: 1, seed,
            too_few: if repeat { TooFewNegatives::Repeat } else { TooFewNegatives::Skip },
        };
        let ids = qids(6);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let a = sampler(&s, &refs, config);
        let b = sampler(&s, &refs, config);
        prop_assert_eq!(a.len() + a.skipped().len(), 6);
        for e in 0..3 {
            let ga = a.groups(e);
            prop_assert_eq!(&ga, &b.groups(e));
            for grp in &ga {
                check_group(grp, &s, &config, !repeat);
            }
        }
    }
}

#[test]
fn msmarco_sample_groups() {
    let d = common::dataset("msmarco-train-sample");
    let ex = d.training_examples().unwrap();
    // the raw file, parsed independently of the library
    let raw: Vec<serde_json::Value> = std::fs::read_to_string(d.root().join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let strings = |v: &serde_json::Value, k: &str| -> HashSet<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let config = GroupConfig {
        group_size: 16,
        seed: 11,
        ..GroupConfig::default()
    };
    let data = GroupSampler::from_examples(&ex, config).unwrap();
    assert_eq!(data.sampler.len(), 10);
    let again = GroupSampler::from_examples(&ex, config).unwrap();
    for e in 0..3 {
        let groups = data.sampler.groups(e);
        assert_eq!(groups, again.sampler.groups(e));
        for g in &groups {
            let t = data.texts(g).unwrap();
            let line = &raw[g.qid.parse::<usize>().unwrap()];
            assert_eq!(t.query, line["query"].as_str().unwrap());
            assert_eq!(t.docs.len(), 16);
            assert!(strings(line, "pos").contains(t.docs[0].as_ref()));
            let negs = strings(line, "neg");
            for n in &t.docs[1..] {
                assert!(
                    negs.contains(n.as_ref()),
                    "negative not among the file's negatives"
                );
            }
            let distinct: HashSet<&str> = g.negatives().iter().map(String::as_str).collect();
            assert_eq!(distinct.len(), 15);
        }
    }
    // 25 negatives each: G = 26 works, G = 27 skips every query
    let c26 = GroupConfig {
        group_size: 26,
        ..config
    };
    assert_eq!(
        GroupSampler::from_examples(&ex, c26).unwrap().sampler.len(),
        10
    );
    let c27 = GroupConfig {
        group_size: 27,
        ..config
    };
    let s = GroupSampler::from_examples(&ex, c27).unwrap().sampler;
    assert!(s.is_empty());
    assert!(s.skipped().iter().all(|x| x.reason
        == SkipReason::TooFewNegatives {
            available: 25,
            needed: 26
        }));
}

#[test]
fn trec_dl_groups_from_the_bm25_run() {
    let d = common::dataset("trec-dl-2019-passage");
    let qrels = d.qrels("test").unwrap();
    let run = d.run("bm25").unwrap();
    let corpus = d.corpus(|_| true).unwrap();
    let queries = d.queries().unwrap();
    // qrels.txt and runs/bm25.trec as text, read without the library
    let s = Synth {
        qrels: std::fs::read_to_string(d.root().join("qrels.txt"))
            .unwrap()
            .replace("Q0", "0"),
        run: std::fs::read_to_string(d.run_path("bm25")).unwrap(),
    };
    let config = GroupConfig {
        group_size: 8,
        top_k: 100,
        positive_level: 2,
        seed: 5,
        too_few: TooFewNegatives::Skip,
    };
    // positives need a text: DL's collection holds only retrieved passages
    let sampler = GroupSampler::from_run_where(queries.ids(), &qrels, &run, config, |doc| {
        corpus.contains(doc)
    })
    .unwrap();
    assert_eq!(sampler.len() + sampler.skipped().len(), 43);
    assert!(
        sampler.len() > 30,
        "most DL19 queries have a grade >= 2 passage in the top 100"
    );
    for g in sampler.groups(0) {
        check_group(&g, &s, &config, true);
        let t = g.texts(&queries, &corpus).unwrap();
        assert_eq!(t.docs.len(), 8);
    }
}
