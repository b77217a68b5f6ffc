//! `flotilla fmt`: rewrite fleet files in canonical format, or with `--check` report the ones
//! that are not (for CI), with a unified diff of what would change.
//!
//! The formatting itself is `flotilla_core::config::format`; this module only finds the files,
//! writes them back atomically (temp file, then rename, so an interrupted run never leaves a
//! half-written fleet file) and reports. A file that does not parse is reported with its
//! position and the others are still processed; the exit code is then 1.

use crate::args::FmtArgs;
use anyhow::Context as _;
use flotilla_core::config::format::format_source;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) fn run(args: &FmtArgs) -> anyhow::Result<ExitCode> {
    let files = files(args)?;
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    let mut changed = 0usize;
    for path in &files {
        let name = display_name(path);
        let text = fs_err::read_to_string(path)?;
        let formatted = match format_source(&text) {
            Ok(formatted) => formatted,
            Err(err) => {
                failed = true;
                let separator = if err.position.is_some() { ":" } else { ": " };
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("error: {name}{separator}{err}");
                }
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        if args.check {
            let diff = similar::TextDiff::from_lines(&text, &formatted);
            let diff = diff
                .unified_diff()
                .context_radius(3)
                .header(&name, &name)
                .to_string();
            write_out(&mut stdout, &format!("{name}\n{diff}"))?;
        } else {
            write_atomically(path, &formatted)?;
            write_out(&mut stdout, &format!("{name}\n"))?;
        }
    }
    if args.check && changed > 0 {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "error: {changed} file{} not in canonical format; run `flotilla fmt` to fix",
                if changed == 1 { " is" } else { "s are" }
            );
        }
        failed = true;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The files to format: `-f` files relative to `-C`, or every `*.hcl` of `-C`, sorted.
fn files(args: &FmtArgs) -> anyhow::Result<Vec<PathBuf>> {
    if !args.files.is_empty() {
        return Ok(args.files.iter().map(|f| args.dir.join(f)).collect());
    }
    let mut files = Vec::new();
    for entry in fs_err::read_dir(&args.dir)? {
        let path = entry
            .with_context(|| format!("failed to read `{}`", args.dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "hcl") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The path as the user would type it: without a leading `./`.
fn display_name(path: &Path) -> String {
    let path = path.strip_prefix(".").unwrap_or(path);
    path.display().to_string()
}

/// Data to stdout; a closed pipe (`flotilla fmt --check | head`) is not an error.
fn write_out(out: &mut impl std::io::Write, text: &str) -> anyhow::Result<()> {
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("failed to write to stdout"),
    }
}

/// Replaces `path` with `text` through a temporary file in the same directory and a rename,
/// keeping the file's permissions.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "fleet.hcl".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(
        ".{file_name}.flotilla-fmt-{}.tmp",
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut file = fs_err::File::create(&temp)?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("failed to write `{}`", temp.display()))?;
        file.sync_all()
            .with_context(|| format!("failed to write `{}`", temp.display()))?;
        let permissions = fs_err::metadata(path)?.permissions();
        fs_err::set_permissions(&temp, permissions)?;
        fs_err::rename(&temp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    result
}
