//! The shared data sets, read through `Dataset`: counts compared with the figures of
//! `../shared/data/README.md` (and `wc -l` of the files).

mod common;

use rank_data::{Dataset, Error, Layout, Locations};

#[test]
fn trec_dl_2019() {
    let d = common::dataset("trec-dl-2019-passage");
    assert_eq!(d.layout(), Layout::TrecDl);
    let queries = d.queries().unwrap();
    let qrels = d.qrels("test").unwrap();
    assert_eq!(queries.len(), 43, "README: 43 judged queries");
    assert_eq!(qrels.len(), 43);
    assert!(qrels.qids().all(|q| queries.contains(q)));
    assert_eq!(
        d.run_names().unwrap(),
        ["bm25", "bm25-rm3", "openai-ada2", "splade-pp-ed", "tasb"]
    );
    let corpus = d.corpus(|_| true).unwrap();
    assert_eq!(corpus.len(), 10_852, "wc -l collection.tsv");
    for name in d.run_names().unwrap() {
        let run = d.run(&name).unwrap();
        assert_eq!(run.len(), 43, "{name}");
        assert!(
            run.queries().iter().all(|q| q.len() == 100),
            "{name}: top-100"
        );
        // README: the collection holds the text of every passage the runs retrieved
        for q in run.queries() {
            for (docid, _) in q.iter() {
                assert!(corpus.contains(docid), "{name}: {docid} has no text");
            }
        }
    }
    // streaming gives the same count without holding the collection
    assert_eq!(d.documents().unwrap().count(), 10_852);
    assert!(matches!(d.qrels("train"), Err(Error::Invalid(_))));
}

#[test]
fn trec_dl_2020_by_alias() {
    let d = Dataset::open_in(common::data_dir(), "dl20").unwrap();
    assert_eq!(d.name(), "trec-dl-2020-passage");
    assert_eq!(
        d.qrels("test").unwrap().len(),
        54,
        "README: 54 judged queries"
    );
    assert_eq!(d.run("bm25").unwrap().len(), 54);
    let err = d.run("nope").unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("splade-pp-ed"),
        "{err}"
    );
}

#[test]
fn scifact() {
    let d = common::dataset("scifact");
    assert_eq!(d.layout(), Layout::Beir);
    assert_eq!(d.splits().unwrap(), ["test", "train"]);
    assert!(d.run_names().unwrap().is_empty(), "SciFact ships no run");
    let corpus = d.corpus(|_| true).unwrap();
    assert_eq!(corpus.len(), 5_183, "README: 5,183 abstracts");
    assert!(
        corpus
            .iter()
            .all(|doc| !doc.title.is_empty() || !doc.text.is_empty())
    );
    assert_eq!(d.queries().unwrap().len(), 1_109, "README: 1,109 claims");
    let test = d.qrels("test").unwrap();
    let pairs: usize = test.iter().map(|(_, j)| j.len()).sum();
    assert_eq!(
        (pairs, test.len()),
        (339, 300),
        "README: 339 pairs, 300 queries"
    );
    let train = d.qrels("train").unwrap();
    let pairs: usize = train.iter().map(|(_, j)| j.len()).sum();
    assert_eq!(
        (pairs, train.len()),
        (919, 809),
        "README: 919 pairs, 809 queries"
    );
    // binary relevance, every judged document in the corpus
    for q in [&test, &train] {
        for (_, j) in q.iter() {
            for (doc, grade) in j.iter() {
                assert_eq!(grade, 1);
                assert!(corpus.contains(doc), "{doc}");
            }
        }
    }
}

#[test]
fn msmarco_train_sample() {
    let d = Dataset::open_in(common::data_dir(), "msmarco-sample").unwrap();
    assert_eq!(d.layout(), Layout::MsMarcoTrain);
    let ex = d.training_examples().unwrap();
    assert_eq!(ex.len(), 10, "README: 10 queries");
    assert!(
        ex.iter().all(|e| e.neg.len() == 25),
        "README: 25 hard negatives each"
    );
    assert!(ex.iter().all(|e| !e.pos.is_empty()));
    assert!(matches!(d.queries(), Err(Error::Invalid(_))));
    assert!(matches!(d.documents(), Err(Error::Invalid(_))));
}

#[test]
fn open_by_path_and_unknown_names() {
    let dir = common::data_dir();
    let d = Dataset::open(dir.join("scifact").to_str().unwrap()).unwrap();
    assert_eq!((d.name(), d.layout()), ("scifact", Layout::Beir));
    let err = Dataset::open_in(&dir, "no-such-set").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NotFound { .. }));
    assert!(
        msg.contains("no-such-set") && msg.contains("scifact"),
        "{msg}"
    );
    let msg = Dataset::open(dir.join("nope").join("x").to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a folder"), "{msg}");
    // a folder with no known layout
    let tmp = tempfile::tempdir().unwrap();
    let msg = Dataset::at(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("corpus.jsonl"), "{msg}");
}

#[test]
fn open_by_name_follows_the_lookup_order() {
    // Found by name where the users' lookup order finds it.
    let d = Dataset::open("dl19").unwrap();
    assert_eq!(d.name(), "trec-dl-2019-passage");
    assert_eq!(d.root(), common::data_dir().join("trec-dl-2019-passage"));
    // A folder earlier in the order wins: $RANKMAMBA_DATA over the repository's shared data.
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("trec-dl-2019-passage");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("qrels.txt"), "1 0 d 1\n").unwrap();
    let cwd = std::env::current_dir().unwrap();
    let locs = Locations::from_parts(None, Some(tmp.path().into()), Some(&cwd), None);
    let d = Dataset::open_from(&locs, "dl19").unwrap();
    assert_eq!(d.root(), mine);
    // A bare name never opens a folder of the working directory; an explicit ./path does.
    let l = Locations::from_parts(None, None, None, None);
    let e = Dataset::open_from(&l, "src").unwrap_err().to_string();
    // not in the fetch registry: no `data fetch` suggestion, the way that works instead
    assert!(
        !e.contains("data fetch src") && e.contains("src has no download"),
        "{e}"
    );
    assert!(
        Dataset::open_from(&l, "./tests").is_err(),
        "no known layout"
    );
    let e = Dataset::open_from(&l, "scifact").unwrap_err().to_string();
    assert!(
        e.contains("looked in") && e.contains("data fetch scifact"),
        "{e}"
    );
}
