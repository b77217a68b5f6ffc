//! Where output goes and how errors look.
//!
//! Data goes to stdout; diagnostics to stderr. Fleet-file errors ([`Diagnostics`]) render as
//! miette reports pointing at the source; everything else as `error: …` with `Caused by:`
//! lines, as cargo and uv do.

use flotilla_core::config::{Diagnostic, Diagnostics};
use std::io::IsTerminal;

/// Whether to colour output: a terminal on stdout, no `--no-color`, no `NO_COLOR`.
pub(crate) fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

/// Renders fleet-file diagnostics to stderr, with source snippets: the message, then the
/// file, line and column (`╭─[main.hcl:12:5]`) over the lines that hold the error, the label
/// under the offending text, and the hint. Colour only when stderr is a terminal too.
pub(crate) fn report_diagnostics(diags: &Diagnostics, color: bool) {
    let theme = if color && std::io::stderr().is_terminal() {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme);
    let mut out = String::new();
    for d in &diags.0 {
        let _ = handler.render_report(&mut out, &Report(d));
        out.push('\n');
    }
    let n = diags.0.len();
    out.push_str(&format!(
        "error: {n} error{} in the fleet files\n",
        if n == 1 { "" } else { "s" }
    ));
    #[allow(clippy::print_stderr)]
    {
        eprint!("{out}");
    }
}

/// A [`Diagnostic`] as miette shows it. The diagnostic's own `Display` is the one-line
/// `file:line:col: message (label); help: …` for logs; here the position, label and help have
/// their own places in the report, so the headline is the message alone.
struct Report<'a>(&'a Diagnostic);

impl std::fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        miette::Diagnostic::help(self.0)
    }

    // A diagnostic without text (an unreadable file, an empty directory) has nothing to
    // point at; its message names the file.
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.0.source_text.is_empty() {
            None
        } else {
            miette::Diagnostic::source_code(self.0)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.0.source_text.is_empty() {
            None
        } else {
            miette::Diagnostic::labels(self.0)
        }
    }
}

/// Renders any other error: `error: …` then each cause.
pub(crate) fn report(err: &anyhow::Error) {
    if let Some(diags) = err.downcast_ref::<Diagnostics>() {
        report_diagnostics(diags, use_color(false));
        return;
    }
    let mut out = format!("error: {err}\n");
    for cause in err.chain().skip(1) {
        out.push_str(&format!("  Caused by: {cause}\n"));
    }
    #[allow(clippy::print_stderr)]
    {
        eprint!("{out}");
    }
}

/// Writes data to stdout; a closed pipe (`flotilla plan | head`) is not an error.
pub(crate) fn stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A message for the person at the terminal (stderr), not data.
pub(crate) fn info(text: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{text}");
    }
}
