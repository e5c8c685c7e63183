//! Diagnostics: errors and warnings about a pipeline file that point at the
//! exact place in the source.
//!
//! Every problem Tailor finds in a configuration becomes a [`Diagnostic`]: a
//! severity, a one-line message, an optional [`Span`] in the file, a label for
//! the caret, and `help` lines (fixes, "did you mean"). Checks collect all of
//! them before reporting, so the user sees every mistake at once. Rendering
//! follows the rustc/just style: `file:line:col`, the source line, and a caret
//! under the offending text. Output is plain text so it can be pinned by
//! golden files.

use std::fmt::Write as _;

/// A region of a source file; `line` is 1-based, `col` is 1-based and counts
/// characters, `len` counts characters (at least 1 when rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Length in characters.
    pub len: usize,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Stops validation.
    Error,
    /// Reported, but the pipeline still runs.
    Warning,
}

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The one-line summary.
    pub message: String,
    /// Where in the file, if known.
    pub span: Option<Span>,
    /// Short text printed after the caret.
    pub label: String,
    /// Extra lines: how to fix it, near-miss suggestions.
    pub help: Vec<String>,
}

impl Diagnostic {
    /// A new error with a message and no location.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, message: message.into(), span: None, label: String::new(), help: Vec::new() }
    }

    /// A new warning with a message and no location.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message) }
    }

    /// Attach a location.
    pub fn at(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    /// Attach the caret label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Add a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render with the source snippet and a caret, e.g.
    ///
    /// ```text
    /// error: unknown key `learnig_rate`
    ///   --> pipeline.yaml:12:5
    ///    |
    /// 12 |     learnig_rate: 2e-4
    ///    |     ^^^^^^^^^^^^ not allowed here
    ///    |
    ///    = help: did you mean `learning_rate`?
    /// ```
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{word}: {}", self.message);
        let Some(span) = self.span else {
            let _ = writeln!(out, "  --> {file}");
            for h in &self.help {
                let _ = writeln!(out, "  = help: {h}");
            }
            return out;
        };
        let num = span.line.to_string();
        let pad = " ".repeat(num.len());
        let _ = writeln!(out, "{pad}--> {file}:{}:{}", span.line, span.col);
        let _ = writeln!(out, "{pad} |");
        let text = source.lines().nth(span.line.saturating_sub(1)).unwrap_or("");
        let _ = writeln!(out, "{num} | {}", text.trim_end());
        // Indent the caret by display columns of the characters before it;
        // tabs keep their width so the caret lines up.
        let lead: String = text.chars().take(span.col.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        let avail = text.chars().count().saturating_sub(span.col.saturating_sub(1));
        let len = span.len.min(avail.max(1)).max(1);
        let caret = "^".repeat(len);
        let sep = if self.label.is_empty() { "" } else { " " };
        let _ = writeln!(out, "{pad} | {lead}{caret}{sep}{}", self.label);
        if !self.help.is_empty() {
            let _ = writeln!(out, "{pad} |");
            for h in &self.help {
                let _ = writeln!(out, "{pad} = help: {h}");
            }
        }
        out
    }
}

/// Render a list of diagnostics, sorted by position, followed by a count line.
pub fn render_all(diags: &[Diagnostic], file: &str, source: &str) -> String {
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| (d.span.is_none(), d.span, d.severity));
    let mut out = String::new();
    for d in &sorted {
        out.push_str(&d.render(file, source));
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        let _ = writeln!(out, "{file}: {} ({}); nothing was run", plural(errors, "error"), plural(warnings, "warning"));
    } else if warnings > 0 {
        let _ = writeln!(out, "{file}: {}", plural(warnings, "warning"));
    }
    out
}

/// The closest candidate to `word` by Jaro-Winkler/Levenshtein, if close enough
/// to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let lev = strsim::levenshtein(word, c);
        let jw = strsim::jaro_winkler(word, c);
        let close = lev <= 2.max(word.len() / 4) || jw >= 0.88;
        if close && best.is_none_or(|(_, s)| jw > s) {
            best = Some((c, jw));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let src = "a: 1\n  lernig_rate: 2\n";
        let d = Diagnostic::error("unknown key `lernig_rate`")
            .at(Some(Span { line: 2, col: 3, len: 11 }))
            .label("not allowed here")
            .help("did you mean `learning_rate`?");
        let r = d.render("p.yaml", src);
        assert_eq!(
            r,
            "error: unknown key `lernig_rate`\n --> p.yaml:2:3\n  |\n2 |   lernig_rate: 2\n  |   ^^^^^^^^^^^ not allowed here\n  |\n  = help: did you mean `learning_rate`?\n"
        );
    }

    #[test]
    fn suggestions() {
        let cands = ["learning_rate", "epochs", "seed"];
        for (word, want) in [("learnig_rate", Some("learning_rate")), ("epoch", Some("epochs")), ("sed", Some("seed")), ("batch", None)] {
            assert_eq!(did_you_mean(word, cands), want, "{word}");
        }
    }
}
