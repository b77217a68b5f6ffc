//! Where output goes and how errors look.
//!
//! Data goes to stdout; diagnostics to stderr. Fleet-file errors ([`Diagnostics`]) render as
//! miette reports pointing at the source; everything else as `error: …` with `Caused by:`
//! lines, as cargo and uv do.

use flotilla_core::config::Diagnostics;
use std::io::IsTerminal;

/// Whether to colour output: a terminal on stdout, no `--no-color`, no `NO_COLOR`.
pub(crate) fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

/// Renders fleet-file diagnostics to stderr, with source snippets.
pub(crate) fn report_diagnostics(diags: &Diagnostics, color: bool) {
    let handler = if color {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
    } else {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
    };
    let mut out = String::new();
    for d in &diags.0 {
        // `file:line:col` first so the position is greppable and clickable in editors.
        out.push_str(&format!("error: {}:{}:{}: {}\n", d.file, d.line, d.column, d.message));
        let _ = handler.render_report(&mut out, d);
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
