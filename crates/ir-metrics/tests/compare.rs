//! Run comparison against SciPy, NumPy, statsmodels and ranx (`tests/fixtures/compare.json`,
//! from `scripts/gen_compare_fixtures.py`): the Wilcoxon and bootstrap tests, the corrections,
//! and ranx's `compare` p-values, superscript letters and bold face.

mod common;
use common::{data_dir, fixture};
use ir_metrics::stats::{
    bonferroni, holm_bonferroni, paired_bootstrap_test, paired_bootstrap_test_with_resamples,
    wilcoxon_signed_rank,
};
use ir_metrics::{
    CompareMode, CompareOptions, Comparison, Correction, EvalOptions, Measure, Qrels, Run,
    SignificanceTest, TableFormat, compare_scores, compare_with,
};
use serde_json::Value;

/// `scores[system][measure][query]`.
type Scores = Vec<Vec<Vec<f64>>>;

fn vec(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(have: f64, want: f64, rel: f64) -> bool {
    (have - want).abs() <= rel * want.abs() + 1e-300
}

#[test]
fn wilcoxon_matches_scipy_on_every_branch() {
    let fx = fixture("compare.json");
    let mut paths = std::collections::BTreeSet::new();
    for c in fx["wilcoxon"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let r = wilcoxon_signed_rank(&vec(&c["x"]), &vec(&c["y"])).unwrap();
        let (stat, p) = (c["statistic"].as_f64().unwrap(), c["p"].as_f64().unwrap());
        assert_eq!(r.statistic, stat, "{name}: statistic");
        assert!(close(r.p_value, p, 1e-9), "{name}: p {} vs {p}", r.p_value);
        // symmetric in its arguments
        let s = wilcoxon_signed_rank(&vec(&c["y"]), &vec(&c["x"])).unwrap();
        assert!(close(s.p_value, p, 1e-9), "{name}: swapped p {}", s.p_value);
        paths.insert(c["path"].as_str().unwrap().to_string());
    }
    assert_eq!(
        paths.len(),
        3,
        "exact, permutation and asymptotic: {paths:?}"
    );
}

#[test]
fn wilcoxon_degenerate_inputs() {
    // SciPy returns NaN when every difference is zero; here p = 1
    let r = wilcoxon_signed_rank(&[0.2, 0.5, 0.7], &[0.2, 0.5, 0.7]).unwrap();
    assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    assert!(wilcoxon_signed_rank(&[1.0], &[0.0]).is_err());
    assert!(wilcoxon_signed_rank(&[1.0, f64::INFINITY], &[0.0, 0.0]).is_err());
}

#[test]
fn bootstrap_test_equals_numpy_on_the_same_resamples() {
    let fx = fixture("compare.json");
    let idx: Vec<Vec<usize>> = fx["bootstrap"]["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    for p in fx["bootstrap"]["pairs"].as_array().unwrap() {
        let (x, y) = (vec(&p["x"]), vec(&p["y"]));
        let r = paired_bootstrap_test_with_resamples(&x, &y, &idx).unwrap();
        let t = p["t"].as_f64().unwrap();
        assert!(close(r.statistic, t, 1e-9), "t {} vs {t}", r.statistic);
        let want = p["p_fixed"].as_f64().unwrap();
        assert!((r.p_value - want).abs() < 1e-12, "{} vs {want}", r.p_value);
    }
    let (x, y) = (vec(&[0.1, 0.2, 0.3].into()), vec(&[0.0, 0.1, 0.1].into()));
    assert!(paired_bootstrap_test_with_resamples(&x, &y, &[vec![0, 1, 3]]).is_err());
    assert!(paired_bootstrap_test_with_resamples(&x, &y, &[vec![0, 1]]).is_err());
    assert!(paired_bootstrap_test_with_resamples(&x, &y, &[]).is_err());
}

#[test]
fn seeded_bootstrap_test_agrees_with_numpy_within_monte_carlo_error() {
    let fx = fixture("compare.json");
    for p in fx["bootstrap"]["pairs"].as_array().unwrap() {
        let (x, y) = (vec(&p["x"]), vec(&p["y"]));
        let want = p["p_mc"].as_f64().unwrap();
        let theirs = p["mc_samples"].as_f64().unwrap();
        let samples = 100_000;
        let r = paired_bootstrap_test(&x, &y, samples, 3).unwrap();
        let se = (want * (1.0 - want) * (1.0 / samples as f64 + 1.0 / theirs)).sqrt();
        assert!(
            (r.p_value - want).abs() <= 5.0 * se + 5e-5,
            "{} vs {want}",
            r.p_value
        );
        assert_eq!(r, paired_bootstrap_test(&x, &y, samples, 3).unwrap());
        // symmetric: the same resamples give the same |t|
        assert_eq!(
            r.p_value,
            paired_bootstrap_test(&y, &x, samples, 3).unwrap().p_value
        );
    }
    assert!(paired_bootstrap_test(&[1.0, 2.0], &[0.0, 1.0], 0, 1).is_err());
}

#[test]
fn corrections_match_statsmodels() {
    let fx = fixture("compare.json");
    for c in fx["corrections"].as_array().unwrap() {
        let p = vec(&c["p"]);
        for (key, corr) in [
            ("holm", Correction::Holm),
            ("bonferroni", Correction::Bonferroni),
        ] {
            let got = corr.adjust(&p).unwrap();
            for (g, w) in got.iter().zip(vec(&c[key])) {
                assert!((g - w).abs() < 1e-12, "{key} {p:?}: {g} vs {w}");
            }
        }
        assert_eq!(Correction::None.adjust(&p).unwrap(), p);
        assert_eq!(
            Correction::Holm.adjust(&p).unwrap(),
            holm_bonferroni(&p).unwrap()
        );
        assert_eq!(
            Correction::Bonferroni.adjust(&p).unwrap(),
            bonferroni(&p).unwrap()
        );
    }
    for corr in [Correction::None, Correction::Bonferroni, Correction::Holm] {
        assert!(corr.adjust(&[0.2, -0.1]).is_err());
        assert_eq!(corr.to_string().parse::<Correction>().unwrap(), corr);
    }
    assert!("sidak".parse::<Correction>().is_err());
}

/// ranx's per-query scores as `scores[system][measure][query]`.
fn ranx_scores(rx: &Value) -> (Vec<String>, Vec<String>, Scores) {
    let names: Vec<String> = rx["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let metrics: Vec<String> = rx["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let scores = names
        .iter()
        .map(|n| metrics.iter().map(|m| vec(&rx["scores"][n][m])).collect())
        .collect();
    (names, metrics, scores)
}

fn letters(list: &[usize]) -> String {
    list.iter().map(|&j| char::from(b'a' + j as u8)).collect()
}

/// Marks, bold face and the text and LaTeX cells equal ranx's report.
fn check_marks_like_ranx(c: &Comparison, names: &[String], metrics: &[String], cells: &Value) {
    let text = c.render(TableFormat::Text, 3);
    let latex = c.render(TableFormat::Latex, 3);
    let markdown = c.render(TableFormat::Markdown, 3);
    for (s, name) in names.iter().enumerate() {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[0], c.label(s));
        let md_row = markdown
            .lines()
            .find(|l| l.starts_with(&format!("| {} | {name} |", c.label(s))))
            .unwrap();
        for (mi, m) in metrics.iter().enumerate() {
            let want = &cells[name][m];
            let cell = &c.cells[s][mi];
            assert_eq!(
                letters(&cell.better_than),
                want["superscript"].as_str().unwrap(),
                "{name} {m}"
            );
            assert_eq!(
                fields[2 + mi],
                want["text"].as_str().unwrap(),
                "{name} {m} text"
            );
            let tex = want["latex"].as_str().unwrap();
            assert!(latex.contains(tex), "{name} {m}: {tex} not in\n{latex}");
            let bold = want["latex_bold"].as_bool().unwrap();
            let v = want["value"].as_str().unwrap();
            assert_eq!(md_row.contains(&format!("**{v}**")), bold, "{md_row}");
            let sup = want["latex_superscript"].as_str().unwrap();
            if !sup.is_empty() {
                assert!(md_row.contains(&format!("<sup>{sup}</sup>")), "{md_row}");
            }
        }
    }
}

#[test]
fn all_pairs_t_tests_match_ranx_compare() {
    let fx = fixture("compare.json");
    let rx = &fx["ranx"];
    let (names, metrics, scores) = ranx_scores(rx);
    let n: Vec<&str> = names.iter().map(String::as_str).collect();
    let m: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let opts = CompareOptions {
        test: SignificanceTest::TTest,
        correction: Correction::None,
        mode: CompareMode::AllPairs,
        alpha: rx["max_p"].as_f64().unwrap(),
    };
    let c = compare_scores(&n, &m, &scores, &opts).unwrap();
    let k = names.len();
    assert_eq!(c.pairs.len(), metrics.len() * k * (k - 1) / 2);
    let student = &rx["tests"]["student"];
    for p in &c.pairs {
        let key = format!("{}|{}", names[p.a], names[p.b]);
        let want = student["pvalues"][&key][&metrics[p.measure]]
            .as_f64()
            .unwrap();
        assert!(
            close(p.p_value, want, 1e-9),
            "{key}: {} vs {want}",
            p.p_value
        );
        assert_eq!(p.p_adjusted, p.p_value);
        assert_eq!(p.wins + p.ties + p.losses, c.queries);
    }
    check_marks_like_ranx(&c, &names, &metrics, &student["cells"]);
}

#[test]
fn all_pairs_randomization_tests_agree_with_ranx_fisher() {
    let fx = fixture("compare.json");
    let rx = &fx["ranx"];
    let (names, metrics, scores) = ranx_scores(rx);
    let n: Vec<&str> = names.iter().map(String::as_str).collect();
    let m: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let samples = 100_000;
    let opts = CompareOptions {
        test: SignificanceTest::Permutation { samples, seed: 42 },
        correction: Correction::None,
        mode: CompareMode::AllPairs,
        alpha: rx["max_p"].as_f64().unwrap(),
    };
    let c = compare_scores(&n, &m, &scores, &opts).unwrap();
    let fisher = &rx["tests"]["fisher"];
    let theirs = fisher["n_permutations"].as_f64().unwrap();
    for p in &c.pairs {
        let key = format!("{}|{}", names[p.a], names[p.b]);
        let want = fisher["pvalues"][&key][&metrics[p.measure]]
            .as_f64()
            .unwrap();
        let se = (want * (1.0 - want) * (1.0 / samples as f64 + 1.0 / theirs)).sqrt();
        // ranx's p has no +1 and can be 0; ours is at least 1 / (samples + 1)
        assert!(
            (p.p_value - want).abs() <= 5.0 * se + 1e-4,
            "{key}: {} vs {want}",
            p.p_value
        );
    }
    // no p-value of the fixture lies near 0.05, so the marks are ranx's
    check_marks_like_ranx(&c, &names, &metrics, &fisher["cells"]);
}

/// End to end on the DL19 runs: nDCG@10 per query is the same in ranx and trec_eval, so the
/// p-values are ranx's; AP@100 differs on a query with tied scores, the marks do not.
#[test]
fn compare_with_on_dl19_runs_reproduces_ranx() {
    let fx = fixture("compare.json");
    let rx = &fx["ranx"];
    let names: Vec<String> = rx["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let dir = data_dir().join("trec-dl-2019-passage");
    let qrels = Qrels::from_path(dir.join("qrels.txt")).unwrap();
    let runs: Vec<Run> = names
        .iter()
        .map(|n| Run::from_path(dir.join("runs").join(format!("{n}.trec"))).unwrap())
        .collect();
    let pairs: Vec<(&str, &Run)> = names.iter().map(String::as_str).zip(&runs).collect();
    let measures: Vec<Measure> = vec!["nDCG@10".parse().unwrap(), "AP@100".parse().unwrap()];
    let opts = CompareOptions {
        test: SignificanceTest::TTest,
        correction: Correction::None,
        mode: CompareMode::AllPairs,
        alpha: 0.05,
    };
    let c = compare_with(&qrels, &pairs, &measures, &EvalOptions::default(), &opts).unwrap();
    assert_eq!(c.queries, 43);
    let student = &rx["tests"]["student"];
    for p in c.pairs.iter().filter(|p| p.measure == 0) {
        let key = format!("{}|{}", names[p.a], names[p.b]);
        let want = student["pvalues"][&key]["ndcg@10"].as_f64().unwrap();
        assert!(
            close(p.p_value, want, 1e-9),
            "{key}: {} vs {want}",
            p.p_value
        );
    }
    let metrics = ["ndcg@10", "map@100"];
    for (s, name) in names.iter().enumerate() {
        for (mi, m) in metrics.iter().enumerate() {
            assert_eq!(
                letters(&c.cells[s][mi].better_than),
                student["cells"][name][m]["superscript"].as_str().unwrap(),
                "{name} {m}"
            );
        }
    }
}

fn toy() -> (Vec<&'static str>, Vec<&'static str>, Scores) {
    // three systems on 8 queries: c > b > a on every query
    let a = vec![0.1, 0.2, 0.3, 0.2, 0.1, 0.4, 0.3, 0.2];
    let b: Vec<f64> = a.iter().map(|v| v + 0.2).collect();
    let c: Vec<f64> = a
        .iter()
        .enumerate()
        .map(|(i, v)| v + 0.25 + 0.01 * i as f64)
        .collect();
    (
        vec!["base", "sys_b", "sys|c"],
        vec!["nDCG@10"],
        vec![vec![a], vec![b], vec![c]],
    )
}

#[test]
fn the_family_is_the_tested_pairs_of_each_measure() {
    let (n, m, scores) = toy();
    for (mode, family) in [(CompareMode::Baseline, 2), (CompareMode::AllPairs, 3)] {
        for corr in [Correction::None, Correction::Bonferroni, Correction::Holm] {
            for test in [
                SignificanceTest::TTest,
                SignificanceTest::Wilcoxon,
                SignificanceTest::Permutation {
                    samples: 1000,
                    seed: 1,
                },
                SignificanceTest::Bootstrap {
                    samples: 1000,
                    seed: 1,
                },
            ] {
                let opts = CompareOptions {
                    test,
                    correction: corr,
                    mode,
                    alpha: 0.05,
                };
                let c = compare_scores(&n, &m, &scores, &opts).unwrap();
                assert_eq!(c.pairs.len(), family);
                let raw: Vec<f64> = c.pairs.iter().map(|p| p.p_value).collect();
                let adj = corr.adjust(&raw).unwrap();
                for (p, a) in c.pairs.iter().zip(adj) {
                    assert_eq!(p.p_adjusted, a);
                    assert_eq!(p.significant, a <= 0.05);
                    let want = test.run(&scores[p.a][0], &scores[p.b][0]).unwrap();
                    assert_eq!(p.p_value, want.p_value);
                    assert!(
                        (p.mean_difference - (c.cells[p.a][0].mean - c.cells[p.b][0].mean)).abs()
                            < 1e-15
                    );
                }
                // the cells against the first system
                assert!(c.cells[0][0].p_value.is_none());
                for s in 1..3 {
                    let p = c.pair(0, s, 0).unwrap();
                    assert_eq!(c.cells[s][0].p_adjusted, Some(p.p_adjusted));
                }
                if mode == CompareMode::Baseline {
                    assert!(c.pair(0, 2, 1).is_none());
                }
            }
        }
    }
}

#[test]
fn tables_and_json() {
    let (n, m, scores) = toy();
    let opts = CompareOptions {
        mode: CompareMode::AllPairs,
        ..CompareOptions::default()
    };
    let c = compare_scores(&n, &m, &scores, &opts).unwrap();
    // b and c beat a on every query; c beats b on 7 of 8 with a growing margin
    assert_eq!(c.cells[1][0].better_than, vec![0]);
    assert_eq!(c.cells[2][0].better_than, vec![0, 1]);
    let md = c.to_markdown();
    assert!(
        md.contains("| c | sys\\|c | **0.5100**<sup>ab</sup> |"),
        "{md}"
    );
    assert!(md.contains("| a | base | 0.2250 |"), "{md}");
    assert!(
        md.contains("Holm-Bonferroni-corrected over the 3 pairs"),
        "{md}"
    );
    let tex = c.to_latex();
    assert!(
        tex.contains("sys\\_b &\n0.4250$^{a}$\\hphantom{$^{c}$}\\\\"),
        "{tex}"
    );
    assert!(
        tex.contains("\\textbf{0.5100}$^{ab}$\\hphantom{}\\\\"),
        "{tex}"
    );
    assert!(tex.contains("sys|c"), "{tex}");
    assert!(tex.contains("\\begin{tabular}{c|l|c}"), "{tex}");
    let text = c.table();
    assert!(text.contains("0.5100ᵃᵇ"), "{text}");
    let json: Value = serde_json::to_value(&c).unwrap();
    assert_eq!(json["test"]["name"], "t_test");
    assert_eq!(json["correction"], "holm");
    assert_eq!(json["mode"], "all_pairs");
    assert_eq!(json["pairs"].as_array().unwrap().len(), 3);
    for key in [
        "measure",
        "a",
        "b",
        "mean_difference",
        "statistic",
        "p_value",
        "p_adjusted",
        "significant",
        "wins",
        "ties",
        "losses",
    ] {
        assert!(json["pairs"][0].get(key).is_some(), "{key}");
    }
    assert_eq!(
        json["cells"][2][0]["better_than"],
        serde_json::json!([0, 1])
    );
    let perm = CompareOptions {
        test: SignificanceTest::Permutation {
            samples: 10,
            seed: 3,
        },
        ..opts
    };
    let j = serde_json::to_value(compare_scores(&n, &m, &scores, &perm).unwrap()).unwrap();
    assert_eq!(
        j["test"],
        serde_json::json!({"name": "permutation", "samples": 10, "seed": 3})
    );
    // baseline mode: the classic table with stars and adjusted p-values
    let c = compare_scores(&n, &m, &scores, &CompareOptions::default()).unwrap();
    let t = c.table();
    assert!(t.contains("0.2250 (base)") && t.contains("0.4250*"), "{t}");
    assert!(t.contains("Holm-Bonferroni adjusted p <= 0.05 against the first system (paired t-test, over the 8 queries"), "{t}");
    // more than 26 systems: numbered labels, separated marks
    let many: Vec<Vec<Vec<f64>>> = (0..28)
        .map(|i| {
            vec![
                scores[0][0]
                    .iter()
                    .map(|v| v + 0.01 * i as f64 + 0.001 * (i * i % 7) as f64 * v)
                    .collect(),
            ]
        })
        .collect();
    let names: Vec<String> = (0..28).map(|i| format!("s{i}")).collect();
    let nm: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = compare_scores(&nm, &m, &many, &opts).unwrap();
    assert_eq!(c.label(27), "28");
    let md = c.to_markdown();
    assert!(md.contains("| 28 | s27 |"), "{md}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (n, m, scores) = toy();
    let o = CompareOptions::default();
    let err = |r: ir_metrics::Result<Comparison>| r.unwrap_err().to_string();
    assert!(err(compare_scores(&n[..1], &m, &scores[..1], &o)).contains("at least one other run"));
    assert!(err(compare_scores(&n, &m, &scores[..2], &o)).contains("3 systems but scores for 2"));
    let mut short = scores.clone();
    short[1][0].pop();
    assert!(
        err(compare_scores(&n, &m, &short, &o))
            .contains("sys_b on nDCG@10: 7 per-query scores, expected 8")
    );
    let mut nan = scores.clone();
    nan[2][0][3] = f64::NAN;
    assert!(err(compare_scores(&n, &m, &nan, &o)).contains("finite"));
    let bad_alpha = CompareOptions { alpha: 1.0, ..o };
    assert!(err(compare_scores(&n, &m, &scores, &bad_alpha)).contains("alpha"));
    let zero = CompareOptions {
        test: SignificanceTest::Bootstrap {
            samples: 0,
            seed: 1,
        },
        ..o
    };
    let e = err(compare_scores(&n, &m, &scores, &zero));
    assert!(
        e.contains("sys_b vs base on nDCG@10") && e.contains("samples"),
        "{e}"
    );
    let one: Vec<Vec<Vec<f64>>> = scores.iter().map(|s| vec![s[0][..1].to_vec()]).collect();
    assert!(err(compare_scores(&n, &m, &one, &o)).contains("1 query"));
    assert!("all-pairs".parse::<CompareMode>().unwrap() == CompareMode::AllPairs);
    assert!("sideways".parse::<CompareMode>().is_err());
    assert!("md".parse::<TableFormat>().unwrap() == TableFormat::Markdown);
}
