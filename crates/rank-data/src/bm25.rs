//! A BM25 first stage for collections that ship no run (SciFact), on a `tantivy` index in RAM.
//!
//! # Choices
//! - **One field, title + text** ([`Document::contents`]): Anserini's "flat" BEIR indexes do the
//!   same (SciFact nDCG@10 0.672; "multifield", title and text scored apart, gets 0.665).
//! - **Analyzer**: tantivy's `SimpleTokenizer` (splits on non-alphanumeric characters),
//!   tokens longer than 40 bytes dropped, lower-cased, Lucene's 33 English stop words removed
//!   (the list of Lucene's `EnglishAnalyzer`, which Anserini uses), then the Snowball English
//!   stemmer (tantivy's `en_stem` plus stop words; Anserini uses the older Porter stemmer).
//! - **Query**: the analyzed query terms as a bag of words, each unique term a `SHOULD`
//!   clause boosted by its count in the query (Anserini's `BagOfWordsQueryGenerator`). The query
//!   text is never parsed as query syntax, so `:`, `"`, `-` or `(` in a claim are just text.
//! - **k1 = 1.2, b = 0.75**: tantivy's BM25 constants, which it does not let one change. Anserini's
//!   defaults are k1 = 0.9, b = 0.4 (tuned on MS MARCO); the BEIR paper's BM25 is Elasticsearch,
//!   whose defaults are k1 = 1.2, b = 0.75, like tantivy. IDF is Lucene's
//!   `ln(1 + (N - df + 0.5) / (df + 0.5))`, document lengths are quantised to one byte as in Lucene.
//! - Ties in score are broken by document id (descending) when the run is written, as trec_eval
//!   ranks.

use crate::error::{Error, Result};
use crate::types::{Document, Query};
use ir_metrics::Run;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query as TantivyQuery, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

const TOKENIZER: &str = "rank_data_en";
const ORD_FIELD: &str = "ord";

/// The analyzer used for documents and queries (see the module documentation).
pub fn analyzer() -> TextAnalyzer {
    let stop = StopWordFilter::new(Language::English)
        .expect("tantivy ships English stop words with its `stopwords` feature");
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analyzed terms of `text`, in order (for inspection and tests).
pub fn analyze(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    stream.process(&mut |t| out.push(t.text.clone()));
    out
}

/// A BM25 index of a document collection, in RAM.
pub struct Bm25Index {
    reader: IndexReader,
    body: Field,
    ids: Vec<String>,
    /// The `ord` fast column of each segment (index into `ids`).
    ords: Vec<Column<u64>>,
}

impl Bm25Index {
    /// Index documents (title + text) in memory. A repeated document id is an error; so is an
    /// empty collection.
    ///
    /// ```
    /// use rank_data::{Bm25Index, Document, Query};
    ///
    /// let doc = |id: &str, text: &str| Ok(Document { id: id.into(), title: String::new(), text: text.into() });
    /// let index = Bm25Index::build([
    ///     doc("d1", "Mamba is a selective state space model."),
    ///     doc("d2", "Transformers compute attention over every pair of tokens."),
    ///     doc("d3", "State space models scan a sequence in linear time."),
    /// ])?;
    /// let queries = [Query { id: "q1".into(), text: "state space models".into() }];
    /// let run = index.run(&queries, 10, "bm25")?;
    /// let ranked: Vec<&str> = run.queries()[0].ranked().iter().map(|(d, _)| *d).collect();
    /// assert_eq!(ranked.len(), 2); // d2 shares no term with the query
    /// assert!(ranked.contains(&"d1") && ranked.contains(&"d3"));
    /// # Ok::<(), rank_data::Error>(())
    /// ```
    pub fn build(docs: impl IntoIterator<Item = Result<Document>>) -> Result<Self> {
        let mut schema = Schema::builder();
        let body = schema.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        );
        let ord = schema.add_u64_field(ORD_FIELD, FAST);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(TOKENIZER, analyzer());
        // one indexing thread: documents stay in one segment, in order; 5k abstracts take ~1 s
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 64 << 20)?;
        let mut ids: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for doc in docs {
            let doc = doc?;
            if !seen.insert(doc.id.clone()) {
                return Err(Error::Invalid(format!(
                    "document id {:?} occurs twice in the collection to index",
                    doc.id
                )));
            }
            let mut td = TantivyDocument::default();
            td.add_text(body, doc.contents());
            td.add_u64(ord, ids.len() as u64);
            writer.add_document(td)?;
            ids.push(doc.id);
        }
        if ids.is_empty() {
            return Err(Error::Invalid("no document to index".into()));
        }
        writer.commit()?;
        drop(writer);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let ords = searcher
            .segment_readers()
            .iter()
            .map(|s| s.fast_fields().u64(ORD_FIELD))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Bm25Index {
            reader,
            body,
            ids,
            ords,
        })
    }

    /// Number of documents indexed.
    pub fn num_docs(&self) -> usize {
        self.ids.len()
    }

    /// The `k` best documents for `query` as (docid, BM25 score), best first (ties: docid
    /// descending). A query with no indexable term (only stop words or punctuation) gets none.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(String, f64)>> {
        if k == 0 {
            return Err(Error::Invalid("k must be positive".into()));
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for t in analyze(query) {
            *counts.entry(t).or_default() += 1;
        }
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = counts
            .into_iter()
            .map(|(t, n)| {
                let tq = TermQuery::new(
                    Term::from_field_text(self.body, &t),
                    IndexRecordOption::WithFreqs,
                );
                let q: Box<dyn TantivyQuery> = if n == 1 {
                    Box::new(tq)
                } else {
                    Box::new(BoostQuery::new(Box::new(tq), n as f32))
                };
                (Occur::Should, q)
            })
            .collect();
        let searcher = self.reader.searcher();
        // No more hits than documents: a huge k (`--depth 1000000000`) must not size the heap.
        let limit = k.min(self.num_docs().max(1));
        let top = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(limit).order_by_score(),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let ord = self.ords[addr.segment_ord as usize]
                .first(addr.doc_id)
                .ok_or_else(|| Error::Index(format!("document {addr:?} has no ord")))?;
            out.push((self.ids[ord as usize].clone(), f64::from(score)));
        }
        out.sort_by(|a, b| ir_metrics::run::trec_order(a.1, &a.0, b.1, &b.0));
        Ok(out)
    }

    /// Search every query (in parallel) and return the top `k` of each as a run tagged `tag`.
    /// Queries that retrieve nothing are absent from the run, as in a TREC run file.
    pub fn run<'a>(
        &self,
        queries: impl IntoIterator<Item = &'a Query>,
        k: usize,
        tag: &str,
    ) -> Result<Run> {
        let queries: Vec<&Query> = queries.into_iter().collect();
        let results: Vec<(String, Vec<(String, f64)>)> = queries
            .par_iter()
            .map(|q| Ok((q.id.clone(), self.search(&q.text, k)?)))
            .collect::<Result<_>>()?;
        let results = results.into_iter().filter(|(_, d)| !d.is_empty()).collect();
        Ok(Run::from_queries(tag, results)?)
    }
}
