//! Canonical formatting of fleet files (`flotilla fmt`), as `terraform fmt` does it.
//!
//! Why a formatter of its own: hcl-rs can print a body, but it drops comments, and fleet files
//! are documents a team reviews, so comments must survive. hcl-edit keeps comments but has no
//! canonical printer. So this module works on lines, which is how people read the files and how
//! `terraform fmt` works too: a small scanner tracks nesting (brackets outside strings,
//! comments and heredocs) and each line is re-indented by its depth, attributes get one space
//! around `=`, the `=` of consecutive one-line attributes are aligned, and so are trailing
//! comments of consecutive lines.
//!
//! The rules, in full:
//!
//! - two spaces of indentation per level of nesting (blocks, objects, lists, parentheses); a
//!   line that starts by closing brackets is indented like the line that opened them;
//! - `key=value` becomes `key = value`; in a run of consecutive one-line attributes of the same
//!   block or object, the `=` are aligned (a blank line, a comment line, a nested block or a
//!   multi-line attribute ends the run);
//! - trailing comments of consecutive lines are aligned one space after the longest code;
//! - block headers get single spaces: `fleet "a"{` becomes `fleet "a" {`;
//! - trailing whitespace is removed; at most one blank line in a row; no blank line right after
//!   an opening bracket or right before a closing one, nor at the start or end of the file;
//! - the file ends with exactly one newline;
//! - comments are kept verbatim (only re-indented); the bodies of heredocs, the continuation
//!   lines of block comments and the contents of strings are never touched.
//!
//! Safety net: the input must parse, the output must parse, and both must be the same
//! [`hcl::Body`]; otherwise formatting is refused rather than risking a change of meaning.

use std::collections::VecDeque;
use std::fmt;

/// Why a text could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// 1-based line and column of the problem, when it has a position.
    pub position: Option<(usize, usize)>,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{line}:{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FormatError {}

/// The canonical form of one fleet file; comments are kept. Idempotent:
/// `format(&format(s)?)? == format(s)?`. Refuses text that does not parse; the error reads
/// `LINE:COLUMN: message`.
pub fn format(text: &str) -> Result<String, String> {
    format_source(text).map_err(|e| e.to_string())
}

/// Like [`format`], with a structured error so that callers can prefix the file name
/// (`main.hcl:3:7: …`).
pub fn format_source(text: &str) -> Result<String, FormatError> {
    let before = parse(text)?;
    let out = render(&scan(text));
    let after = parse(&out).map_err(|e| FormatError {
        position: None,
        message: format!(
            "the formatter produced text that does not parse ({e}); this is a bug in flotilla, \
             the file was left unchanged"
        ),
    })?;
    if before != after {
        return Err(FormatError {
            position: None,
            message: "formatting would change the meaning of the file; this is a bug in \
                      flotilla, the file was left unchanged"
                .to_string(),
        });
    }
    Ok(out)
}

fn parse(text: &str) -> Result<hcl::Body, FormatError> {
    hcl::edit::parser::parse_body(text)
        .map(hcl::Body::from)
        .map_err(|e| FormatError {
            position: Some((e.location().line(), e.location().column())),
            message: format!("invalid HCL: {}", e.message()),
        })
}

/// One physical line, classified.
#[derive(Debug)]
enum Line {
    /// Only whitespace, outside heredocs and strings.
    Blank,
    /// Inside a heredoc or a multi-line string: emitted exactly as read.
    Verbatim(String),
    /// The continuation of a block comment: emitted without trailing whitespace.
    CommentContinuation(String),
    /// Code, a comment, or both.
    Code(CodeLine),
}

#[derive(Debug)]
struct CodeLine {
    /// Nesting depth (in levels of two spaces).
    indent: usize,
    /// The code, trimmed, without its trailing comment; may be empty (a comment line).
    code: String,
    /// A trailing (or whole-line) comment, verbatim but trimmed at the end.
    comment: Option<String>,
    /// `key = value` split, when the line is an attribute (or object element).
    attribute: Option<(String, String)>,
    /// Everything the line opens it also closes, and nothing continues onto the next line.
    single_line: bool,
    /// The line starts by closing a bracket.
    leading_closer: bool,
}

impl CodeLine {
    /// The code ends with an opening bracket (a blank line may not follow).
    fn ends_open(&self) -> bool {
        self.code.ends_with(['{', '[', '('])
    }

    /// Aligned one-line attribute.
    fn aligned_attribute(&self) -> Option<&(String, String)> {
        self.attribute.as_ref().filter(|_| self.single_line)
    }
}

/// What is open at some point of the text.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// `{`, `[` or `(` in code, with the indentation of the line that opened it.
    Bracket { open_indent: usize },
    /// A quoted string.
    Str,
    /// `${ … }` or `%{ … }` inside a quoted string.
    Interp,
}

#[derive(Debug, Clone)]
struct Heredoc {
    marker: String,
}

#[derive(Default)]
struct Scanner {
    stack: Vec<Frame>,
    /// Heredocs opened on the current line, whose bodies start on the next.
    pending: VecDeque<Heredoc>,
    /// The heredoc whose body is being read.
    heredoc: Option<Heredoc>,
    in_block_comment: bool,
}

/// What scanning the code of one line found.
#[derive(Default)]
struct LineScan {
    /// Byte offset where a comment that runs to the end of the line starts.
    comment_start: Option<usize>,
    /// The line ends inside something that continues (heredoc, block comment, string).
    continues: bool,
    /// The lowest nesting depth reached while scanning.
    min_depth: usize,
}

impl Scanner {
    fn in_string(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Str))
    }

    /// Indentation for a line that starts at the current nesting.
    fn current_indent(&self) -> usize {
        self.stack
            .iter()
            .rev()
            .find_map(|f| match f {
                Frame::Bracket { open_indent } => Some(open_indent + 1),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Scans `line[from..]`, updating the nesting. Opened brackets record `indent`.
    fn scan(&mut self, line: &str, from: usize, indent: usize) -> LineScan {
        let bytes = line.as_bytes();
        let mut result = LineScan {
            min_depth: self.stack.len(),
            ..LineScan::default()
        };
        let mut i = from;
        while i < bytes.len() {
            let c = bytes[i];
            let next = bytes.get(i + 1).copied();
            if self.in_block_comment {
                match find(bytes, i, b"*/") {
                    Some(end) => {
                        self.in_block_comment = false;
                        i = end + 2;
                    }
                    None => return result,
                }
                continue;
            }
            match self.stack.last() {
                Some(Frame::Str) => match c {
                    b'\\' => i += 2,
                    b'"' => {
                        self.stack.pop();
                        i += 1;
                    }
                    b'$' | b'%' if next == Some(c) && bytes.get(i + 2) == Some(&b'{') => i += 3,
                    b'$' | b'%' if next == Some(b'{') => {
                        self.stack.push(Frame::Interp);
                        i += 2;
                    }
                    _ => i += 1,
                },
                _ => match c {
                    b'"' => {
                        self.stack.push(Frame::Str);
                        i += 1;
                    }
                    b'#' => {
                        result.comment_start.get_or_insert(i);
                        return result;
                    }
                    b'/' if next == Some(b'/') => {
                        result.comment_start.get_or_insert(i);
                        return result;
                    }
                    b'/' if next == Some(b'*') => match find(bytes, i + 2, b"*/") {
                        Some(end) => {
                            // An inline comment is part of the code unless only whitespace
                            // follows it.
                            if line[end + 2..].trim().is_empty() {
                                result.comment_start.get_or_insert(i);
                            }
                            i = end + 2;
                        }
                        None => {
                            result.comment_start.get_or_insert(i);
                            self.in_block_comment = true;
                            result.continues = true;
                            return result;
                        }
                    },
                    b'<' if next == Some(b'<') => {
                        let mut j = i + 2;
                        if bytes.get(j) == Some(&b'-') {
                            j += 1;
                        }
                        let start = j;
                        while j < bytes.len() && is_ident_byte(bytes[j]) {
                            j += 1;
                        }
                        if j > start {
                            self.pending.push_back(Heredoc {
                                marker: line[start..j].to_string(),
                            });
                            result.continues = true;
                        }
                        i = j;
                    }
                    b'{' | b'[' | b'(' => {
                        self.stack.push(Frame::Bracket {
                            open_indent: indent,
                        });
                        i += 1;
                    }
                    b'}' | b']' | b')' => {
                        // `}` of an interpolation returns to its string; a stray closer (the
                        // text parsed, so there is none) is ignored.
                        self.stack.pop();
                        result.min_depth = result.min_depth.min(self.stack.len());
                        i += 1;
                    }
                    _ => i += 1,
                },
            }
        }
        if self.in_string() {
            result.continues = true;
        }
        result
    }

    /// Reads one line (without its `\n`) and classifies it.
    fn line(&mut self, raw: &str) -> Line {
        if let Some(heredoc) = &self.heredoc {
            let trimmed = raw.trim_end_matches('\r').trim_start();
            if trimmed == heredoc.marker {
                self.heredoc = self.pending.pop_front();
            }
            return Line::Verbatim(raw.to_string());
        }
        let line = if self.in_block_comment {
            let indent = self.current_indent();
            self.scan(raw, 0, indent);
            Line::CommentContinuation(raw.trim_end().to_string())
        } else if self.in_string() {
            let indent = self.current_indent();
            self.scan(raw, 0, indent);
            Line::Verbatim(raw.to_string())
        } else if raw.trim().is_empty() {
            Line::Blank
        } else {
            Line::Code(self.code_line(raw))
        };
        if self.heredoc.is_none() {
            self.heredoc = self.pending.pop_front();
        }
        line
    }

    fn code_line(&mut self, raw: &str) -> CodeLine {
        let bytes = raw.as_bytes();
        let depth_before = self.stack.len();
        // Leading closers: the line is indented like the line that opened the last of them.
        let mut i = 0;
        let mut indent = None;
        while i < bytes.len() {
            match bytes[i] {
                b' ' | b'\t' | b'\r' => i += 1,
                b'}' | b']' | b')' => {
                    if let Some(Frame::Bracket { open_indent }) = self.stack.last().copied() {
                        self.stack.pop();
                        indent = Some(open_indent);
                    }
                    i += 1;
                }
                _ => break,
            }
        }
        let leading_closer = indent.is_some();
        let indent = indent.unwrap_or_else(|| self.current_indent());
        let scan = self.scan(raw, i, indent);
        let code_end = scan.comment_start.unwrap_or(raw.len());
        let code = raw[..code_end].trim().to_string();
        let comment = scan
            .comment_start
            .map(|start| raw[start..].trim_end().to_string());
        let single_line = !leading_closer
            && !scan.continues
            && self.stack.len() == depth_before
            && scan.min_depth == depth_before;
        let attribute = split_attribute(&code);
        let code = match &attribute {
            Some(_) => code,
            None => normalize_header(&code).unwrap_or(code),
        };
        CodeLine {
            indent,
            code,
            comment,
            attribute,
            single_line,
            leading_closer,
        }
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Length of the identifier at the start of `s` (0 if none).
fn ident_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes.iter().take_while(|b| is_ident_byte(**b)).count()
}

/// Length of the simple quoted string (no interpolation) at the start of `s` (0 if none).
fn quoted_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return 0;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'$' | b'%' if bytes.get(i + 1) == Some(&b'{') => return 0,
            _ => i += 1,
        }
    }
    0
}

/// `key = value` (or `"key" = value`) split into key and value.
fn split_attribute(code: &str) -> Option<(String, String)> {
    let key_len = match ident_len(code) {
        0 => quoted_len(code),
        n => n,
    };
    if key_len == 0 {
        return None;
    }
    let rest = code[key_len..].trim_start();
    let value = rest.strip_prefix('=')?;
    if value.starts_with(['=', '>']) {
        return None;
    }
    let value = value.trim_start();
    if value.is_empty() {
        return None;
    }
    Some((code[..key_len].to_string(), value.to_string()))
}

/// A block header (`type "label" label {…`) with single spaces between its parts.
fn normalize_header(code: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = code;
    loop {
        let len = match ident_len(rest) {
            0 => quoted_len(rest),
            n => n,
        };
        if len == 0 {
            break;
        }
        parts.push(&rest[..len]);
        rest = rest[len..].trim_start();
    }
    let body = rest.strip_prefix('{')?;
    if parts.is_empty() {
        return None;
    }
    let body = body.trim();
    let mut out = parts.join(" ");
    if body == "}" {
        out.push_str(" {}");
        return Some(out);
    }
    out.push_str(" {");
    if !body.is_empty() {
        out.push(' ');
        // A one-line block with one attribute: `resources { gpu = "L4" }`.
        match body
            .strip_suffix('}')
            .and_then(|inner| split_attribute(inner.trim_end()))
        {
            Some((key, value)) => out.push_str(&format!("{key} = {value} }}")),
            None => out.push_str(body),
        }
    }
    Some(out)
}

fn scan(text: &str) -> Vec<Line> {
    let mut scanner = Scanner::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut raw_lines: Vec<&str> = text.split('\n').collect();
    if raw_lines.last() == Some(&"") {
        raw_lines.pop();
    }
    raw_lines.into_iter().map(|raw| scanner.line(raw)).collect()
}

/// Blank-line rules, then alignment, then text.
fn render(lines: &[Line]) -> String {
    // Which lines survive: blank lines only between two non-blank lines, one at most, and not
    // after an opening bracket or before a closing one.
    let mut kept: Vec<&Line> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if let Line::Blank = line {
            let after_open = match kept.last() {
                None | Some(Line::Blank) => true,
                Some(Line::Code(c)) => c.ends_open(),
                Some(_) => false,
            };
            let next = lines[i + 1..].iter().find(|l| !matches!(l, Line::Blank));
            let before_close = match next {
                None => true,
                Some(Line::Code(c)) => c.leading_closer,
                Some(_) => false,
            };
            if after_open || before_close {
                continue;
            }
        }
        kept.push(line);
    }

    // Code with indentation and aligned `=`.
    let mut code: Vec<Option<String>> = vec![None; kept.len()];
    let mut i = 0;
    while i < kept.len() {
        let Line::Code(line) = kept[i] else {
            i += 1;
            continue;
        };
        if line.aligned_attribute().is_some() {
            let mut end = i;
            let mut width = 0;
            while let Some(Line::Code(l)) = kept.get(end) {
                let Some((key, _)) = l.aligned_attribute() else {
                    break;
                };
                width = width.max(key.chars().count());
                end += 1;
            }
            for (slot, line) in code[i..end].iter_mut().zip(&kept[i..end]) {
                if let Line::Code(l) = line
                    && let Some((key, value)) = l.aligned_attribute()
                {
                    let pad = width - key.chars().count();
                    *slot = Some(format!(
                        "{}{key}{} = {value}",
                        "  ".repeat(l.indent),
                        " ".repeat(pad)
                    ));
                }
            }
            i = end;
            continue;
        }
        let body = match &line.attribute {
            Some((key, value)) => format!("{key} = {value}"),
            None => line.code.clone(),
        };
        code[i] = Some(if body.is_empty() {
            String::new()
        } else {
            format!("{}{body}", "  ".repeat(line.indent))
        });
        i += 1;
    }

    // Trailing comments of consecutive code lines, aligned.
    let mut comment_column: Vec<usize> = vec![0; kept.len()];
    let has_trailing = |j: usize| -> bool {
        matches!(kept[j], Line::Code(l) if l.comment.is_some() && !l.code.is_empty())
    };
    let mut j = 0;
    while j < kept.len() {
        if !has_trailing(j) {
            j += 1;
            continue;
        }
        let mut end = j;
        let mut width = 0;
        while end < kept.len() && has_trailing(end) {
            width = width.max(code[end].as_deref().map_or(0, |c| c.chars().count()));
            end += 1;
        }
        for column in &mut comment_column[j..end] {
            *column = width + 1;
        }
        j = end;
    }

    let mut out = String::new();
    for (k, line) in kept.iter().enumerate() {
        match line {
            Line::Blank => {}
            Line::Verbatim(raw) => out.push_str(raw),
            Line::CommentContinuation(text) => out.push_str(text),
            Line::Code(l) => {
                let text = code[k].as_deref().unwrap_or_default();
                out.push_str(text);
                if let Some(comment) = &l.comment {
                    if text.is_empty() {
                        out.push_str(&"  ".repeat(l.indent));
                    } else {
                        let pad = comment_column[k].saturating_sub(text.chars().count());
                        out.push_str(&" ".repeat(pad.max(1)));
                    }
                    out.push_str(comment);
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(text: &str) -> String {
        match format(text) {
            Ok(out) => out,
            Err(e) => panic!("format failed: {e}\n--- input ---\n{text}"),
        }
    }

    fn examples() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
        let mut files = Vec::new();
        for dir in std::fs::read_dir(&root).expect("fixtures/examples exists") {
            let dir = dir.expect("entry").path();
            for file in std::fs::read_dir(&dir).expect("example dir") {
                let file = file.expect("entry").path();
                if file.extension().is_some_and(|e| e == "hcl") {
                    let text = std::fs::read_to_string(&file).expect("readable");
                    files.push((file.display().to_string(), text));
                }
            }
        }
        assert!(files.len() >= 4, "expected the example fleet files");
        files
    }

    #[test]
    fn examples_are_canonical() {
        for (name, text) in examples() {
            let out = fmt(&text);
            assert_eq!(out, text, "{name} is not canonical");
        }
    }

    #[test]
    fn examples_are_idempotent_from_a_messy_start() {
        for (name, text) in examples() {
            // Flatten all indentation and squeeze `=`: formatting must restore the same file.
            let messy: String = text
                .lines()
                .map(|l| {
                    let l = l.trim_start();
                    if l.starts_with('#') {
                        format!("\t{l}  \n\n")
                    } else {
                        format!("{}\n", l.replacen(" = ", "=", 1))
                    }
                })
                .collect();
            let once = fmt(&messy);
            assert_eq!(fmt(&once), once, "{name}: not idempotent");
        }
    }

    #[test]
    fn indents_blocks_and_aligns_equals() {
        let input = r#"
fleet "train" {
nodes=4
    spot_policy   =  "on-demand"
resources {
gpu="H100:8"
      memory = "1TB.."
}
}
"#;
        let expected = r#"fleet "train" {
  nodes       = 4
  spot_policy = "on-demand"
  resources {
    gpu    = "H100:8"
    memory = "1TB.."
  }
}
"#;
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn blank_line_comment_and_block_break_the_alignment_run() {
        let input = r#"fleet "a" {
  nodes = 1
  max_price = 2

  providers = ["aws"]
  # a comment
  spot_policy = "spot"
  resources { gpu = "L4" }
  placement = "any"
}
"#;
        let expected = r#"fleet "a" {
  nodes     = 1
  max_price = 2

  providers = ["aws"]
  # a comment
  spot_policy = "spot"
  resources { gpu = "L4" }
  placement = "any"
}
"#;
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn multi_line_attribute_is_not_aligned_and_its_object_is() {
        let input = r#"fleet "a" {
  nodes = 1
  max_price = 2
  tags = {
  team = "llm"
  cost_center = "42"
  }
  regions = [
  "us-east-1",
     "us-west-2",
  ]
}
"#;
        let expected = r#"fleet "a" {
  nodes     = 1
  max_price = 2
  tags = {
    team        = "llm"
    cost_center = "42"
  }
  regions = [
    "us-east-1",
    "us-west-2",
  ]
}
"#;
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn comments_are_kept_and_reindented() {
        let input = "# header\n\n   // slashes\nvariable \"x\" {\n# inside\n     default = 1 # trailing\n  /* block */\n}\n";
        let expected = "# header\n\n// slashes\nvariable \"x\" {\n  # inside\n  default = 1 # trailing\n  /* block */\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn trailing_comments_of_consecutive_lines_are_aligned() {
        let input = "fleet \"a\" {\n  nodes = 1 # one\n  spot_policy = \"spot\"   # cheap\n}\n";
        let expected =
            "fleet \"a\" {\n  nodes       = 1      # one\n  spot_policy = \"spot\" # cheap\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn multi_line_block_comment_continuation_is_verbatim() {
        let input = "fleet \"a\" {\n    /* first\n       second   \n   */\n  nodes = 1\n}\n";
        let expected = "fleet \"a\" {\n  /* first\n       second\n   */\n  nodes = 1\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn heredoc_body_is_untouched() {
        let input = "output \"motd\" {\nvalue=<<EOT\n  keep   this  \n\n\n\nindent = as is\n  EOT\n description = \"x\"\n}\n";
        let expected = "output \"motd\" {\n  value = <<EOT\n  keep   this  \n\n\n\nindent = as is\n  EOT\n  description = \"x\"\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn indented_heredoc_with_brackets_in_body() {
        let input =
            "locals {\n  script = <<-EOT\n    if [ -x / ]; then {\n    EOT\n  after = [\n1]\n}\n";
        let expected = "locals {\n  script = <<-EOT\n    if [ -x / ]; then {\n    EOT\n  after = [\n    1]\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn strings_are_untouched() {
        let input =
            "locals {\n  a   =   \"x  =  { [ # not a comment\"\n  b = \"${var.a}-{  }\"\n}\n";
        let expected =
            "locals {\n  a = \"x  =  { [ # not a comment\"\n  b = \"${var.a}-{  }\"\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn blank_lines_are_squeezed() {
        let input = "\n\n\nfleet \"a\" {\n\n\n  nodes = 1\n\n\n\n  max_price = 2\n\n}\n\n\n\nfleet \"b\" {\n}\n\n\n";
        let expected = "fleet \"a\" {\n  nodes = 1\n\n  max_price = 2\n}\n\nfleet \"b\" {\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn trailing_whitespace_and_final_newline() {
        assert_eq!(fmt("a = 1   \t"), "a = 1\n");
        assert_eq!(fmt("a = 1\n\n\n"), "a = 1\n");
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n  \n"), "");
        assert_eq!(fmt("a = 1\r\nb = 2\r\n"), "a = 1\nb = 2\n");
    }

    #[test]
    fn block_headers_get_single_spaces() {
        assert_eq!(
            fmt("fleet   \"a\"{\n}\nresources{ gpu = \"L4\" }\n"),
            "fleet \"a\" {\n}\nresources { gpu = \"L4\" }\n"
        );
        assert_eq!(
            fmt("a   {}\nb{gpu=\"L4\"}\nc \"x\" { d = { e = 1 } }\n"),
            "a {}\nb { gpu = \"L4\" }\nc \"x\" { d = { e = 1 } }\n"
        );
        assert_eq!(fmt("a { # why\n\n  b = 1\n}\n"), "a { # why\n  b = 1\n}\n");
    }

    #[test]
    fn lists_of_objects_close_where_they_opened() {
        let input = "a = [{\nx = 1\n}, {\nx = 2\n}]\nb = merge(\n{ a = 1 },\n  local.x,\n)\n";
        let expected =
            "a = [{\n  x = 1\n}, {\n  x = 2\n}]\nb = merge(\n  { a = 1 },\n  local.x,\n)\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn quoted_object_keys_align() {
        let input = "tags = {\n\"kubernetes.io/role\"=\"gpu\"\nteam = \"x\"\n}\n";
        let expected =
            "tags = {\n  \"kubernetes.io/role\" = \"gpu\"\n  team                 = \"x\"\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn comparison_and_for_arrows_are_not_attributes() {
        let input =
            "locals {\n  m = {\n    for k, v in var.x :\n    k => v\n  }\n  b = 1 == 1\n}\n";
        assert_eq!(fmt(input), input);
    }

    #[test]
    fn text_that_does_not_parse_is_refused_with_a_position() {
        let err = format_source("fleet \"a\" {\n  nodes = \n}\n").unwrap_err();
        let (line, _) = err.position.expect("a position");
        assert_eq!(line, 2, "{err}");
        let err = format("fleet \"a\" {\n  nodes = 1\n").unwrap_err();
        assert!(err.contains("invalid HCL"), "{err}");
        assert!(format("a = \"unterminated\n").is_err());
    }

    #[test]
    fn table_of_inputs_is_idempotent() {
        let cases = [
            "a=1\nbb=2\n",
            "x = [\n]\n",
            "x = (\n1 +\n2\n)\n",
            "b \"l\" {\n c { d = [1,\n2] }\n}\n",
            "v = \"${join(\",\", [\"a\", \"b\"])}\"\n",
            "o = {\n a = { b = 1\n }\n}\n",
            "s = <<EOT\n}\nEOT\nt = 1\n",
            "/* x\n */ a = 1\n",
            "a = 1 /* c */ + 2\n",
            "# only a comment",
        ];
        for case in cases {
            let once = fmt(case);
            assert_eq!(fmt(&once), once, "not idempotent for {case:?}");
        }
    }

    /// One line (or a few) of a block body; `{key}` is replaced by a name unique in the body.
    fn hcl_piece() -> impl Strategy<Value = String> {
        let value = prop::sample::select(vec![
            "1",
            "\"s = { x\"",
            "[1, 2]",
            "{ k = 1 }",
            "var.x",
            "\"${var.a}\"",
            "[\n\"a\",\n  \"b\"\n]",
            "{\nk=1\n  \"quoted key\" = 2\n}",
            "<<EOT\n  body {\nEOT",
            "[{\na = 1\n}, {\nb = 2\n}]",
            "1 # trailing",
        ]);
        let spaces = prop::sample::select(vec!["", " ", "   ", "\t"]);
        let attr = (spaces.clone(), spaces.clone(), spaces, value)
            .prop_map(|(s1, s2, s3, v)| format!("{s1}{{key}}{s2}={s3}{v}\n"));
        let misc = prop::sample::select(vec![
            "\n".to_string(),
            "\n\n\n".to_string(),
            "# comment\n".to_string(),
            "  // other comment  \n".to_string(),
        ]);
        prop_oneof![3 => attr, 1 => misc]
    }

    fn hcl_body() -> impl Strategy<Value = String> {
        let leaf = prop::collection::vec(hcl_piece(), 0..6).prop_map(|pieces| pieces.concat());
        let nested = leaf.prop_recursive(3, 24, 4, |inner| {
            (
                prop::collection::vec(inner, 1..3),
                prop::sample::select(vec!["fleet \"a\"", "resources", "b"]),
                prop::sample::select(vec!["", "  ", "\n"]),
            )
                .prop_map(|(parts, header, pad)| {
                    let body = parts.concat();
                    format!("{header} {{{pad}\n{body}}}\n")
                })
        });
        // Attribute names must be unique within a body: number them all.
        nested.prop_map(|text| {
            let keys = ["a", "nodes", "max_price", "gpu"];
            let mut out = String::new();
            for (i, part) in text.split("{key}").enumerate() {
                if i > 0 {
                    out.push_str(&format!("{}{i}", keys[i % keys.len()]));
                }
                out.push_str(part);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn format_is_idempotent(body in hcl_body()) {
            // Every generated body is valid HCL, so formatting must succeed.
            let once = format(&body);
            prop_assert!(once.is_ok(), "{:?} for\n{}", once, body);
            let once = once.unwrap_or_default();
            prop_assert_eq!(format(&once), Ok(once.clone()));
        }

        #[test]
        fn format_never_panics(text in "[a-z{}\\[\\]()=\"#/*<>\\- \n\\$]{0,80}") {
            let _ = format(&text);
        }
    }
}
