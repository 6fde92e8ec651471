#!/usr/bin/env python3
"""Expected values for the ir-metrics parity tests, from independent references.

- Measures: pytrec_eval (PyPI `pytrec-eval-terrier`, trec_eval 9.0.x) on the 10 TREC DL runs.
  RR@k and -M depth are computed on runs cut in Python after sorting in trec_eval's order;
  Judged@k is P@k on qrels where every judged document is relevant (ir_measures' definition:
  divided by min(k, number retrieved)).
- Significance: scipy.stats (ttest_rel, permutation_test, bootstrap) and statsmodels
  (multipletests, Holm).
- Fusion: ranx.fuse (rrf, sum, mnz) on three DL19 runs whose scores have no ties.

- trec_eval's all_trec set (`trec_dl_all_trec.json`): every measure pytrec_eval supports,
  per query, on bm25 and tasb of DL19 and DL20 at relevance level 2, as compact tables
  (`--only all_trec` writes this file alone; it needs pytrec_eval only).

Run by hand; outputs are committed:
    python3 -m venv /tmp/v && /tmp/v/bin/pip install pytrec-eval-terrier scipy numpy ranx statsmodels
    /tmp/v/bin/python scripts/gen_ir_metrics_fixtures.py ../shared/data crates/ir-metrics/tests/fixtures
    /tmp/v/bin/python scripts/gen_ir_metrics_fixtures.py ../shared/data crates/ir-metrics/tests/fixtures --only all_trec
"""
import json
import os
import sys

import pytrec_eval

DATA, OUT = sys.argv[1], sys.argv[2]
ONLY = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--only" else None
RUNS = ["bm25", "bm25-rm3", "tasb", "splade-pp-ed", "openai-ada2"]
SETS = {"dl19": "trec-dl-2019-passage", "dl20": "trec-dl-2020-passage"}

TREC_MEASURES = {
    "recip_rank": "recip_rank", "ndcg": "ndcg", "ndcg_cut_5": "ndcg_cut.5",
    "ndcg_cut_10": "ndcg_cut.10", "ndcg_cut_20": "ndcg_cut.20", "ndcg_cut_100": "ndcg_cut.100",
    "map": "map", "map_cut_10": "map_cut.10", "map_cut_100": "map_cut.100",
    "P_5": "P.5", "P_10": "P.10", "P_20": "P.20", "recall_10": "recall.10",
    "recall_100": "recall.100", "Rprec": "Rprec", "success_1": "success.1",
    "success_5": "success.5", "success_10": "success.10", "bpref": "bpref",
}
# configurations: (relevance_level, judged_only, depth)
CONFIGS = {"l1": (1, False, None), "l2": (2, False, None), "l2_judged": (2, True, None),
           "l2_depth50": (2, False, 50)}


def read_qrels(path):
    q = {}
    for line in open(path):
        f = line.split()
        if f:
            q.setdefault(f[0], {})[f[2]] = int(f[3])
    return q


def read_run(path):
    r = {}
    for line in open(path):
        f = line.split()
        if f:
            r.setdefault(f[0], {})[f[2]] = float(f[4])
    return r


def trec_sorted(docs):
    """trec_eval order: score descending, then docid descending."""
    return sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)


def cut(run, k):
    return {q: dict(trec_sorted(d)[:k]) for q, d in run.items()}


def judged_filter(run, qrels):
    return {q: {d: s for d, s in docs.items() if d in qrels.get(q, {}) and qrels[q][d] >= 0}
            for q, docs in run.items()}


def evaluate(qrels, run, level, judged_only, depth):
    if depth is not None:
        run = cut(run, depth)
    ev = pytrec_eval.RelevanceEvaluator(qrels, set(TREC_MEASURES.values()),
                                        relevance_level=level, judged_docs_only_flag=judged_only)
    res = ev.evaluate(run)
    out = {name: {q: v[name] for q, v in res.items()} for name in TREC_MEASURES}
    # RR@10: cut after the judged-only filter (the cutoff counts ranked documents).
    base = judged_filter(run, qrels) if judged_only else run
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=level)
    out["RR@10"] = {q: v["recip_rank"] for q, v in rr.evaluate(cut(base, 10)).items()}
    # Judged@k: P@k with every judged document relevant, rescaled to min(k, retrieved).
    all_judged = {q: {d: 1 for d in docs} for q, docs in qrels.items()}
    jev = pytrec_eval.RelevanceEvaluator(all_judged, {"P.10,100"}, relevance_level=1)
    jres = jev.evaluate(base)
    for k in (10, 100):
        out[f"Judged@{k}"] = {q: v[f"P_{k}"] * k / min(k, len(base[q])) for q, v in jres.items()}
    return out


# all_trec on a few runs: (runs, relevance level). runid and relstring are not numbers in
# pytrec_eval (it gives 0) and are left out; rbp, rbp_resid and unj are trec_eval 10.0 only.
ALL_TREC_RUNS = ["bm25", "tasb"]
ALL_TREC_LEVEL = 2


def all_trec():
    out = {"pytrec_eval": getattr(pytrec_eval, "__version__", "pytrec-eval-terrier"),
           "relevance_level": ALL_TREC_LEVEL, "values": {}}
    for key, folder in SETS.items():
        qrels = read_qrels(os.path.join(DATA, folder, "qrels.txt"))
        out["values"][key] = {}
        for name in ALL_TREC_RUNS:
            run = read_run(os.path.join(DATA, folder, "runs", name + ".trec"))
            ev = pytrec_eval.RelevanceEvaluator(qrels, {"all_trec"},
                                                relevance_level=ALL_TREC_LEVEL)
            res = ev.evaluate(run)
            qids = sorted(res)
            names = [m for m in res[qids[0]] if m not in ("runid", "relstring")]
            # 10 significant digits: the test compares to 1e-6
            rows = [[float("%.10g" % res[q][m]) for m in names] for q in qids]
            out["values"][key][name] = {"measures": names, "qids": qids, "rows": rows}
    with open(os.path.join(OUT, "trec_dl_all_trec.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))


def main():
    if ONLY == "all_trec":
        return all_trec()
    all_trec()
    import numpy as np
    import scipy
    import scipy.stats
    from statsmodels.stats.multitest import multipletests
    measures = {}
    for key, folder in SETS.items():
        qrels = read_qrels(os.path.join(DATA, folder, "qrels.txt"))
        measures[key] = {}
        for name in RUNS:
            run = read_run(os.path.join(DATA, folder, "runs", name + ".trec"))
            measures[key][name] = {c: evaluate(qrels, run, *cfg) for c, cfg in CONFIGS.items()}
    meta = {"pytrec_eval": getattr(pytrec_eval, "__version__", "pytrec-eval-terrier"),
            "configs": {c: {"relevance_level": l, "judged_only": j, "max_docs": d}
                        for c, (l, j, d) in CONFIGS.items()}}
    with open(os.path.join(OUT, "trec_dl_measures.json"), "w") as f:
        json.dump({"meta": meta, "values": measures}, f, separators=(",", ":"))

    # Significance on per-query nDCG@10 (DL19, level 2).
    v = measures["dl19"]
    qids = sorted(v["bm25"]["l2"]["ndcg_cut_10"])
    col = lambda run: [v[run]["l2"]["ndcg_cut_10"][q] for q in qids]
    stats = {"scipy": scipy.__version__, "pairs": []}
    for a, b in [("tasb", "bm25"), ("splade-pp-ed", "tasb"), ("openai-ada2", "splade-pp-ed"),
                 ("bm25-rm3", "bm25")]:
        x, y = np.array(col(a)), np.array(col(b))
        t = scipy.stats.ttest_rel(x, y)
        stat = lambda p, q, axis=-1: np.mean(p - q, axis=axis)
        # exact randomization test on the first 14 queries (2^14 sign assignments)
        ex = scipy.stats.permutation_test((x[:14], y[:14]), stat, permutation_type="samples",
                                          vectorized=True, n_resamples=1 << 14)
        # exact on all queries is out of reach: a large Monte Carlo estimate is the reference
        mc = scipy.stats.permutation_test((x, y), stat, permutation_type="samples",
                                          vectorized=True, n_resamples=200000, rng=7)
        d = x - y
        boot = {}
        for method in ("percentile", "BCa"):
            r = scipy.stats.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=200000,
                                      method=method, rng=7)
            boot[method] = [float(r.confidence_interval.low), float(r.confidence_interval.high)]
        stats["pairs"].append({
            "a": a, "b": b, "x": x.tolist(), "y": y.tolist(),
            "t": float(t.statistic), "t_p": float(t.pvalue),
            "perm_exact14_stat": float(ex.statistic), "perm_exact14_p": float(ex.pvalue),
            "perm_mc_p": float(mc.pvalue), "perm_mc_samples": 200000,
            "bootstrap95": boot,
        })
    ps = [p["t_p"] for p in stats["pairs"]] + [0.01, 0.04, 0.03, 0.2, 0.0]
    stats["holm_in"] = ps
    stats["holm_out"] = multipletests(ps, method="holm")[1].tolist()
    with open(os.path.join(OUT, "significance.json"), "w") as f:
        json.dump(stats, f, indent=1)

    # Fusion with ranx on three DL19 runs.
    import ranx
    names = ["tasb", "splade-pp-ed", "openai-ada2"]
    path = lambda n: os.path.join(DATA, SETS["dl19"], "runs", n + ".trec")
    # ranx's rank order is ambiguous on tied scores: RRF is compared on tie-free queries only
    tie_free = None
    for n in names:
        ok = {q for q, docs in read_run(path(n)).items() if len(set(docs.values())) == len(docs)}
        tie_free = ok if tie_free is None else tie_free & ok
    runs = [ranx.Run.from_file(path(n), kind="trec") for n in names]
    fused = {}
    for label, norm, method, params in [("rrf60", "min-max", "rrf", {"k": 60}),
                                        ("rrf10", "min-max", "rrf", {"k": 10}),
                                        ("combsum_minmax", "min-max", "sum", None),
                                        ("combsum_zscore", "zmuv", "sum", None),
                                        ("combmnz_minmax", "min-max", "mnz", None),
                                        ("combmnz_zscore", "zmuv", "mnz", None)]:
        out = ranx.fuse(runs=runs, norm=norm, method=method, params=params)
        d = out.to_dict()
        qids = sorted(q for q in d if method != "rrf" or q in tie_free)[:12]
        fused[label] = {q: {doc: float(s) for doc, s in d[q].items()} for q in qids}
    with open(os.path.join(OUT, "fusion_ranx.json"), "w") as f:
        json.dump({"ranx": getattr(ranx, "__version__", "ranx"), "runs": names, "fused": fused},
                  f, separators=(",", ":"))


if __name__ == "__main__":
    main()
