//! The parsers behind [`super::parse_gpu`] and friends.
//!
//! Hand-written rather than generated: the grammar is a handful of token kinds, and writing it
//! by hand lets every mistake carry its own message, the exact byte span of the offending token
//! (so `config` can underline it in the fleet file) and a hint saying what to write instead.
//!
//! Offsets are always relative to the whole string handed to the public function, so each
//! helper takes the `base` offset of the slice it works on.

use super::{GpuSpec, GpuVendor, Memory, Range};
use std::fmt;

/// A grammar error, with where it is in the parsed string so `config` can point at the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// What is wrong, lowercase, naming the offending token: ``unknown memory unit `GiB` ``.
    pub message: String,
    /// Byte offset of the offending token within the parsed string.
    pub offset: usize,
    /// Byte length of the offending token (at least 1 where the string is non-empty).
    pub len: usize,
    /// What to write instead, where one helps: ``use `MB`, `GB` or `TB` ``.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    fn new(message: impl Into<String>, offset: usize, len: usize) -> SpecError {
        SpecError {
            message: message.into(),
            offset,
            len,
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> SpecError {
        self.hint = Some(hint.into());
        self
    }
}

/// What a range holds, for the wording of its errors.
#[derive(Clone, Copy)]
struct Kind {
    /// `count`, `memory`.
    noun: &'static str,
    /// Valid examples, for hints.
    examples: &'static str,
}

const COUNT: Kind = Kind {
    noun: "count",
    examples: "`8`, `8..`, `..16` or `8..16`",
};
const MEMORY: Kind = Kind {
    noun: "memory",
    examples: "`24GB`, `24GB..`, `..1TB` or `16GB..80GB`",
};

/// `s` without surrounding whitespace, and the byte offset where the trimmed text starts.
fn trim(s: &str) -> (usize, &str) {
    let start = s.len() - s.trim_start().len();
    (start, s.trim())
}

/// The span to report for a token: its own, widened to one byte where it is empty but the
/// surrounding string is not.
fn span_len(token: &str) -> usize {
    token.len().max(1)
}

pub(super) fn count_range(s: &str) -> Result<Range<u32>, SpecError> {
    range(s, 0, COUNT, count_value)
}

pub(super) fn memory_range(s: &str) -> Result<Range<Memory>, SpecError> {
    range(s, 0, MEMORY, memory_value)
}

pub(super) fn memory(s: &str) -> Result<Memory, SpecError> {
    let (lead, t) = trim(s);
    if t.is_empty() {
        return Err(SpecError::new("empty memory", 0, s.len())
            .hint("write a number and a unit: `512MB`, `80GB` or `1TB`"));
    }
    if let Some(i) = t.find("..") {
        return Err(SpecError::new(
            format!("`{t}` is a range, but a single memory size is expected here"),
            lead + i,
            2,
        )
        .hint("write one size, such as `80GB`"));
    }
    memory_value(t, lead)
}

/// `a`, `a..`, `..b` or `a..b`, each bound parsed by `one`. `base` is the offset of `s` within
/// the string the user wrote.
fn range<T: PartialOrd + Copy + fmt::Display>(
    s: &str,
    base: usize,
    kind: Kind,
    one: fn(&str, usize) -> Result<T, SpecError>,
) -> Result<Range<T>, SpecError> {
    let (lead, t) = trim(s);
    let at = base + lead;
    if t.is_empty() {
        return Err(
            SpecError::new(format!("empty {}", kind.noun), base, s.len())
                .hint(format!("write {}", kind.examples)),
        );
    }
    let Some(dots) = t.find("..") else {
        return Ok(Range::exactly(one(t, at)?));
    };
    let (lo, hi) = (&t[..dots], &t[dots + 2..]);
    if let Some(again) = hi.find("..") {
        return Err(SpecError::new(
            format!("`{t}` has more than one `..`"),
            at + dots + 2 + again,
            2,
        )
        .hint(format!("a range has one `..`: {}", kind.examples)));
    }
    let bound = |part: &str, offset: usize| -> Result<Option<T>, SpecError> {
        let (plead, p) = trim(part);
        if p.is_empty() {
            Ok(None)
        } else {
            one(p, offset + plead).map(Some)
        }
    };
    let min = bound(lo, at)?;
    let max = bound(hi, at + dots + 2)?;
    match (min, max) {
        (None, None) => Err(
            SpecError::new(format!("`{t}` is open on both sides"), at, t.len())
                .hint(format!("give at least one bound: {}", kind.examples)),
        ),
        (Some(a), Some(b)) if a > b => Err(SpecError::new(
            format!("`{t}`: the lower bound {a} is above the upper bound {b}"),
            at,
            t.len(),
        )
        .hint(format!("write `{}..{}`", hi.trim(), lo.trim()))),
        (min, max) => Ok(Range { min, max }),
    }
}

/// One count: a whole number.
fn count_value(t: &str, at: usize) -> Result<u32, SpecError> {
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u32>().map_err(|_| {
            SpecError::new(format!("`{t}` is too large for a count"), at, t.len())
                .hint(format!("the largest count is {}", u32::MAX))
        });
    }
    let err = SpecError::new(format!("`{t}` is not a count"), at, span_len(t));
    Err(if t.contains(',') {
        err.hint("give one number, or a range such as `4..8`")
    } else if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        err.hint("counts are whole numbers, such as `8`")
    } else {
        err.hint(format!(
            "write a whole number or a range: {}",
            COUNT.examples
        ))
    })
}

/// One memory size: a number (decimals allowed) and an optional unit, `MB`, `GB` or `TB`,
/// case-insensitive; a bare number is GB. Rounded to the MiB.
fn memory_value(t: &str, at: usize) -> Result<Memory, SpecError> {
    let digits = t
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, rest) = t.split_at(digits);
    let (ulead, unit) = trim(rest);
    let not_memory = || {
        SpecError::new(format!("`{t}` is not a memory size"), at, span_len(t))
            .hint("write a number and a unit: `512MB`, `80GB` or `1TB`")
    };
    if num.is_empty() {
        return Err(not_memory());
    }
    const MIB_PER: [(&str, u64); 3] = [("mb", 1), ("gb", 1024), ("tb", 1024 * 1024)];
    let factor = if unit.is_empty() {
        1024
    } else if let Some((_, f)) = MIB_PER.iter().find(|(u, _)| unit.eq_ignore_ascii_case(u)) {
        *f
    } else {
        let lower = unit.to_ascii_lowercase();
        let hint = if matches!(lower.as_str(), "mib" | "gib" | "tib") {
            "use MB, GB or TB (flotilla's GB is already 1024 MB)"
        } else if lower == "x" {
            "a GPU count goes in its own token: `H100:8`"
        } else {
            "use MB, GB or TB"
        };
        return Err(SpecError::new(
            format!("unknown memory unit `{unit}`"),
            at + digits + ulead,
            unit.len(),
        )
        .hint(hint));
    };
    let too_large = || {
        SpecError::new(format!("`{t}` is too large"), at, t.len())
            .hint("memory sizes go up to millions of TB; check the number")
    };
    if num.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = num.parse().map_err(|_| too_large())?;
        return n
            .checked_mul(factor)
            .map(Memory::from_mib)
            .ok_or_else(too_large);
    }
    let n: f64 = num.parse().map_err(|_| not_memory())?;
    let mib = (n * factor as f64).round();
    // 2^64 as f64: anything at or above does not fit in a u64.
    if !mib.is_finite() || mib >= 18_446_744_073_709_551_616.0 {
        return Err(too_large());
    }
    // In range and non-negative (the text has no sign), so the cast is exact.
    Ok(Memory::from_mib(mib as u64))
}

/// One `:`-separated token of a GPU spec, classified.
enum Token {
    Vendor(GpuVendor),
    Names(Vec<String>),
    Memory(Range<Memory>),
    Count(Range<u32>),
}

fn vendor(t: &str) -> Option<GpuVendor> {
    [GpuVendor::Nvidia, GpuVendor::Amd]
        .into_iter()
        .find(|v| t.eq_ignore_ascii_case(v.as_str()))
}

pub(super) fn gpu(s: &str) -> Result<GpuSpec, SpecError> {
    if s.trim().is_empty() {
        return Err(SpecError::new("empty GPU spec", 0, s.len())
            .hint("write a GPU name, a count or both, such as `H100:8` or `A100,H100:80GB:1..8`"));
    }
    let mut spec = GpuSpec {
        vendor: None,
        names: Vec::new(),
        memory: None,
        count: Range::exactly(1),
    };
    // The text of the token that set each kind, for "given twice" messages.
    let (mut seen_vendor, mut seen_names, mut seen_memory, mut seen_count) =
        (None::<&str>, None::<&str>, None::<&str>, None::<&str>);
    let mut start = 0;
    for part in s.split(':') {
        let part_start = start;
        start += part.len() + 1;
        let (lead, tok) = trim(part);
        let at = part_start + lead;
        if tok.is_empty() {
            // Point at the stray `:` itself: the one before this empty part, or after it.
            let colon = if part_start > 0 {
                part_start - 1
            } else {
                part.len()
            };
            return Err(SpecError::new(
                format!("empty token in GPU spec `{}`", s.trim()),
                colon,
                1,
            )
            .hint("remove the extra `:`; tokens are a vendor, names, a memory or a count"));
        }
        let twice = |what: &str, hint: String| {
            Err(SpecError::new(format!("`{tok}`: {what} given twice"), at, tok.len()).hint(hint))
        };
        match token(tok, at)? {
            Token::Vendor(v) => {
                if let Some(first) = seen_vendor {
                    return twice(
                        "GPU vendor",
                        format!("`{first}` is already given; give one vendor"),
                    );
                }
                seen_vendor = Some(tok);
                spec.vendor = Some(v);
            }
            Token::Names(names) => {
                if let Some(first) = seen_names {
                    return twice(
                        "GPU names",
                        format!("list alternatives with a comma: `{first},{tok}`"),
                    );
                }
                seen_names = Some(tok);
                spec.names = names;
            }
            Token::Memory(m) => {
                if let Some(first) = seen_memory {
                    return twice(
                        "GPU memory",
                        format!(
                            "`{first}` is already given; give one memory per GPU, or a range such as `40GB..80GB`"
                        ),
                    );
                }
                seen_memory = Some(tok);
                spec.memory = Some(m);
            }
            Token::Count(c) => {
                if let Some(first) = seen_count {
                    return twice(
                        "GPU count",
                        format!(
                            "`{first}` is already given; give one count, or a range such as `1..8`"
                        ),
                    );
                }
                seen_count = Some(tok);
                spec.count = c;
            }
        }
    }
    Ok(spec)
}

/// Classifies and parses one non-empty, trimmed GPU token starting at byte `at`.
fn token(tok: &str, at: usize) -> Result<Token, SpecError> {
    let first = tok.as_bytes()[0];
    if first.is_ascii_digit() || first == b'.' {
        if tok.bytes().any(|b| b.is_ascii_alphabetic()) {
            return range(tok, at, MEMORY, memory_value).map(Token::Memory);
        }
        if !tok.contains("..") && tok.contains('.') {
            return Err(SpecError::new(
                format!("`{tok}` is not a whole number of GPUs"),
                at,
                tok.len(),
            )
            .hint(format!("for memory per GPU add a unit: `{tok}GB`")));
        }
        return range(tok, at, COUNT, count_value).map(Token::Count);
    }
    if let Some(v) = vendor(tok) {
        return Ok(Token::Vendor(v));
    }
    let mut names = Vec::new();
    let mut start = 0;
    for part in tok.split(',') {
        let part_start = at + start;
        start += part.len() + 1;
        let (lead, name) = trim(part);
        let name_at = part_start + lead;
        if name.is_empty() {
            let comma = if part_start > at {
                part_start - 1
            } else {
                part_start + part.len()
            };
            return Err(
                SpecError::new(format!("empty GPU name in `{tok}`"), comma, 1)
                    .hint("remove the extra `,`"),
            );
        }
        if vendor(name).is_some() {
            return Err(SpecError::new(
                format!("`{name}` is a vendor, not a GPU name"),
                name_at,
                name.len(),
            )
            .hint(format!(
                "give the vendor as its own token: `{name}:{}`",
                others(tok, name)
            )));
        }
        let valid = name.as_bytes()[0].is_ascii_alphabetic()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            let err = SpecError::new(format!("`{name}` is not a GPU name"), name_at, name.len());
            return Err(if name.as_bytes()[0].is_ascii_digit() {
                err.hint("a GPU name starts with a letter; give a count or a memory as its own token: `H100:8`")
            } else {
                err.hint("a GPU name is letters, digits, `-` and `_`, such as `H100` or `RTXPRO6000`; separate tokens with `:`")
            });
        }
        names.push(name.to_string());
    }
    Ok(Token::Names(names))
}

/// The names of a comma list other than `skip`, comma-joined again, for hints.
fn others(list: &str, skip: &str) -> String {
    let rest: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| *n != skip && !n.is_empty())
        .collect();
    if rest.is_empty() {
        "H100".to_string()
    } else {
        rest.join(",")
    }
}
