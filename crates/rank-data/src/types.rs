//! Queries, documents and in-memory collections of them.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A query (a topic): its id and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Query id, as in the qrels and runs.
    pub id: String,
    /// Query text.
    pub text: String,
}

/// A document (a passage or an abstract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Document id, as in the qrels and runs.
    pub id: String,
    /// Title; empty when the layout has none (MS MARCO passages).
    pub title: String,
    /// Body text.
    pub text: String,
}

impl Document {
    /// The text a reranker or BM25 sees: `title + " " + text`, or the text alone when the
    /// title is empty (BEIR's convention for title + body).
    pub fn contents(&self) -> Cow<'_, str> {
        match (self.title.is_empty(), self.text.is_empty()) {
            (true, _) => Cow::Borrowed(&self.text),
            (false, true) => Cow::Borrowed(&self.title),
            (false, false) => Cow::Owned(format!("{} {}", self.title, self.text)),
        }
    }
}

/// Queries by id, iterated in byte order of their ids (as `ir-metrics` orders qrels).
#[derive(Debug, Clone, Default)]
pub struct Queries {
    map: BTreeMap<String, String>,
}

impl Queries {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a query; returns false (and keeps the old text) when the id is already present.
    pub fn insert(&mut self, query: Query) -> bool {
        match self.map.entry(query.id) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(query.text);
                true
            }
        }
    }

    /// The text of query `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.map.get(id).map(String::as_str)
    }

    /// True when `id` is present.
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no query.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// (id, text) in byte order of the ids.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Query ids in byte order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Keep only the queries for which `keep(id)` is true (e.g. those judged in a split's qrels).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.map.retain(|k, _| keep(k));
    }

    /// As [`Query`] values, in id order.
    pub fn to_vec(&self) -> Vec<Query> {
        self.iter()
            .map(|(id, text)| Query {
                id: id.to_string(),
                text: text.to_string(),
            })
            .collect()
    }

    /// Collect the queries of a reader; a repeated id is an error naming both lines.
    pub(crate) fn collect_from(
        items: impl Iterator<Item = Result<(u64, Query)>>,
        path: &Path,
    ) -> Result<Self> {
        let mut first_line: HashMap<String, u64> = HashMap::new();
        let mut queries = Queries::new();
        for item in items {
            let (line, q) = item?;
            if let Some(&first) = first_line.get(&q.id) {
                return Err(Error::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    first_line: first,
                    what: "query id",
                    id: q.id,
                });
            }
            first_line.insert(q.id.clone(), line);
            queries.insert(q);
        }
        Ok(queries)
    }
}

impl FromIterator<Query> for Queries {
    /// Later duplicates are dropped (the first text wins).
    fn from_iter<I: IntoIterator<Item = Query>>(iter: I) -> Self {
        let mut q = Queries::new();
        for x in iter {
            q.insert(x);
        }
        q
    }
}

/// Documents by id, iterated in insertion (file) order.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    docs: Vec<Document>,
    index: HashMap<String, usize>,
}

impl Corpus {
    /// An empty corpus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a document; returns false (and keeps the old one) when the id is already present.
    pub fn insert(&mut self, doc: Document) -> bool {
        if self.index.contains_key(&doc.id) {
            return false;
        }
        self.index.insert(doc.id.clone(), self.docs.len());
        self.docs.push(doc);
        true
    }

    /// Document `id`.
    pub fn get(&self, id: &str) -> Option<&Document> {
        self.index.get(id).map(|&i| &self.docs[i])
    }

    /// True when `id` is present.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when there is no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Documents in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Document> {
        self.docs.iter()
    }

    /// Collect the documents of a reader, keeping those for which `keep(id)` is true; a repeated
    /// id is an error naming both lines (checked among kept documents only).
    pub(crate) fn collect_from(
        items: impl Iterator<Item = Result<(u64, Document)>>,
        path: &Path,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Self> {
        let mut lines: HashMap<String, u64> = HashMap::new();
        let mut corpus = Corpus::new();
        for item in items {
            let (line, d) = item?;
            if !keep(&d.id) {
                continue;
            }
            if let Some(&first) = lines.get(&d.id) {
                return Err(Error::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    first_line: first,
                    what: "document id",
                    id: d.id,
                });
            }
            lines.insert(d.id.clone(), line);
            corpus.insert(d);
        }
        Ok(corpus)
    }
}

impl FromIterator<Document> for Corpus {
    /// Later duplicates are dropped (the first document wins).
    fn from_iter<I: IntoIterator<Item = Document>>(iter: I) -> Self {
        let mut c = Corpus::new();
        for d in iter {
            c.insert(d);
        }
        c
    }
}
