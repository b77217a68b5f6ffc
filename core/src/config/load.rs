//! Parsing, evaluation and checking behind [`super::load`].
//!
//! The work is split by step so each can be read alone: [`blocks`] finds the top-level blocks
//! and checks names, labels and duplicates; [`vars`] gives variables their values and
//! evaluates locals in dependency order; [`model`] turns each block into its model type;
//! [`eval`] checks and evaluates expressions, with the functions of [`funcs`]. Every step
//! reports into one list of diagnostics and carries on, so one run shows every mistake.

use super::{Config, Diagnostic, Diagnostics, LoadOptions, VarArg};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod blocks;
mod eval;
mod funcs;
mod model;
mod suggest;

pub(crate) use suggest::closest;
mod vars;

#[cfg(test)]
mod tests;

/// One file's name (as the user would write it) and text.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// The name diagnostics show.
    pub(super) name: String,
    /// The whole text.
    pub(super) text: Arc<str>,
}

impl Source {
    pub(super) fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// An error at `span` of this file.
    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(self.name.clone(), self.text.clone(), span, message, label)
    }

    /// `file:line:column` of a byte offset, for "already declared at …" messages.
    pub(super) fn origin(&self, offset: usize) -> super::Origin {
        let d = self.error(offset..offset, "", "");
        super::Origin {
            file: d.file,
            line: d.line,
            column: d.column,
        }
    }
}

pub(super) fn load(options: &LoadOptions) -> Result<Config, Diagnostics> {
    let paths = fleet_files(options)?;
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for path in &paths {
        let name = path.display().to_string();
        match fs_err::read_to_string(path) {
            Ok(text) => sources.push((name, text)),
            Err(err) => diags.push(Source::new(name, "").error(0..0, err.to_string(), "")),
        }
    }
    let result = load_sources(&sources, &options.var_args, &options.env);
    match result {
        Ok(mut config) if diags.is_empty() => {
            config.files = paths;
            Ok(config)
        }
        Ok(_) => Err(Diagnostics(diags)),
        Err(Diagnostics(more)) => {
            diags.extend(more);
            Err(Diagnostics(diags))
        }
    }
}

/// The fleet files to read, named as the user would write them: `dir` joined with the file
/// name, or the bare name when `dir` is `.`.
fn fleet_files(options: &LoadOptions) -> Result<Vec<PathBuf>, Diagnostics> {
    let dir = options.dir.as_path();
    let shown = |name: &Path| -> PathBuf {
        if dir.as_os_str().is_empty() || dir == Path::new(".") {
            name.to_path_buf()
        } else {
            dir.join(name)
        }
    };
    if !options.files.is_empty() {
        return Ok(options.files.iter().map(|f| shown(f)).collect());
    }
    let dir_name = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let no_files = |message: String| {
        Diagnostics(vec![
            Source::new(dir_name.display().to_string(), "")
                .error(0..0, message, "")
                .with_help(
                    "run in the directory holding your fleet files, or pass -C DIR or -f FILE",
                ),
        ])
    };
    let entries = fs_err::read_dir(dir_name).map_err(|err| no_files(err.to_string()))?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| PathBuf::from(e.file_name()))
        .filter(|name| name.extension().is_some_and(|ext| ext == "hcl"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(no_files(format!(
            "no fleet files (*.hcl) in {}",
            dir_name.display()
        )));
    }
    Ok(names.iter().map(|n| shown(n)).collect())
}

pub(super) fn load_sources(
    sources: &[(String, String)],
    var_args: &[VarArg],
    env: &[(String, String)],
) -> Result<Config, Diagnostics> {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    for (name, text) in sources {
        let src = Source::new(name.clone(), text.as_str());
        match hcl::edit::parser::parse_body(text) {
            Ok(body) => files.push((src, body)),
            Err(err) => diags.push(parse_error(&src, &err)),
        }
    }
    let config = blocks::build(&files, var_args, env, &mut diags);
    if diags.is_empty() {
        return Ok(config);
    }
    // Fleet files in the order given, then variable sources in the order first reported.
    let mut order: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
    for d in &diags {
        if !order.contains(&d.file) {
            order.push(d.file.clone());
        }
    }
    let rank = |file: &str| order.iter().position(|f| f == file).unwrap_or(usize::MAX);
    diags.sort_by_key(|d| (rank(&d.file), d.span.start));
    Err(Diagnostics(diags))
}

/// A syntax error as a diagnostic at its location.
pub(super) fn parse_error(src: &Source, err: &hcl::edit::parser::Error) -> Diagnostic {
    let offset = err.location().offset().min(src.text.len());
    let rest = src.text.get(offset..).unwrap_or("");
    let message = err.message().trim();
    // hcl-edit refuses a repeated attribute as a syntax error; say what it is.
    if message.contains("redefined attribute") {
        let key: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        return src
            .error(
                offset..offset + key.len(),
                format!("attribute `{key}` is set twice"),
                "already set earlier in this block",
            )
            .with_help("remove one of them");
    }
    let end = rest
        .chars()
        .next()
        .map_or(offset, |c| offset + c.len_utf8());
    // hcl-edit's messages read "invalid expression; expected …"; they make a good label.
    let label = if message.is_empty() {
        "syntax error here"
    } else {
        message
    };
    src.error(offset..end, "syntax error", label).with_help(
        "fleet files are HCL: `name = value` attributes and `kind \"name\" { … }` blocks",
    )
}
