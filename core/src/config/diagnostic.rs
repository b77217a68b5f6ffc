//! Source-pointing errors in fleet files.
//!
//! A [`Diagnostic`] carries the file's text so a renderer (miette, in the binary) can show the
//! offending line with a caret; its plain `Display` is `file:line:col: message` plus the hint,
//! which is what tests assert and what non-terminal output shows.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// One error in a fleet file (or a variable file), at a place.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// What is wrong, lowercase: ``unknown attribute `gpus` in `resources` ``.
    pub message: String,
    /// The file as named on the command line or found in the directory; `--var` for a value
    /// given on the command line.
    pub file: String,
    /// 1-based line of the span's start.
    pub line: usize,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
    /// Byte range in the file's text.
    pub span: Range<usize>,
    /// What was expected, shown under the caret: "expected one of `cpu`, `memory`, …".
    pub label: String,
    /// What to do, where one helps: "did you mean `gpu`?".
    pub help: Option<String>,
    /// The whole text of the file, for rendering.
    pub source_text: Arc<str>,
}

impl Diagnostic {
    /// A diagnostic at `span` of `source_text`; line and column are computed from the span.
    pub fn new(
        file: impl Into<String>,
        source_text: Arc<str>,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        let start = span.start.min(source_text.len());
        let before = &source_text[..floor_char_boundary(&source_text, start)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Diagnostic {
            message: message.into(),
            file: file.into(),
            line,
            column,
            span,
            label: label.into(),
            help: None,
            source_text,
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    /// `main.hcl:12:5: unknown attribute `gpus` in `resources` (expected one of …); help: did
    /// you mean `gpu`?` — one line, for logs and tests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.label.is_empty() {
            write!(f, " ({})", self.label)?;
        }
        if let Some(help) = &self.help {
            write!(f, "; help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let len = self.span.end.saturating_sub(self.span.start);
        // An empty label would still draw an empty note under the caret.
        let label = (!self.label.is_empty()).then(|| self.label.clone());
        Some(Box::new(std::iter::once(miette::LabeledSpan::new(
            label,
            self.span.start,
            len,
        ))))
    }
}

impl miette::SourceCode for Diagnostic {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner =
            self.source_text
                .as_ref()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Every diagnostic found, in file and position order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
