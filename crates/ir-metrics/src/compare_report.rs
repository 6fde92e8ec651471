//! Tables of a [`Comparison`]: plain text, Markdown and LaTeX, with ranx's significance marks.
//!
//! Each run gets a letter (a, b, c, ... in input order; numbers when there are more than 26
//! runs) and a cell carries, as superscripts, the letters of the runs it is significantly
//! better than: a higher mean and an adjusted p-value `<= alpha` (ranx's `Report`). The best
//! mean of each measure is in bold in Markdown and LaTeX, chosen as ranx does: the first run
//! whose mean, rounded to the printed digits, is the highest (none when every mean rounds to 0).

use crate::compare::{CompareMode, Comparison};
use crate::stats::Correction;
use std::fmt::Write;

/// Output format of [`Comparison::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Plain text: against a baseline, the means with `*` and adjusted p-values; for all
    /// pairs, ranx's text table with Unicode superscript letters.
    Text,
    /// A Markdown (GitHub) table, superscripts as `<sup>ab</sup>`, best mean in `**bold**`.
    Markdown,
    /// A LaTeX (booktabs) table as ranx's `Report.to_latex`: `\textbf{0.731}$^{ab}$` with
    /// `\hphantom` for alignment.
    Latex,
}

impl std::str::FromStr for TableFormat {
    type Err = crate::Error;
    /// `text`, `markdown` (`md`) or `latex` (`tex`).
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(TableFormat::Text),
            "markdown" | "md" => Ok(TableFormat::Markdown),
            "latex" | "tex" => Ok(TableFormat::Latex),
            _ => Err(crate::Error::Invalid(format!(
                "table format must be text, markdown or latex, found {s:?}"
            ))),
        }
    }
}

/// Default number of decimals of the tables.
pub const DIGITS: usize = 4;

const SUPERSCRIPT_LETTERS: [char; 26] = [
    'ᵃ', 'ᵇ', 'ᶜ', 'ᵈ', 'ᵉ', 'ᶠ', 'ᵍ', 'ʰ', 'ⁱ', 'ʲ', 'ᵏ', 'ˡ', 'ᵐ', 'ⁿ', 'ᵒ', 'ᵖ', 'ᑫ', 'ʳ', 'ˢ',
    'ᵗ', 'ᵘ', 'ᵛ', 'ʷ', 'ˣ', 'ʸ', 'ᶻ',
];

impl Comparison {
    /// The plain-text table with 4 decimals: against a baseline, one row per system with the
    /// means, `*` where the adjusted p-value against the first system is `<= alpha`, and the
    /// adjusted p-values; for all pairs, ranx's table with superscript letters.
    pub fn table(&self) -> String {
        self.render(TableFormat::Text, DIGITS)
    }

    /// A Markdown table with 4 decimals (see [`TableFormat::Markdown`]), and a note below.
    pub fn to_markdown(&self) -> String {
        self.render(TableFormat::Markdown, DIGITS)
    }

    /// A LaTeX table with 4 decimals (see [`TableFormat::Latex`]).
    pub fn to_latex(&self) -> String {
        self.render(TableFormat::Latex, DIGITS)
    }

    /// The table in `format` with `digits` decimals (ranx prints 3).
    pub fn render(&self, format: TableFormat, digits: usize) -> String {
        match format {
            TableFormat::Text if self.mode == CompareMode::Baseline => self.baseline_text(digits),
            TableFormat::Text => self.marked_text(digits),
            TableFormat::Markdown => self.markdown(digits),
            TableFormat::Latex => self.latex(digits),
        }
    }

    /// The label of system `i`: a letter, or its 1-based number beyond 26 systems.
    pub fn label(&self, i: usize) -> String {
        if self.systems.len() <= 26 {
            char::from(b'a' + i as u8).to_string()
        } else {
            (i + 1).to_string()
        }
    }

    /// The labels of the systems the cell is significantly better than, joined (commas
    /// between numbers beyond 26 systems).
    fn marks(&self, list: &[usize]) -> String {
        let sep = if self.systems.len() <= 26 { "" } else { "," };
        list.iter()
            .map(|&j| self.label(j))
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn superscript_text(&self, list: &[usize]) -> String {
        if list.is_empty() {
            String::new()
        } else if self.systems.len() <= 26 {
            list.iter().map(|&j| SUPERSCRIPT_LETTERS[j]).collect()
        } else {
            format!("^({})", self.marks(list))
        }
    }

    /// Per measure, the bold system (ranx: the first with the highest rounded mean, if > 0).
    fn best(&self, digits: usize) -> Vec<Option<usize>> {
        (0..self.measures.len())
            .map(|mi| {
                let mut best = None;
                let mut top = 0.0;
                for (s, row) in self.cells.iter().enumerate() {
                    let v: f64 = fmt(row[mi].mean, digits).parse().unwrap_or(f64::NAN);
                    if top < v {
                        top = v;
                        best = Some(s);
                    }
                }
                best
            })
            .collect()
    }

    /// What the marks mean, in words.
    fn family(&self) -> String {
        let k = self.systems.len();
        let fam = match self.mode {
            CompareMode::Baseline => format!(
                "{} comparison{} with the first run",
                k - 1,
                if k == 2 { "" } else { "s" }
            ),
            CompareMode::AllPairs => {
                let n = k * (k - 1) / 2;
                format!("{n} pair{}", if n == 1 { "" } else { "s" })
            }
        };
        let p = match self.correction {
            Correction::None => "p".to_string(),
            c => format!("{} over the {fam} of each measure, adjusted p", c.label()),
        };
        format!(
            "{}, {p} <= {}, over the {} queries every run was evaluated on",
            self.test.label(),
            self.alpha,
            self.queries
        )
    }

    fn excluded_notes(&self, out: &mut String) {
        for (name, &x) in self.systems.iter().zip(&self.excluded) {
            if x > 0 {
                let _ = writeln!(
                    out,
                    "note: {x} quer{} of {name} left out: another run was not evaluated on {}",
                    if x == 1 { "y" } else { "ies" },
                    if x == 1 { "it" } else { "them" }
                );
            }
        }
    }

    fn baseline_text(&self, digits: usize) -> String {
        let w = self
            .systems
            .iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(4)
            .max(6)
            + 2;
        let cw = (digits + 14).max(18);
        let mut out = String::new();
        let _ = write!(out, "{:<w$}", "system");
        for m in &self.measures {
            let _ = write!(out, "{m:>cw$}");
        }
        out.push('\n');
        for (s, row) in self.systems.iter().zip(&self.cells) {
            let _ = write!(out, "{s:<w$}");
            for c in row {
                let cell = match c.p_adjusted {
                    None => format!("{} (base)", fmt(c.mean, digits)),
                    Some(p) => {
                        let star = if c.significant { "*" } else { " " };
                        if p < 0.001 {
                            format!("{}{star} p<.001", fmt(c.mean, digits))
                        } else {
                            format!("{}{star} p={p:.3}", fmt(c.mean, digits))
                        }
                    }
                };
                let _ = write!(out, "{cell:>cw$}");
            }
            out.push('\n');
        }
        let adjusted = match self.correction {
            Correction::None => "p (uncorrected)",
            Correction::Bonferroni => "Bonferroni adjusted p",
            Correction::Holm => "Holm-Bonferroni adjusted p",
        };
        let _ = writeln!(
            out,
            "* : {adjusted} <= {} against the first system ({}, over the {} queries every run was evaluated on)",
            self.alpha,
            self.test.label(),
            self.queries
        );
        self.excluded_notes(&mut out);
        out
    }

    fn marked_text(&self, digits: usize) -> String {
        let mut rows: Vec<Vec<String>> = vec![
            std::iter::once("#".to_string())
                .chain(std::iter::once("system".to_string()))
                .chain(self.measures.iter().cloned())
                .collect(),
        ];
        for (s, (name, row)) in self.systems.iter().zip(&self.cells).enumerate() {
            let mut r = vec![self.label(s), name.clone()];
            for c in row {
                r.push(format!(
                    "{}{}",
                    fmt(c.mean, digits),
                    self.superscript_text(&c.better_than)
                ));
            }
            rows.push(r);
        }
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|j| rows.iter().map(|r| r[j].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, r: &[String]| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        };
        line(&mut out, &rows[0]);
        let dashes: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&mut out, &dashes);
        for r in &rows[1..] {
            line(&mut out, r);
        }
        let _ = writeln!(
            out,
            "superscripts: significantly better than the run of that label ({})",
            self.family()
        );
        self.excluded_notes(&mut out);
        out
    }

    fn markdown(&self, digits: usize) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let best = self.best(digits);
        let mut out = String::from("| # | system |");
        for m in &self.measures {
            let _ = write!(out, " {} |", esc(m));
        }
        out.push_str("\n|:-:|:--|");
        out.push_str(&"--:|".repeat(self.measures.len()));
        out.push('\n');
        for (s, (name, row)) in self.systems.iter().zip(&self.cells).enumerate() {
            let _ = write!(out, "| {} | {} |", self.label(s), esc(name));
            for (mi, c) in row.iter().enumerate() {
                let v = fmt(c.mean, digits);
                let v = if best[mi] == Some(s) {
                    format!("**{v}**")
                } else {
                    v
                };
                let sup = if c.better_than.is_empty() {
                    String::new()
                } else {
                    format!("<sup>{}</sup>", self.marks(&c.better_than))
                };
                let _ = write!(out, " {v}{sup} |");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\nSuperscripts: significantly better than the run of that label ({}). Bold: the best mean of each measure.",
            self.family()
        );
        for (name, &x) in self.systems.iter().zip(&self.excluded) {
            if x > 0 {
                let _ = writeln!(
                    out,
                    "{x} quer{} of {} left out: another run was not evaluated on {}.",
                    if x == 1 { "y" } else { "ies" },
                    esc(name),
                    if x == 1 { "it" } else { "them" }
                );
            }
        }
        out
    }

    fn latex(&self, digits: usize) -> String {
        let best = self.best(digits);
        let mut out = String::new();
        out.push_str("% Add in preamble: \\usepackage{graphicx} \\usepackage{booktabs}\n");
        out.push_str("% To change the table size, act on the resizebox argument `0.8`.\n");
        out.push_str("\\begin{table*}[ht]\n\\centering\n\\caption{\nOverall effectiveness of the models.\nThe best results are highlighted in boldface.\n");
        let _ = writeln!(
            out,
            "Superscripts denote significant differences in {} with $p \\le {}$.\n}}",
            latex_escape(&self.family_latex()),
            self.alpha
        );
        out.push_str("\\resizebox{0.8\\textwidth}{!}{\n");
        let _ = writeln!(
            out,
            "\\begin{{tabular}}{{c|l{}}}",
            "|c".repeat(self.measures.len())
        );
        out.push_str("\\toprule\n\\textbf{\\#}\n& \\textbf{Model}");
        for m in &self.measures {
            let _ = write!(out, "\n& \\textbf{{{}}}", latex_escape(m));
        }
        out.push_str(" \\\\ \n\\midrule\n");
        for (s, (name, row)) in self.systems.iter().zip(&self.cells).enumerate() {
            let _ = write!(out, "{} &\n{} &\n", self.label(s), latex_escape(name));
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(mi, c)| {
                    let v = fmt(c.mean, digits);
                    let v = if best[mi] == Some(s) {
                        format!("\\textbf{{{v}}}")
                    } else {
                        v
                    };
                    let phantoms: Vec<usize> = (0..self.systems.len())
                        .filter(|&j| j != s && !c.better_than.contains(&j))
                        .collect();
                    let sup = if c.better_than.is_empty() {
                        String::new()
                    } else {
                        format!("$^{{{}}}$", self.marks(&c.better_than))
                    };
                    let ph = if phantoms.is_empty() {
                        String::new()
                    } else {
                        format!("$^{{{}}}$", self.marks(&phantoms))
                    };
                    format!("{v}{sup}\\hphantom{{{ph}}}")
                })
                .collect();
            let _ = writeln!(out, "{}\\\\", cells.join(" &\n"));
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n}\n\\label{tab:results}\n\\end{table*}\n");
        out
    }

    /// The test and its family, for the LaTeX caption (without alpha).
    fn family_latex(&self) -> String {
        let k = self.systems.len();
        let pairs = match self.mode {
            CompareMode::Baseline => format!("against the first run, {} tests", k - 1),
            CompareMode::AllPairs => format!("between all pairs, {} tests", k * (k - 1) / 2),
        };
        let corr = match self.correction {
            Correction::None => String::new(),
            c => format!(", {}", c.label()),
        };
        format!(
            "a {} ({pairs} per measure, {} queries{corr})",
            self.test.label(),
            self.queries
        )
    }
}

fn fmt(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

/// Escape LaTeX's special characters in text.
fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}
