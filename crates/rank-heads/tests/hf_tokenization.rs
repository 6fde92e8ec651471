//! The pair encoder against `transformers`' own tokenization of ten (query, document) pairs by
//! all-MiniLM-L6-v2's tokenizer (`tokenizer(queries, docs, padding="longest",
//! truncation="longest_first", max_length=40)`, scripts/gen_transformer_fixtures.py; the same
//! fixture feeds transformer-baselines' hidden-state test).

use std::path::{Path, PathBuf};

use rank_heads::{PaddingSide, PairEncoder, PairTruncation, TemplateStyle};

#[derive(serde::Deserialize)]
struct Pairs {
    max_length: usize,
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
}

fn pairs() -> Pairs {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../transformer-baselines/tests/fixtures/minilm_pairs.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn tokenizer() -> PathBuf {
    test_support::minilm_dir().join("tokenizer.json")
}

#[test]
fn minilm_pairs_tokenize_as_transformers_does() {
    let p = pairs();
    let refs: Vec<(&str, &str)> = p
        .pairs
        .iter()
        .map(|(q, d)| (q.as_str(), d.as_str()))
        .collect();
    let flat = |v: &Vec<Vec<i64>>| v.iter().flatten().copied().collect::<Vec<_>>();
    // one pair of the fixture is cut to the limit; its query is short, so longest-first cuts
    // the document only and both policies give HF's ids
    assert!(
        p.attention_mask
            .iter()
            .any(|m| m.iter().sum::<i64>() as usize == p.max_length)
    );
    for truncation in [PairTruncation::LongestFirst, PairTruncation::DocumentOnly] {
        let enc = PairEncoder::from_file(
            &tokenizer(),
            TemplateStyle::Encoder,
            p.max_length,
            PaddingSide::Right,
        )
        .unwrap()
        .with_truncation(truncation)
        .unwrap();
        let b = enc.encode_batch(&refs).unwrap();
        assert_eq!(
            (b.batch, b.seq_len),
            (p.input_ids.len(), p.input_ids[0].len())
        );
        assert_eq!(b.input_ids, flat(&p.input_ids), "{truncation:?} input_ids");
        assert_eq!(
            b.token_type_ids,
            flat(&p.token_type_ids),
            "{truncation:?} types"
        );
        assert_eq!(
            b.attention_mask,
            flat(&p.attention_mask),
            "{truncation:?} mask"
        );
    }
}

#[test]
fn longest_first_cuts_a_long_query_where_document_only_refuses() {
    // HF's longest_first, computed independently: pop a token from the longer text (the
    // second on ties, as `tokenizers` does) until [CLS] q [SEP] d [SEP] fits.
    let path = tokenizer();
    let plain = {
        let mut t = tokenizers::Tokenizer::from_file(&path).unwrap();
        t.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        t.with_truncation(None).unwrap();
        t.with_padding(None);
        t
    };
    let words = |s: &str| plain.encode(s, false).unwrap().get_ids().to_vec();
    let query = "which vitamins and minerals reduce the risk of hip fractures in older adults \
                 living alone in cold northern countries";
    let doc = "Vitamin D and calcium were given to care home residents for three years.";
    let (mut q, mut d) = (words(query), words(doc));
    assert!(q.len() > d.len(), "the query is the longer text");
    let limit = 16;
    while q.len() + d.len() + 3 > limit {
        if q.len() > d.len() {
            q.pop();
        } else {
            d.pop();
        }
    }
    let enc = |t: PairTruncation| {
        PairEncoder::from_file(&path, TemplateStyle::Encoder, limit, PaddingSide::Right)
            .unwrap()
            .with_truncation(t)
            .unwrap()
    };
    let e = enc(PairTruncation::LongestFirst)
        .encode_pair(query, doc)
        .unwrap();
    let (cls, sep) = (
        plain.token_to_id("[CLS]").unwrap(),
        plain.token_to_id("[SEP]").unwrap(),
    );
    let mut want = vec![cls];
    want.extend(&q);
    want.push(sep);
    want.extend(&d);
    want.push(sep);
    assert_eq!(e.ids, want);
    assert!(e.truncated);
    // the reranking default keeps the query whole: the query alone is over the limit, an error
    let err = enc(PairTruncation::DocumentOnly)
        .encode_pair(query, doc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("query"), "{err}");
}

#[test]
fn decoder_templates_refuse_longest_first_and_missing_files_are_named() {
    let neox = test_support::neox_tokenizer();
    let style = TemplateStyle::Decoder {
        template: rank_heads::PAPER_DECODER_TEMPLATE.into(),
        eos_id: 0,
    };
    let enc = PairEncoder::from_file(&neox, style, 64, PaddingSide::Left).unwrap();
    assert!(enc.with_truncation(PairTruncation::LongestFirst).is_err());
    let missing = Path::new("/nonexistent/tokenizer.json");
    let err = PairEncoder::from_file(missing, TemplateStyle::Encoder, 32, PaddingSide::Right)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
}

/// The workspace builds `tokenizers` with its pure-Rust fancy-regex engine; the GPT-NeoX
/// byte-level pre-tokenizer must split awkward text (contractions, digits, whitespace runs,
/// scripts other than Latin, emoji) exactly as the Python `tokenizers` reference (onig) does
/// (scripts/gen_tokenizer_fixtures.py).
#[test]
fn neox_ids_match_the_python_tokenizer() {
    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ids: Vec<u32>,
    }
    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/neox_ids.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(fixture.cases.len(), 20);
    let tok = tokenizers::Tokenizer::from_file(test_support::neox_tokenizer()).unwrap();
    for case in &fixture.cases {
        let ids = tok
            .encode(case.text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, case.ids, "{:?}", case.text);
    }
}
