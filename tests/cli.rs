//! The `rankmamba` binary: eval / compare / fuse end to end, and clear errors on bad input.

mod common;
use common::{rankmamba, rankmamba_env};

use std::path::PathBuf;

fn data() -> PathBuf {
    test_support::data_dir().join("trec-dl-2019-passage")
}

#[test]
fn eval_prints_trec_eval_format() {
    let d = data();
    let (q, r) = (d.join("qrels.txt"), d.join("runs/bm25.trec"));
    let (ok, out, err) = rankmamba(&[
        "eval",
        "--qrels",
        q.to_str().unwrap(),
        "--run",
        r.to_str().unwrap(),
        "-l",
        "2",
        "-m",
        "ndcg_cut.10",
        "-m",
        "map_cut.100",
        "-m",
        "nDCG@10",
    ]);
    assert!(ok, "{err}");
    // nDCG@10 is ndcg_cut.10 again: printed once
    assert_eq!(out.matches("ndcg_cut_10").count(), 1, "{out}");
    // figures of shared/data/README.md (pytrec_eval)
    assert!(
        out.contains("ndcg_cut_10           \tall\t0.5058\n"),
        "{out}"
    );
    assert!(
        out.contains("map_cut_100           \tall\t0.2476\n"),
        "{out}"
    );
    // as trec_eval: only the measures asked for (no runid / num_q lines without `-m official`)
    assert!(!out.contains("num_q"), "{out}");
}

#[test]
fn eval_json_per_query() {
    let d = data();
    let (q, r) = (d.join("qrels.txt"), d.join("runs/tasb.trec"));
    let (ok, out, err) = rankmamba(&[
        "eval",
        "--qrels",
        q.to_str().unwrap(),
        "--run",
        r.to_str().unwrap(),
        "-l",
        "2",
        "-m",
        "nDCG@10",
        "-q",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["num_queries"], 43);
    assert_eq!(v["per_query"].as_object().unwrap().len(), 43);
    assert_eq!(
        format!("{:.4}", v["means"]["nDCG@10"].as_f64().unwrap()),
        "0.7210"
    );
}

#[test]
fn compare_marks_significant_systems() {
    let d = data();
    let q = d.join("qrels.txt");
    let runs: Vec<String> = ["bm25", "tasb"]
        .iter()
        .map(|r| d.join(format!("runs/{r}.trec")).display().to_string())
        .collect();
    let (ok, out, err) = rankmamba(&[
        "compare",
        "--qrels",
        q.to_str().unwrap(),
        "--run",
        &runs[0],
        &runs[1],
        "-l",
        "2",
        "-m",
        "nDCG@10",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("0.5058 (base)") && out.contains("0.7210*"),
        "{out}"
    );
}

#[test]
fn fuse_writes_a_run_that_evaluates() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("fused.trec");
    let runs: Vec<String> = ["tasb", "splade-pp-ed"]
        .iter()
        .map(|r| d.join(format!("runs/{r}.trec")).display().to_string())
        .collect();
    let (ok, _, err) = rankmamba(&[
        "fuse",
        "--run",
        &runs[0],
        &runs[1],
        "--method",
        "rrf",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = rankmamba(&[
        "eval",
        "--qrels",
        d.join("qrels.txt").to_str().unwrap(),
        "--run",
        out_path.to_str().unwrap(),
        "-m",
        "nDCG@10",
        "-m",
        "num_q",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("num_q                 \tall\t43"), "{out}");
}

#[test]
fn fuse_refuses_flags_its_method_does_not_read() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("fused.trec");
    let run = d.join("runs/tasb.trec").display().to_string();
    let o = out_path.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--method", "rrf", "--norm", "z-score"],
            "--norm applies to combsum",
        ),
        (
            vec!["--method", "combsum", "--k", "10"],
            "--k is the RRF constant",
        ),
        (
            vec!["--method", "combmnz", "--k", "10"],
            "--k is the RRF constant",
        ),
    ] {
        let mut a = vec!["fuse", "--run", &run, "-o", o];
        a.extend(args);
        let (ok, _, err) = rankmamba(&a);
        assert!(!ok && err.contains(want), "{a:?}: {err}");
        assert!(!out_path.exists());
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.trec");
    std::fs::write(&bad, "q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 oops t\n").unwrap();
    let q = data().join("qrels.txt");
    let (ok, _, err) = rankmamba(&[
        "eval",
        "--qrels",
        q.to_str().unwrap(),
        "--run",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("bad.trec:2: score must be a finite number"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (ok, _, err) = rankmamba(&[
        "eval",
        "--qrels",
        q.to_str().unwrap(),
        "--run",
        bad.to_str().unwrap(),
        "-m",
        "nDCG@ten",
    ]);
    assert!(!ok && err.contains("nDCG@ten"), "{err}");
}

/// A data folder holding a copy of the GPT-NeoX tokenizer.
fn folder_with_tokenizer() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tokenizers/gpt-neox-20b");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::copy(test_support::neox_tokenizer(), tok.join("tokenizer.json")).unwrap();
    dir
}

#[test]
fn the_data_flag_wins_over_the_variable_which_wins_over_the_repository() {
    let (flag, env) = (folder_with_tokenizer(), folder_with_tokenizer());
    let line = |out: &str| {
        out.lines()
            .skip_while(|l| !l.starts_with("gpt-neox-20b"))
            .find(|l| l.trim_start().starts_with("in ") || l.contains("not fetched"))
            .unwrap_or_default()
            .to_string()
    };
    let f = flag.path().to_str().unwrap();
    let (ok, out, err) = rankmamba_env(
        &["--data", f, "data", "list"],
        &[("RANKMAMBA_DATA", env.path())],
    );
    assert!(ok, "{err}");
    assert!(line(&out).contains(f), "{out}");
    let (ok, out, err) = rankmamba_env(&["data", "list"], &[("RANKMAMBA_DATA", env.path())]);
    assert!(ok, "{err}");
    assert!(line(&out).contains(env.path().to_str().unwrap()), "{out}");
    // Nothing set: the repository's ../shared/data (the working directory is this repository).
    let (ok, out, err) = rankmamba_env(&["data", "list"], &[]);
    assert!(ok, "{err}");
    let shared = test_support::data_dir();
    assert!(line(&out).contains(shared.to_str().unwrap()), "{out}");
}

#[test]
fn a_missing_data_set_names_every_place_and_the_fetch_command() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = rankmamba_env(
        &[
            "--data",
            empty.path().to_str().unwrap(),
            "train",
            "--model",
            "mamba-tiny",
            "--dataset",
            "nosuch-set",
            "--out",
            out.path().join("m").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains(&empty.path().join("nosuch-set").display().to_string()),
        "{err}"
    );
    assert!(err.contains("shared/data/nosuch-set"), "{err}");
    assert!(
        err.contains("nosuch-set has no download") && !err.contains("data fetch nosuch-set"),
        "{err}"
    );
    assert!(
        !err.contains("scripts/") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        !out.path().join("m").exists(),
        "nothing written before the inputs are checked"
    );
    // A --data folder that does not exist is an error naming it, not a fall-through.
    let gone = empty.path().join("typo");
    let (ok, _, err) = rankmamba_env(
        &[
            "--data",
            gone.to_str().unwrap(),
            "data",
            "fetch",
            "dl19",
            "-q",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("typo") && err.contains("not a folder"),
        "{err}"
    );
}

#[test]
fn reproduce_without_fetch_names_what_is_missing_and_how_to_get_it() {
    // An empty cache folder: MiniLM is nowhere (the data sets are in ../shared/data).
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = rankmamba_env(
        &[
            "reproduce",
            "--preset",
            "quick",
            "--models",
            "minilm",
            "--tasks",
            "scifact",
            "--out",
            out.path().join("r").to_str().unwrap(),
        ],
        &[("XDG_CACHE_HOME", cache.path())],
    );
    assert!(!ok);
    assert!(err.contains("models/all-MiniLM-L6-v2 (absent)"), "{err}");
    assert!(
        err.contains("rankmamba data fetch all-MiniLM-L6-v2") && err.contains("--fetch"),
        "{err}"
    );
    assert!(
        !out.path().join("r").exists(),
        "nothing written before the inputs are there"
    );
}

/// Counts that would size an allocation beyond any machine are refused with the setting named,
/// before anything is written (they used to abort or run out of memory).
#[test]
fn huge_counts_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let o = out.to_str().unwrap();
    for (extra, want) in [
        (&["--groups-per-step", "100000000"][..], "pairs per step"),
        (&["--steps", "18446744073709551615"][..], "training groups"),
    ] {
        let mut args = vec![
            "train",
            "--model",
            "mamba-tiny",
            "--dataset",
            "scifact",
            "--out",
            o,
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = rankmamba(&args);
        assert!(!ok && err.contains(want), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} wrote {}", out.display());
    }
    let (ok, _, err) = rankmamba(&["bench", "scan", "--lens", "1000000000"]);
    assert!(!ok && err.contains("--lens 1000000000"), "{err}");
}

#[test]
fn eval_reads_what_trec_eval_reads() {
    let d = data();
    let (q, r) = (d.join("qrels.txt"), d.join("runs/bm25.trec"));
    let tmp = tempfile::tempdir().unwrap();
    // fields after the run tag are ignored (trec_eval's results.trunc has nine), `#` lines are
    // comments, gzip is read whatever the name, `-` is standard input
    let text = std::fs::read_to_string(&r).unwrap();
    let trailing: String = text
        .lines()
        .map(|l| format!("{l} more junk\n"))
        .collect::<String>();
    let trailing_path = tmp.path().join("trailing.trec");
    std::fs::write(&trailing_path, format!("# a comment\n{trailing}")).unwrap();
    let gz_path = tmp.path().join("bm25.run");
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .arg(&r)
        .output()
        .unwrap();
    std::fs::write(&gz_path, gz.stdout).unwrap();
    let (ok, plain, err) =
        rankmamba(&["eval", "-l", "2", q.to_str().unwrap(), r.to_str().unwrap()]);
    assert!(ok, "{err}");
    // no -m: trec_eval's default measures, with the figures of the data README
    for line in [
        "runid                 \tall\tbm25\n",
        "num_q                 \tall\t43\n",
        "num_rel_ret           \tall\t",
        "gm_map                \tall\t",
        "iprec_at_recall_0.50  \tall\t",
        "P_1000                \tall\t",
    ] {
        assert!(plain.contains(line), "{line:?} missing:\n{plain}");
    }
    for p in [&trailing_path, &gz_path] {
        let (ok, out, err) =
            rankmamba(&["eval", "-l", "2", q.to_str().unwrap(), p.to_str().unwrap()]);
        assert!(ok, "{}: {err}", p.display());
        assert_eq!(out, plain, "{}", p.display());
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rankmamba"))
        .args([
            "eval",
            "-l",
            "2",
            "--qrels",
            "-",
            "--run",
            r.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&q).unwrap()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        plain,
        "qrels from stdin"
    );
    // several runs: one block each, each opened by its runid
    let tasb = d.join("runs/tasb.trec");
    let (ok, out, err) = rankmamba(&[
        "eval",
        "-l",
        "2",
        "-m",
        "ndcg_cut.10",
        q.to_str().unwrap(),
        r.to_str().unwrap(),
        tasb.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "runid                 \tall\tbm25\nndcg_cut_10           \tall\t0.5058\n\
         runid                 \tall\ttasb\nndcg_cut_10           \tall\t0.7210\n"
    );
    // a bare family means trec_eval's default cutoffs
    let (ok, out, err) = rankmamba(&["eval", "-m", "P", q.to_str().unwrap(), r.to_str().unwrap()]);
    assert!(ok, "{err}");
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap().trim())
        .collect();
    assert_eq!(
        names,
        [
            "P_5", "P_10", "P_15", "P_20", "P_30", "P_100", "P_200", "P_500", "P_1000"
        ]
    );
    // bad invocations
    let (ok, _, err) = rankmamba(&["eval", "-", "-"]);
    assert!(!ok && err.contains("one file only"), "{err}");
    let (ok, _, err) = rankmamba(&["eval", q.to_str().unwrap()]);
    assert!(!ok && err.contains("no run file"), "{err}");
}

#[test]
fn compare_tests_all_pairs_in_every_format() {
    let d = data();
    let q = d.join("qrels.txt");
    let runs: Vec<String> = ["bm25", "tasb", "splade-pp-ed"]
        .iter()
        .map(|r| d.join(format!("runs/{r}.trec")).display().to_string())
        .collect();
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["compare", "-l", "2", "-m", "nDCG@10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(q.display().to_string());
        v.extend(runs.iter().cloned());
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, out, err) = rankmamba(&refs);
        assert!(ok, "{extra:?}: {err}");
        out
    };
    // SciPy on pytrec_eval's per-query nDCG@10 (-l 2), tasb vs bm25, 43 queries:
    // wilcoxon(tasb, bm25) = (122, p 6.038117589923786e-06); ttest_rel p 5.200229512627272e-06
    for (test, p) in [
        ("wilcoxon", 6.038117589923786e-06),
        ("t", 5.200229512627272e-06),
    ] {
        let out = run(&[
            "--test",
            test,
            "--pairs",
            "all",
            "--correction",
            "none",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let pair = v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["a"] == 1 && x["b"] == 0)
            .unwrap_or_else(|| panic!("no tasb-bm25 pair: {v}"));
        let got = pair["p_value"].as_f64().unwrap();
        assert!((got - p).abs() <= 1e-9 * p, "{test}: {got} vs SciPy {p}");
        assert_eq!(pair["p_adjusted"].as_f64().unwrap(), got, "no correction");
    }
    let md = run(&["--pairs", "all", "--format", "markdown"]);
    assert!(md.contains("| b | tasb | 0.7210<sup>a</sup> |"), "{md}");
    assert!(md.contains("**0.7308**<sup>a</sup>"), "{md}");
    let tex = run(&["--pairs", "all", "--format", "latex"]);
    assert!(tex.contains("\\textbf{0.7308}$^{a}$"), "{tex}");
    let ci = run(&["--ci", "--samples", "2000"]);
    assert!(ci.contains("95% bootstrap intervals"), "{ci}");
    let (ok, _, err) = rankmamba(&["compare", "--test", "bogus", "--qrels", "x", "--run", "y"]);
    assert!(
        !ok && err.contains("wilcoxon"),
        "the error lists the tests: {err}"
    );
}

#[test]
fn help_lists_values_and_completions_are_printed() {
    let (ok, out, _) = rankmamba(&["compare", "--help"]);
    assert!(ok);
    for v in ["wilcoxon", "bootstrap", "bonferroni", "markdown", "latex"] {
        assert!(out.contains(v), "{v} missing from compare --help:\n{out}");
    }
    let (ok, out, _) = rankmamba(&["fuse", "--help"]);
    assert!(
        ok && out.contains("combmnz") && out.contains("z-score"),
        "{out}"
    );
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (ok, out, err) = rankmamba(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(
            out.contains("rankmamba") && out.contains("serve"),
            "{shell}: {out}"
        );
    }
    let (ok, _, err) = rankmamba(&["completions", "tcsh"]);
    assert!(!ok && err.contains("bash"), "{err}");
}

/// Per-query values of one measure from trec_eval's text output (`name qid value` lines).
fn per_query(out: &str, name: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[0].trim() == name).then(|| (f[1].to_string(), f[2].parse().unwrap()))
        })
        .collect()
}

#[test]
fn eval_z_scores_and_judgement_groups_agree_with_plain_measures() {
    let d = data();
    let (q, r) = (d.join("qrels.txt"), d.join("runs/bm25.trec"));
    let (q, r) = (q.to_str().unwrap(), r.to_str().unwrap());
    let (ok, plain, err) = rankmamba(&["eval", "-q", "-l", "2", "-m", "P.10", "-m", "map", q, r]);
    assert!(ok, "{err}");
    // DL19's qrels are a qrels_jg file with one judgement group ("0") per query: the measures
    // averaged over groups equal the plain ones, query by query
    let (ok, jg, err) = rankmamba(&[
        "eval",
        "-q",
        "-l",
        "2",
        "-R",
        "qrels_jg",
        "-m",
        "P_avgjg.10",
        "-m",
        "map_avgjg",
        q,
        r,
    ]);
    assert!(ok, "{err}");
    for (a, b) in [("P_10", "P_avgjg_10"), ("map", "map_avgjg")] {
        let (x, y) = (per_query(&plain, a), per_query(&jg, b));
        assert_eq!(x.len(), 44, "43 queries and all: {plain}");
        assert_eq!(x, y, "{a} vs {b}");
    }
    // -Z: (value - mean) / stddev per query, then averaged
    let tmp = tempfile::tempdir().unwrap();
    let z = tmp.path().join("z.txt");
    let lines: String = per_query(&plain, "P_10")
        .iter()
        .filter(|(qid, _)| qid != "all")
        .map(|(qid, _)| format!("{qid} P_10 0.5 0.25\n"))
        .collect();
    std::fs::write(&z, lines).unwrap();
    let (ok, zout, err) = rankmamba(&[
        "eval",
        "-q",
        "-l",
        "2",
        "-m",
        "P.10",
        "-Z",
        z.to_str().unwrap(),
        q,
        r,
    ]);
    assert!(ok, "{err}");
    // trec_eval prefixes standardised measures with Z
    let (raw, std) = (per_query(&plain, "P_10"), per_query(&zout, "ZP_10"));
    let mut sum = 0.0;
    for ((qa, v), (qb, zv)) in raw.iter().zip(&std).filter(|((q, _), _)| q != "all") {
        assert_eq!(qa, qb);
        let want = (v - 0.5) / 0.25;
        assert!((zv - want).abs() < 1e-3, "{qa}: {zv} vs {want}");
        sum += want;
    }
    let all = std.iter().find(|(q, _)| q == "all").unwrap().1;
    assert!((all - sum / 43.0).abs() < 1e-3, "{all}");
    // preferences from the qrels: trec_eval's all_prefs measures, per query and all
    let (ok, prefs, err) = rankmamba(&["eval", "-R", "qrels_prefs", q, r]);
    assert!(ok, "{err}");
    assert!(
        prefs.contains("prefs_simp") && prefs.contains("\tall\t"),
        "{prefs}"
    );
    let (ok, _, err) = rankmamba(&["eval", "-R", "prefs", "-Z", z.to_str().unwrap(), q, r]);
    assert!(!ok && err.contains("-Z applies to -R qrels only"), "{err}");
}
