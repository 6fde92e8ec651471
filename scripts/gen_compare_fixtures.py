#!/usr/bin/env python3
"""Expected values for ir-metrics' run comparison (`tests/compare.rs`), from independent references.

- Wilcoxon signed-rank: `scipy.stats.wilcoxon(x, y)` with its defaults (zero_method="wilcox",
  correction=False, method="auto") on DL19 per-query nDCG@10 (all 43 queries and the first 12
  and 25) and on synthetic samples chosen to take every branch of SciPy's "auto" choice:
  exact distribution, exact permutation (n <= 13 with ties or zeros), normal approximation
  (ties or zeros and n > 13, or n > 50).
- Paired bootstrap test (Sakai 2006, studentized, shift method), a NumPy implementation of the
  definition in docs/metrics.md: on a fixed matrix of resampling indices (stored, so that the
  Rust test uses the very same resamples) and with 200,000 NumPy resamples (the Monte Carlo
  reference for the seeded Rust test).
- Corrections: statsmodels `multipletests(method="holm" | "bonferroni")`.
- ranx `compare` (student and fisher, max_p = 0.05) on four DL19 runs, nDCG@10 and MAP@100:
  the per-query scores ranx tested (so the Rust test checks the statistics and the marks, not
  the measures), its p-values, and per cell the superscript letters and bold face of its
  text table and LaTeX table.

Run by hand; the output is committed:
    python3 -m venv /tmp/v && /tmp/v/bin/pip install scipy numpy ranx statsmodels
    /tmp/v/bin/python scripts/gen_compare_fixtures.py ../shared/data crates/ir-metrics/tests/fixtures
"""
import json
import os
import re
import sys

import numpy as np
import scipy
import scipy.stats
import statsmodels
from statsmodels.stats.multitest import multipletests

DATA, OUT = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))


def scipy_wilcoxon_path(d):
    """The branch SciPy 1.17's method="auto" takes (scipy/stats/_wilcoxon.py)."""
    n = len(d)
    nz = d[d != 0]
    a = np.sort(np.abs(nz))
    ties = bool(np.any(a[1:] == a[:-1]))
    zeros = bool(np.any(d == 0))
    if n > 50:
        return "asymptotic"
    if not (ties or zeros):
        return "exact"
    if n <= 13:
        return "permutation"
    return "asymptotic"


def wilcoxon_cases(pairs):
    cases = []

    def add(name, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        r = scipy.stats.wilcoxon(x, y)
        cases.append({"name": name, "x": x.tolist(), "y": y.tolist(),
                      "statistic": float(r.statistic), "p": float(r.pvalue),
                      "path": scipy_wilcoxon_path(x - y)})

    for p in pairs:
        x, y = np.array(p["x"]), np.array(p["y"])
        tag = f'{p["a"]}-{p["b"]}'
        add(f"dl19 {tag} all", x, y)
        add(f"dl19 {tag} first12", x[:12], y[:12])
        add(f"dl19 {tag} first25", x[:25], y[:25])
    rng = np.random.default_rng(20261201)
    for n in (5, 8, 20, 50):
        x = rng.normal(size=n)
        add(f"normal n={n} no ties", x + 0.3, x * 0 + rng.normal(size=n))
    x = rng.uniform(0.5, 1.0, size=20)
    add("all positive n=20 (exact tail)", x, np.zeros(20))
    add("n=51 no ties (asymptotic)", rng.normal(size=51) + 0.4, rng.normal(size=51))
    t = np.round(rng.normal(size=10), 1)
    t[3] = 0.0
    add("n=10 ties and a zero (permutation)", t, np.zeros(10))
    t = np.round(rng.normal(0.3, 1, size=13), 1)
    add("n=13 ties (permutation)", t, np.zeros(13))
    t = np.round(rng.normal(0.3, 1, size=14), 1)
    add("n=14 ties (asymptotic)", t, np.zeros(14))
    t = np.round(rng.normal(0.2, 0.5, size=30), 1)
    add("n=30 ties and zeros (asymptotic)", t, np.zeros(30))
    t = np.round(rng.normal(1.5, 0.5, size=40), 1)
    add("n=40 ties, tiny p (asymptotic)", t, np.zeros(40))
    return cases


def t_stat(d):
    """Studentized mean; sd 0 gives 0 for a zero mean, else +-inf."""
    d = np.asarray(d, float)
    m = d.mean(axis=-1)
    s = d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = m / (s / np.sqrt(d.shape[-1]))
    return np.where(s > 0, t, np.where(m == 0, 0.0, np.sign(m) * np.inf))


def bootstrap_p(d, idx):
    """Paired bootstrap test: resample the centred differences w = d - mean(d), count
    |t(w*)| >= |t(d)|, p = (count + 1) / (B + 1)."""
    d = np.asarray(d, float)
    t0 = t_stat(d)
    w = d - d.mean()
    ts = t_stat(w[idx])
    count = int(np.sum(np.abs(ts) >= np.abs(t0)))
    return float(t0), (count + 1) / (len(idx) + 1)


def bootstrap_cases(pairs):
    n = len(pairs[0]["x"])
    idx = np.random.default_rng(5).integers(0, n, size=(400, n))
    out = {"indices": idx.tolist(), "pairs": []}
    rng = np.random.default_rng(9)
    big = 200000
    for p in pairs:
        d = np.array(p["x"]) - np.array(p["y"])
        t0, p_fixed = bootstrap_p(d, idx)
        p_mc = np.mean([bootstrap_p(d, rng.integers(0, n, size=(20000, n)))[1]
                        for _ in range(big // 20000)])
        out["pairs"].append({"x": p["x"], "y": p["y"], "t": t0, "p_fixed": p_fixed,
                             "p_mc": float(p_mc), "mc_samples": big})
    return out


def correction_cases(sig):
    sets = [sig["holm_in"], [0.01, 0.02, 0.03, 0.04, 0.05], [0.5, 0.5, 0.001, 0.9, 1.0, 0.2],
            [0.3], [0.0, 0.0, 0.04, 0.04, 0.012]]
    return [{"p": s, "holm": multipletests(s, method="holm")[1].tolist(),
             "bonferroni": multipletests(s, method="bonferroni")[1].tolist()} for s in sets]


SUPER = dict(zip("ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖ۹ʳˢᵗᵘᵛʷˣʸᶻ", "abcdefghijklmnopqrstuvwxyz"))


def ranx_case():
    import ranx
    folder = os.path.join(DATA, "trec-dl-2019-passage")
    names = ["bm25", "bm25-rm3", "tasb", "splade-pp-ed"]
    metrics = ["ndcg@10", "map@100"]
    qrels = ranx.Qrels.from_file(os.path.join(folder, "qrels.txt"), kind="trec")
    runs = []
    for n in names:
        r = ranx.Run.from_file(os.path.join(folder, "runs", n + ".trec"), kind="trec")
        r.name = n
        runs.append(r)
    scores = {r.name: {m: ranx.evaluate(qrels, r, m, return_mean=False).tolist() for m in metrics}
              for r in runs}
    from importlib.metadata import version
    out = {"ranx": version("ranx"), "runs": names, "metrics": metrics,
           "max_p": 0.05, "scores": scores, "tests": {}}
    for test, kw in [("student", {}), ("fisher", {"n_permutations": 20000})]:
        rep = ranx.compare(qrels, runs, metrics=metrics, stat_test=test, max_p=0.05, **kw)
        d = rep.to_dict()
        pvalues = {f"{a}|{b}": {m: float(d[a]["comparisons"][b][m]) for m in metrics}
                   for a in names for b in names if a != b}
        # the text table: one row per run, cells "0.512ᵇᶜ"
        table = rep.to_table().splitlines()[2:]
        cells = {}
        for line, name in zip(table, names):
            fields = line.split()
            assert fields[1] == name, line
            cells[name] = {}
            for m, c in zip(metrics, fields[2:]):
                num = re.match(r"[0-9.]+", c).group(0)
                cells[name][m] = {"text": c, "value": num,
                                  "superscript": "".join(SUPER[ch] for ch in c[len(num):])}
        # the LaTeX table: bold face and superscripts per cell
        latex = rep.to_latex()
        rows = re.findall(r"\n([a-z]) &\n(.*?) &\n(.*?)\\\\", latex, re.S)
        assert len(rows) == len(names), latex
        for (_, name, body) in rows:
            name = name.replace("\\_", "_")
            for m, c in zip(metrics, body.split("&\n")):
                c = c.strip().rstrip("&").strip()
                sup = re.search(r"^(?:\\textbf\{)?[0-9.]+\}?\$\^\{([a-z]*)\}\$", c)
                cells[name][m]["latex_bold"] = c.startswith("\\textbf{")
                cells[name][m]["latex_superscript"] = sup.group(1) if sup else ""
                cells[name][m]["latex"] = c
        out["tests"][test] = {"pvalues": pvalues, "cells": cells,
                              "n_permutations": kw.get("n_permutations")}
    return out


def main():
    sig = json.load(open(os.path.join(HERE, "..", "crates/ir-metrics/tests/fixtures/significance.json")))
    pairs = sig["pairs"]
    fx = {
        "versions": {"scipy": scipy.__version__, "numpy": np.__version__,
                     "statsmodels": statsmodels.__version__},
        "wilcoxon": wilcoxon_cases(pairs),
        "bootstrap": bootstrap_cases(pairs),
        "corrections": correction_cases(sig),
        "ranx": ranx_case(),
    }
    with open(os.path.join(OUT, "compare.json"), "w") as f:
        json.dump(fx, f, separators=(",", ":"), ensure_ascii=False)


if __name__ == "__main__":
    main()
