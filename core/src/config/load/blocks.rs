//! The top level of the fleet files: which blocks there are, with the right labels, each name
//! declared once; and [`Cx`], the typed reading of attributes every block decoder shares.

use super::eval::{Evaluator, span_of};
use super::{Source, funcs, model, suggest, vars};
use crate::config::{Config, Diagnostic, VarArg};
use crate::spec::SpecError;
use hcl::Value;
use hcl::edit::expr::Expression as EditExpr;
use hcl::edit::structure::{Attribute, Block, Body};
use std::collections::BTreeMap;
use std::ops::Range;

/// Top-level block kinds, in the order messages list them.
const KINDS: &[&str] = &[
    "state", "variable", "locals", "provider", "volume", "fleet", "gateway", "output",
];

/// A top-level block with the file it is in and its name (the label; empty for `state` and
/// `locals`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Item<'a> {
    pub(super) src: &'a Source,
    pub(super) block: &'a Block,
    pub(super) name: &'a str,
}

impl Item<'_> {
    /// Where the block's name is written (its label), or its keyword without one.
    pub(super) fn name_span(&self) -> Range<usize> {
        self.block
            .labels
            .first()
            .map_or_else(|| span_of(&self.block.ident), span_of)
    }

    /// From the keyword to the last label: `fleet "train"`.
    pub(super) fn header_span(&self) -> Range<usize> {
        let start = span_of(&self.block.ident).start;
        let end = self
            .block
            .labels
            .last()
            .map_or_else(|| span_of(&self.block.ident).end, |l| span_of(l).end);
        start..end
    }
}

/// The top-level blocks by kind, each name once (later duplicates are reported and dropped).
#[derive(Debug, Default)]
pub(super) struct Top<'a> {
    pub(super) state: Option<Item<'a>>,
    pub(super) variables: Vec<Item<'a>>,
    pub(super) locals: Vec<Item<'a>>,
    pub(super) providers: Vec<Item<'a>>,
    pub(super) volumes: Vec<Item<'a>>,
    pub(super) fleets: Vec<Item<'a>>,
    pub(super) gateways: Vec<Item<'a>>,
    pub(super) outputs: Vec<Item<'a>>,
}

impl Top<'_> {
    /// Whether a block of `kind` named `name` is declared.
    pub(super) fn has(&self, kind: &str, name: &str) -> bool {
        self.names(kind).any(|n| n == name)
    }

    /// The names of the blocks of `kind`: those references can name (`fleet`, `volume`,
    /// `gateway`); none for any other kind.
    pub(super) fn names(&self, kind: &str) -> impl Iterator<Item = &str> {
        let items: &[Item<'_>] = match kind {
            "fleet" => &self.fleets,
            "volume" => &self.volumes,
            "gateway" => &self.gateways,
            _ => &[],
        };
        items.iter().map(|i| i.name)
    }
}

/// Parses, evaluates and checks everything; diagnostics go to `diags`.
pub(super) fn build(
    files: &[(Source, Body)],
    var_args: &[VarArg],
    env: &[(String, String)],
    diags: &mut Vec<Diagnostic>,
) -> Config {
    let top = collect(files, diags);
    let mut cx = Cx {
        ev: Evaluator::constant(),
        diags: std::mem::take(diags),
    };
    let mut config = Config::default();

    let variables = vars::variables(&top.variables, var_args, env, &mut cx);
    config.variables = json_values(&variables);
    cx.ev.vars = Some(variables);
    let locals = vars::locals(&top.locals, &mut cx);
    config.locals = json_values(&locals);
    cx.ev.locals = Some(locals);

    model::build(&top, &mut cx, &mut config);
    *diags = cx.diags;
    config
}

fn json_values(values: &super::eval::Values) -> BTreeMap<String, serde_json::Value> {
    values
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), to_json(v.as_ref()?))))
        .collect()
}

/// An evaluated value as JSON.
pub(super) fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Whether a block name can be referred to (`fleet.NAME`): an HCL identifier.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn collect<'a>(files: &'a [(Source, Body)], diags: &mut Vec<Diagnostic>) -> Top<'a> {
    let mut top = Top::default();
    // (kind, name) -> where first declared.
    let mut seen: BTreeMap<(String, String), crate::config::Origin> = BTreeMap::new();
    for (src, body) in files {
        for attr in body.attributes() {
            let key = attr.key.as_str();
            let mut d = src.error(
                span_of(&attr.key),
                format!("unexpected attribute `{key}` at the top level"),
                "expected a block such as `fleet \"NAME\" { … }`",
            );
            if KINDS.contains(&key) {
                d = d.with_help(format!(
                    "`{key}` is a block: write `{key} … {{ … }}` without `=`"
                ));
            } else {
                d = d.with_help("attributes go inside blocks; top-level names are declared with `variable` or `locals`");
            }
            diags.push(d);
        }
        for block in body.blocks() {
            let kind = block.ident.as_str();
            let ident_span = span_of(&block.ident);
            if !KINDS.contains(&kind) {
                let mut d = src.error(
                    ident_span,
                    format!("unknown block `{kind}`"),
                    suggest::expected_one_of(KINDS.iter().copied()),
                );
                d.help = suggest::did_you_mean(kind, KINDS.iter().copied());
                diags.push(d);
                continue;
            }
            let Some(name) = block_name(src, block, diags) else {
                continue;
            };
            let item = Item { src, block, name };
            if kind == "locals" {
                top.locals.push(item);
                continue;
            }
            let origin = src.origin(item.name_span().start);
            match seen.get(&(kind.to_string(), name.to_string())) {
                Some(first) => {
                    let (message, what) = if kind == "state" {
                        (
                            "duplicate `state` block".to_string(),
                            "a `state` block".to_string(),
                        )
                    } else {
                        (
                            format!("duplicate {kind} `{name}`"),
                            format!("{kind} `{name}`"),
                        )
                    };
                    diags.push(
                        src.error(
                            item.name_span(),
                            message,
                            format!("{what} is already declared at {first}"),
                        )
                        .with_help(if kind == "state" {
                            "keep one `state` block"
                        } else {
                            "rename or remove one of them"
                        }),
                    );
                    continue;
                }
                None => {
                    seen.insert((kind.to_string(), name.to_string()), origin);
                }
            }
            match kind {
                "state" => top.state = Some(item),
                "variable" => top.variables.push(item),
                "provider" => top.providers.push(item),
                "volume" => top.volumes.push(item),
                "fleet" => top.fleets.push(item),
                "gateway" => top.gateways.push(item),
                _ => top.outputs.push(item),
            }
        }
    }
    top
}

/// The name (label) of a top-level block of a known kind, `""` for `state` and `locals`;
/// `None`, reported, when the labels are wrong.
fn block_name<'a>(src: &Source, block: &'a Block, diags: &mut Vec<Diagnostic>) -> Option<&'a str> {
    let kind = block.ident.as_str();
    let ident_span = span_of(&block.ident);
    let wants_name = !matches!(kind, "state" | "locals");
    let labels = &block.labels;
    if wants_name && labels.is_empty() {
        let example = if kind == "provider" {
            "provider \"aws\" { … }".to_string()
        } else {
            format!("{kind} \"NAME\" {{ … }}")
        };
        diags.push(src.error(
            ident_span,
            format!("`{kind}` block needs a name"),
            format!("expected `{example}`"),
        ));
        return None;
    }
    let allowed = usize::from(wants_name);
    if labels.len() > allowed {
        let extra = &labels[allowed];
        let message = if wants_name {
            format!("`{kind}` block takes one name, got {}", labels.len())
        } else {
            format!("`{kind}` block takes no name")
        };
        let label = if wants_name {
            "remove this label".to_string()
        } else {
            format!("expected `{kind} {{ … }}`")
        };
        diags.push(src.error(span_of(extra), message, label));
        return None;
    }
    let name = labels.first().map_or("", |l| l.as_str());
    if wants_name && kind != "provider" && !valid_name(name) {
        diags.push(
            src.error(
                span_of(&labels[0]),
                format!("invalid {kind} name `{name}`"),
                "expected letters, digits, `_` and `-`, starting with a letter or `_`",
            )
            .with_help(format!(
                "the name is used in references such as `{kind}.NAME`"
            )),
        );
        return None;
    }
    Some(name)
}

/// How to read one kind of value of the resource grammar.
pub(super) struct Grammar<T> {
    /// The parser, from `spec`.
    pub(super) parse: fn(&str) -> Result<T, SpecError>,
    /// Whether a bare number is taken too (`cpu = 8`, `memory = 64` for 64GB).
    pub(super) number_ok: bool,
    /// The label of an error: what a valid value looks like.
    pub(super) expected: &'static str,
}

/// The attributes of a body by name (first of each), after [`Cx::check_body`].
pub(super) type Attrs<'a> = BTreeMap<&'a str, &'a Attribute>;

/// The evaluator and the diagnostics, shared by every block decoder.
#[derive(Debug)]
pub(super) struct Cx {
    pub(super) ev: Evaluator,
    pub(super) diags: Vec<Diagnostic>,
}

impl Cx {
    /// Reports unknown, misplaced and repeated attributes and blocks of `body` (described as
    /// `what`, such as "fleet `train`"); returns the attributes by name.
    pub(super) fn check_body<'a>(
        &mut self,
        src: &Source,
        body: &'a Body,
        what: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Attrs<'a> {
        let mut out: Attrs<'a> = BTreeMap::new();
        for attr in body.attributes() {
            let key = attr.key.as_str();
            let span = span_of(&attr.key);
            if blocks.contains(&key) {
                self.diags.push(
                    src.error(
                        span,
                        format!("`{key}` in {what} is a block, not an attribute"),
                        format!("expected `{key} {{ … }}`"),
                    )
                    .with_help(format!("remove the `=`: {key} {{ … }}")),
                );
            } else if !attrs.contains(&key) {
                let mut d = src.error(
                    span,
                    format!("unknown attribute `{key}` in {what}"),
                    suggest::expected_one_of(attrs.iter().copied()),
                );
                d.help = suggest::did_you_mean(key, attrs.iter().chain(blocks).copied());
                self.diags.push(d);
            } else {
                // hcl-edit already refuses a repeated attribute (see `parse_error`).
                out.entry(key).or_insert(attr);
            }
        }
        for block in body.blocks() {
            let key = block.ident.as_str();
            let span = span_of(&block.ident);
            if attrs.contains(&key) {
                self.diags.push(
                    src.error(
                        span,
                        format!("`{key}` in {what} is an attribute, not a block"),
                        format!("expected `{key} = …`"),
                    )
                    .with_help(format!("write `{key} = {{ … }}`")),
                );
            } else if !blocks.contains(&key) {
                let label = if blocks.is_empty() {
                    format!(
                        "{what} takes no blocks; expected an attribute: {}",
                        suggest::expected_one_of(attrs.iter().copied())
                            .trim_start_matches("expected ")
                    )
                } else {
                    suggest::expected_one_of(blocks.iter().copied())
                };
                let mut d = src.error(span, format!("unknown block `{key}` in {what}"), label);
                d.help = suggest::did_you_mean(key, blocks.iter().chain(attrs).copied());
                self.diags.push(d);
            }
        }
        out
    }

    /// Reports a missing required attribute at the block's header.
    pub(super) fn missing(
        &mut self,
        src: &Source,
        header: Range<usize>,
        key: &str,
        what: &str,
        example: &str,
    ) {
        self.diags.push(
            src.error(
                header,
                format!("missing required attribute `{key}` in {what}"),
                format!("`{key}` is required"),
            )
            .with_help(format!("add `{key} = {example}`")),
        );
    }

    /// Evaluates an attribute's value.
    pub(super) fn value(&mut self, src: &Source, attr: &Attribute) -> Option<Value> {
        self.ev.eval(src, &attr.value, &mut self.diags)
    }

    /// Reports a value of the wrong type or out of range, at the value.
    pub(super) fn bad_value(
        &mut self,
        src: &Source,
        attr: &Attribute,
        what: &str,
        expected: &str,
        got: &Value,
    ) {
        let key = attr.key.as_str();
        self.diags.push(src.error(
            span_of(&attr.value),
            format!("`{key}` in {what} must be {expected}"),
            format!("expected {expected}, got {}", funcs::describe(got)),
        ));
    }

    /// A string attribute.
    pub(super) fn string(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
    ) -> Option<String> {
        let attr = attrs.get(key)?;
        match self.value(src, attr)? {
            Value::String(s) => Some(s),
            other => {
                self.bad_value(src, attr, what, "a string", &other);
                None
            }
        }
    }

    /// A bool attribute.
    pub(super) fn bool(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
    ) -> Option<bool> {
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        let b = match &value {
            Value::Bool(b) => Some(*b),
            // As Terraform converts: a variable set on the command line is text.
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        };
        if b.is_none() {
            self.bad_value(src, attr, what, "`true` or `false`", &value);
        }
        b
    }

    /// A number attribute.
    pub(super) fn number(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
    ) -> Option<f64> {
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        let n = as_number(&value);
        if n.is_none() {
            self.bad_value(src, attr, what, "a number", &value);
        }
        n
    }

    /// A whole-number attribute within `min..=max`.
    pub(super) fn whole(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let whole = as_number(&value)
            .filter(|n| n.fract() == 0.0 && *n >= min as f64 && *n <= max as f64)
            .map(|n| n as u64);
        match whole {
            Some(n) => Some(n),
            None => {
                let expected = if max == u64::from(u32::MAX) || max == u64::MAX {
                    format!("a whole number of at least {min}")
                } else {
                    format!("a whole number from {min} to {max}")
                };
                self.bad_value(src, attr, what, &expected, &value);
                None
            }
        }
    }

    /// A list-of-strings attribute.
    pub(super) fn strings(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
    ) -> Option<Vec<String>> {
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        let list = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        if list.is_none() {
            self.bad_value(src, attr, what, "a list of strings", &value);
        }
        list
    }

    /// A map of strings (numbers and bools are converted, as Terraform does for tags).
    pub(super) fn string_map(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
    ) -> Option<BTreeMap<String, String>> {
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        let map = value.as_object().and_then(|object| {
            object
                .iter()
                .map(|(k, v)| funcs::to_string_value(v).map(|v| (k.clone(), v)))
                .collect::<Option<BTreeMap<_, _>>>()
        });
        if map.is_none() {
            self.bad_value(
                src,
                attr,
                what,
                "a map of strings, such as `{ team = \"llm\" }`",
                &value,
            );
        }
        map
    }

    /// A string attribute that must be one of `choices`.
    pub(super) fn choice(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
        choices: &[&str],
    ) -> Option<String> {
        let attr = attrs.get(key)?;
        let s = self.string(src, attrs, key, what)?;
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        let mut d = src.error(
            span_of(&attr.value),
            format!("invalid `{key}` in {what}: `{s}`"),
            suggest::expected_one_of(choices.iter().copied()),
        );
        d.help = suggest::did_you_mean(&s, choices.iter().copied());
        self.diags.push(d);
        None
    }

    /// A value in the resource grammar (`"H100:8"`, `"1TB.."`). Errors point inside the
    /// string literal.
    pub(super) fn spec<T>(
        &mut self,
        src: &Source,
        attrs: &Attrs<'_>,
        key: &str,
        what: &str,
        grammar: &Grammar<T>,
    ) -> Option<T> {
        let Grammar {
            parse,
            number_ok,
            expected,
        } = *grammar;
        let attr = attrs.get(key)?;
        let value = self.value(src, attr)?;
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Number(n) if number_ok => n.to_string(),
            other => {
                let kind = if number_ok {
                    "a string or a number"
                } else {
                    "a string"
                };
                self.bad_value(src, attr, what, kind, other);
                return None;
            }
        };
        match parse(&text) {
            Ok(v) => Some(v),
            Err(err) => {
                let span = inner_span(src, &attr.value, &text, err.offset, err.len);
                let mut d = src.error(
                    span,
                    format!("invalid `{key}` in {what}: {}", err.message),
                    expected.to_string(),
                );
                d.help = err.hint;
                self.diags.push(d);
                None
            }
        }
    }

    /// The names in a list of block references such as `volumes = [volume.ckpt]`, each with
    /// its span; wrong shapes and kinds are reported. Whether each name exists is checked here
    /// too, against `declared`.
    pub(super) fn references(
        &mut self,
        src: &Source,
        attr: &Attribute,
        what: &str,
        kind: &str,
        declared: &[&str],
    ) -> Vec<(String, Range<usize>)> {
        let key = attr.key.as_str();
        let example = format!("`[{kind}.NAME, …]`");
        let EditExpr::Array(items) = &attr.value else {
            self.diags.push(src.error(
                span_of(&attr.value),
                format!("`{key}` in {what} must be a list of {kind} references"),
                format!("expected a list such as {example}"),
            ));
            return Vec::new();
        };
        let mut out: Vec<(String, Range<usize>)> = Vec::new();
        for item in items.iter() {
            let span = span_of(item);
            let Some((root, name)) = reference(item) else {
                self.diags.push(src.error(
                    span,
                    format!("`{key}` in {what} must list {kind} references"),
                    format!("expected `{kind}.NAME`"),
                ));
                continue;
            };
            if root != kind {
                let label = format!("expected `{kind}.NAME`");
                let message = if matches!(root.as_str(), "fleet" | "volume" | "gateway") {
                    format!("`{root}.{name}` is a {root}, but `{key}` in {what} takes {kind}s")
                } else {
                    format!("`{key}` in {what} must list {kind} references, not `{root}.{name}`")
                };
                self.diags.push(src.error(span, message, label));
                continue;
            }
            if !declared.contains(&name.as_str()) {
                let mut d = src.error(
                    span,
                    format!("unknown {kind} `{kind}.{name}`"),
                    format!("no {kind} `{name}` is declared"),
                );
                d.help = Some(
                    suggest::closest(&name, declared.iter().copied()).map_or_else(
                        || format!("declare it: {kind} \"{name}\" {{ … }}"),
                        |c| format!("did you mean `{kind}.{c}`?"),
                    ),
                );
                self.diags.push(d);
                continue;
            }
            if out.iter().any(|(n, _)| *n == name) {
                self.diags.push(src.error(
                    span,
                    format!("{kind} `{name}` is listed twice in `{key}` of {what}"),
                    "remove one of them",
                ));
                continue;
            }
            out.push((name, span));
        }
        out
    }
}

/// A number, or a string holding one: Terraform converts, and a variable set on the command
/// line without a `type` is text.
fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// `fleet.NAME` as `("fleet", "NAME")`; any other shape is `None`.
pub(super) fn reference(expr: &EditExpr) -> Option<(String, String)> {
    let EditExpr::Traversal(t) = expr else {
        return None;
    };
    let EditExpr::Variable(root) = &t.expr else {
        return None;
    };
    match t.operators.as_slice() {
        [op] => match op.value() {
            hcl::edit::expr::TraversalOperator::GetAttr(name) => {
                Some((root.as_str().to_string(), name.as_str().to_string()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The span of bytes `offset..offset+len` of a string value, inside its literal when the
/// value is written as a plain string (no escapes); the whole expression otherwise.
pub(super) fn inner_span(
    src: &Source,
    expr: &EditExpr,
    text: &str,
    offset: usize,
    len: usize,
) -> Range<usize> {
    let whole = span_of(expr);
    if let EditExpr::String(_) = expr {
        let raw = src.text.get(whole.clone()).unwrap_or("");
        if raw.len() == text.len() + 2 && raw.get(1..raw.len() - 1) == Some(text) {
            let start = whole.start + 1 + offset.min(text.len());
            let end = (start + len.max(1)).min(whole.end - 1).max(start);
            return start..end;
        }
    }
    whole
}
