//! Variables and locals: the values expressions see as `var.NAME` and `local.NAME`.
//!
//! A variable's value comes, lowest first, from its `default`, `FLOTILLA_VAR_NAME`, then each
//! `--var` and `--var-file` in command-line order (Terraform's precedence). Locals may use
//! variables and each other; they are evaluated in dependency order, and a cycle is reported
//! with its whole path.

use super::blocks::{Cx, Item};
use super::eval::{Evaluator, Values, span_of};
use super::{Source, funcs, parse_error, suggest};
use crate::config::VarArg;
use hcl::edit::expr::Expression as EditExpr;
use hcl::edit::structure::Attribute;
use hcl::{Number, Value};
use std::collections::BTreeMap;
use std::ops::Range;

/// The prefix of environment variables that set fleet-file variables.
pub(super) const ENV_PREFIX: &str = "FLOTILLA_VAR_";

/// A variable's `type`: enough of Terraform's type language to convert and check values.
#[derive(Debug, Clone, PartialEq)]
enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Map(Box<VarType>),
}

impl VarType {
    fn describe(&self) -> String {
        match self {
            VarType::Any => "any value".to_string(),
            VarType::String => "a string".to_string(),
            VarType::Number => "a number".to_string(),
            VarType::Bool => "`true` or `false`".to_string(),
            VarType::List(t) => format!("a list of {}", t.plural()),
            VarType::Map(t) => format!("a map of {}", t.plural()),
        }
    }

    fn plural(&self) -> String {
        match self {
            VarType::Any => "values".to_string(),
            VarType::String => "strings".to_string(),
            VarType::Number => "numbers".to_string(),
            VarType::Bool => "bools".to_string(),
            VarType::List(t) => format!("lists of {}", t.plural()),
            VarType::Map(t) => format!("maps of {}", t.plural()),
        }
    }

    /// Converts a value to this type as Terraform does (numbers and bools to strings, numeric
    /// strings to numbers); `None` when it cannot.
    fn convert(&self, value: Value) -> Option<Value> {
        match (self, value) {
            (_, Value::Null) => Some(Value::Null),
            (VarType::Any, v) => Some(v),
            (VarType::String, v) => funcs::to_string_value(&v).map(Value::String),
            (VarType::Number, Value::Number(n)) => Some(Value::Number(n)),
            (VarType::Number, Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number),
            (VarType::Bool, Value::Bool(b)) => Some(Value::Bool(b)),
            (VarType::Bool, Value::String(s)) => match s.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            (VarType::List(t), Value::Array(items)) => items
                .into_iter()
                .map(|v| t.convert(v))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            (VarType::Map(t), Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| t.convert(v).map(|v| (k, v)))
                .collect::<Option<hcl::Map<_, _>>>()
                .map(Value::Object),
            _ => None,
        }
    }
}

/// Parses a `type = …` expression: `string`, `number`, `bool`, `any`, `list(T)`, `set(T)`,
/// `map(T)`; `object(…)` and `tuple(…)` are taken as maps and lists of any value.
fn parse_type(expr: &EditExpr) -> Option<VarType> {
    match expr {
        EditExpr::Variable(v) => match v.as_str() {
            "string" => Some(VarType::String),
            "number" => Some(VarType::Number),
            "bool" => Some(VarType::Bool),
            "any" => Some(VarType::Any),
            "list" | "set" | "tuple" => Some(VarType::List(Box::new(VarType::Any))),
            "map" | "object" => Some(VarType::Map(Box::new(VarType::Any))),
            _ => None,
        },
        EditExpr::FuncCall(f) if !f.name.is_namespaced() => {
            let inner = || match f.args.iter().collect::<Vec<_>>().as_slice() {
                [one] => parse_type(one),
                _ => None,
            };
            match f.name.name.as_str() {
                "list" | "set" => inner().map(|t| VarType::List(Box::new(t))),
                "map" => inner().map(|t| VarType::Map(Box::new(t))),
                "tuple" if f.args.len() == 1 => Some(VarType::List(Box::new(VarType::Any))),
                "object" if f.args.len() == 1 => Some(VarType::Map(Box::new(VarType::Any))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// One declared variable while its value is worked out.
struct Decl<'a> {
    item: Item<'a>,
    ty: VarType,
    /// Whether a value given on the command line is taken as text (a string variable) or
    /// parsed as an HCL expression (`--var max_price=40` is the number 40).
    raw: bool,
    value: Option<Value>,
    /// An error was reported for one of its values; it gets none, silently.
    failed: bool,
}

/// The variables' final values by name (`None` where there is none, already reported).
pub(super) fn variables(
    items: &[Item<'_>],
    var_args: &[VarArg],
    env: &[(String, String)],
    cx: &mut Cx,
) -> Values {
    let mut decls: BTreeMap<String, Decl<'_>> = BTreeMap::new();
    for item in items {
        let what = format!("variable `{}`", item.name);
        let attrs = cx.check_body(
            item.src,
            &item.block.body,
            &what,
            &["default", "type", "description"],
            &[],
        );
        let mut failed = false;
        let ty = match attrs.get("type") {
            None => VarType::Any,
            Some(attr) => parse_type(&attr.value).unwrap_or_else(|| {
                let mut d = item.src.error(
                    span_of(&attr.value),
                    format!("invalid `type` in {what}"),
                    "expected `string`, `number`, `bool`, `list(…)`, `map(…)` or `any`",
                );
                if let EditExpr::String(s) = &attr.value {
                    d = d.with_help(format!(
                        "write the type without quotes: type = {}",
                        s.as_str()
                    ));
                }
                cx.diags.push(d);
                VarType::Any
            }),
        };
        let _ = cx.string(item.src, &attrs, "description", &what);
        let mut value = None;
        if let Some(attr) = attrs.get("default") {
            let constant = Evaluator::constant();
            match constant.eval(item.src, &attr.value, &mut cx.diags) {
                Some(v) => value = convert(cx, item.src, span_of(&attr.value), &ty, v, item.name),
                None => failed = true,
            }
            failed |= value.is_none();
        }
        let raw = match &ty {
            VarType::String => true,
            VarType::Any => !matches!(
                value,
                Some(Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_))
            ),
            _ => false,
        };
        decls.insert(
            item.name.to_string(),
            Decl {
                item: *item,
                ty,
                raw,
                value,
                failed,
            },
        );
    }

    for (key, raw) in env {
        let Some(name) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // As Terraform does with TF_VAR_*, a variable the files do not declare is ignored:
        // the environment is shared by every configuration a user works on.
        if let Some(decl) = decls.get_mut(name) {
            let src = Source::new(key.clone(), format!("{key}={raw}"));
            assign_text(decl, &src, key.len() + 1, cx);
        }
    }

    for arg in var_args {
        match arg {
            VarArg::Var(name, raw) => {
                let src = Source::new("--var", format!("{name}={raw}"));
                match decls.get_mut(name.as_str()) {
                    Some(decl) => assign_text(decl, &src, name.len() + 1, cx),
                    None => cx.diags.push(undeclared(&src, 0..name.len(), name, &decls)),
                }
            }
            VarArg::File(path) => var_file(path, &mut decls, cx),
        }
    }

    let mut out = Values::new();
    for (name, decl) in decls {
        if decl.value.is_none() && !decl.failed {
            cx.diags.push(
                decl.item
                    .src
                    .error(
                        decl.item.name_span(),
                        format!("variable `{name}` has no value"),
                        "no default, and no value given",
                    )
                    .with_help(format!(
                        "set it with --var {name}=VALUE, --var-file or FLOTILLA_VAR_{name}"
                    )),
            );
        }
        out.insert(name, if decl.failed { None } else { decl.value });
    }
    out
}

fn undeclared(
    src: &Source,
    span: Range<usize>,
    name: &str,
    decls: &BTreeMap<String, Decl<'_>>,
) -> crate::config::Diagnostic {
    let help = suggest::did_you_mean(name, decls.keys().map(String::as_str))
        .unwrap_or_else(|| format!("declare it in a fleet file: variable \"{name}\" {{ … }}"));
    src.error(
        span,
        format!("unknown variable `{name}`"),
        format!("no variable `{name}` is declared"),
    )
    .with_help(help)
}

/// Converts `value` to the variable's type, reporting at `span` when it cannot.
fn convert(
    cx: &mut Cx,
    src: &Source,
    span: Range<usize>,
    ty: &VarType,
    value: Value,
    name: &str,
) -> Option<Value> {
    let got = funcs::describe(&value);
    match ty.convert(value) {
        Some(v) => Some(v),
        None => {
            cx.diags.push(src.error(
                span,
                format!("invalid value for variable `{name}`"),
                format!("expected {}, got {got}", ty.describe()),
            ));
            None
        }
    }
}

fn set(decl: &mut Decl<'_>, value: Option<Value>) {
    match value {
        Some(v) => decl.value = Some(v),
        None => decl.failed = true,
    }
}

/// A value given as text (`--var NAME=VALUE`, `FLOTILLA_VAR_NAME`): `src` holds `NAME=VALUE`
/// and the value starts at `at`.
fn assign_text(decl: &mut Decl<'_>, src: &Source, at: usize, cx: &mut Cx) {
    let span = at..src.text.len();
    let name = decl.item.name;
    if decl.raw {
        let text = src.text.get(at..).unwrap_or("").to_string();
        let value = convert(cx, src, span, &decl.ty, Value::String(text), name);
        set(decl, value);
        return;
    }
    // `NAME=VALUE` is itself an HCL attribute, so parsing it whole keeps the spans in `src`;
    // the name is replaced by underscores of the same length in case it is not an identifier.
    let key_len = at - 1;
    let text = format!(
        "{}={}",
        "_".repeat(key_len),
        src.text.get(at..).unwrap_or("")
    );
    let value = match hcl::edit::parser::parse_body(&text) {
        Err(err) => {
            cx.diags.push(parse_error(src, &err).with_help(format!(
                "`{name}` is not a string variable, so its value is read as an HCL expression"
            )));
            None
        }
        Ok(body) => match body.attributes().collect::<Vec<_>>().as_slice() {
            [attr] if body.blocks().next().is_none() => Evaluator::constant()
                .eval(src, &attr.value, &mut cx.diags)
                .and_then(|v| convert(cx, src, span_of(&attr.value), &decl.ty, v, name)),
            _ => {
                cx.diags.push(src.error(
                    span,
                    format!("invalid value for variable `{name}`"),
                    "expected one value",
                ));
                None
            }
        },
    };
    set(decl, value);
}

/// `--var-file FILE`: HCL attributes, or a JSON object when the name ends in `.json`.
fn var_file(path: &std::path::Path, decls: &mut BTreeMap<String, Decl<'_>>, cx: &mut Cx) {
    let name = path.display().to_string();
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            cx.diags.push(
                Source::new(name, "")
                    .error(0..0, err.to_string(), "")
                    .with_help("--var-file paths are relative to the current directory"),
            );
            return;
        }
    };
    let src = Source::new(name, text.as_str());
    if path.extension().is_some_and(|e| e == "json") {
        json_var_file(&src, decls, cx);
        return;
    }
    let body = match hcl::edit::parser::parse_body(&text) {
        Ok(body) => body,
        Err(err) => {
            cx.diags.push(parse_error(&src, &err));
            return;
        }
    };
    for block in body.blocks() {
        cx.diags.push(
            src.error(
                span_of(&block.ident),
                format!(
                    "unexpected block `{}` in a variable file",
                    block.ident.as_str()
                ),
                "expected `NAME = value`",
            )
            .with_help("a variable file only sets values: max_price = 40"),
        );
    }
    for attr in body.attributes() {
        assign_attr(attr, &src, decls, cx);
    }
}

fn assign_attr(
    attr: &Attribute,
    src: &Source,
    decls: &mut BTreeMap<String, Decl<'_>>,
    cx: &mut Cx,
) {
    let name = attr.key.as_str();
    let Some(decl) = decls.get_mut(name) else {
        let d = undeclared(src, span_of(&attr.key), name, decls);
        cx.diags.push(d);
        return;
    };
    let value = Evaluator::constant()
        .eval(src, &attr.value, &mut cx.diags)
        .and_then(|v| convert(cx, src, span_of(&attr.value), &decl.ty, v, name));
    set(decl, value);
}

fn json_var_file(src: &Source, decls: &mut BTreeMap<String, Decl<'_>>, cx: &mut Cx) {
    let json: serde_json::Value = match serde_json::from_str(&src.text) {
        Ok(v) => v,
        Err(err) => {
            let offset = offset_of(&src.text, err.line(), err.column());
            cx.diags
                .push(src.error(offset..offset, "invalid JSON", err.to_string()));
            return;
        }
    };
    let serde_json::Value::Object(map) = json else {
        cx.diags.push(src.error(
            0..0,
            "a JSON variable file must hold one object",
            "expected `{ \"NAME\": value, … }`",
        ));
        return;
    };
    for (name, value) in map {
        // serde_json keeps no positions; the key's first occurrence is close enough.
        let quoted = format!("\"{name}\"");
        let at = src.text.find(&quoted).unwrap_or(0);
        let span = at..at + quoted.len();
        let Some(decl) = decls.get_mut(&name) else {
            let d = undeclared(src, span, &name, decls);
            cx.diags.push(d);
            continue;
        };
        let value = match hcl::to_value(&value) {
            Ok(v) => convert(cx, src, span, &decl.ty, v, &name),
            Err(err) => {
                cx.diags.push(src.error(
                    span,
                    format!("invalid value for variable `{name}`"),
                    err.to_string(),
                ));
                None
            }
        };
        set(decl, value);
    }
}

/// Byte offset of a 1-based line and column (serde_json counts columns in bytes).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)).min(text.len())
}

/// One `name = value` of a `locals` block.
struct Local<'a> {
    name: &'a str,
    src: &'a Source,
    attr: &'a Attribute,
}

/// Every local's value, evaluated in dependency order, with the variables in `cx.ev`.
pub(super) fn locals(items: &[Item<'_>], cx: &mut Cx) -> Values {
    let mut locals: Vec<Local<'_>> = Vec::new();
    for item in items {
        for block in item.block.body.blocks() {
            cx.diags.push(item.src.error(
                span_of(&block.ident),
                format!("unexpected block `{}` in `locals`", block.ident.as_str()),
                "expected `NAME = value`",
            ));
        }
        for attr in item.block.body.attributes() {
            let name = attr.key.as_str();
            if let Some(first) = locals.iter().find(|l| l.name == name) {
                let at = first.src.origin(span_of(&first.attr.key).start);
                cx.diags.push(
                    item.src
                        .error(
                            span_of(&attr.key),
                            format!("duplicate local `{name}`"),
                            format!("local `{name}` is already defined at {at}"),
                        )
                        .with_help("rename or remove one of them"),
                );
                continue;
            }
            locals.push(Local {
                name,
                src: item.src,
                attr,
            });
        }
    }

    // Every local is known (without a value) while scanning, so references resolve.
    let mut values: Values = locals.iter().map(|l| (l.name.to_string(), None)).collect();
    cx.ev.locals = Some(values.clone());
    let index: BTreeMap<&str, usize> = locals
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name, i))
        .collect();
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(locals.len());
    let mut broken = vec![false; locals.len()];
    for (i, local) in locals.iter().enumerate() {
        let scan = cx.ev.scan(local.src, &local.attr.value);
        if !scan.problems.is_empty() {
            cx.diags.extend(scan.problems);
            broken[i] = true;
        }
        broken[i] |= scan.blocked;
        let mut deps: Vec<usize> = scan
            .locals
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .collect();
        deps.sort_unstable();
        deps.dedup();
        edges.push(deps);
    }

    for component in strongly_connected(&edges) {
        let cyclic = component.len() > 1 || edges[component[0]].contains(&component[0]);
        if cyclic {
            let start = *component.iter().min().unwrap_or(&component[0]);
            let path = cycle_path(start, &component, &edges);
            let names: Vec<String> = path
                .iter()
                .map(|&i| format!("local.{}", locals[i].name))
                .collect();
            let local = &locals[start];
            cx.diags.push(
                local
                    .src
                    .error(
                        span_of(&local.attr.key),
                        format!("cycle between locals: {}", names.join(" -> ")),
                        format!("`local.{}` depends on itself", local.name),
                    )
                    .with_help("a local cannot use itself, directly or through other locals"),
            );
            for &i in &component {
                broken[i] = true;
            }
            continue;
        }
        // Components come out dependencies first, so every dependency is settled by now.
        let i = component[0];
        if broken[i]
            || edges[i]
                .iter()
                .any(|&d| values.get(locals[d].name).is_none_or(Option::is_none))
        {
            continue;
        }
        cx.ev.locals = Some(values.clone());
        let local = &locals[i];
        let value = cx
            .ev
            .eval_checked(local.src, &local.attr.value, &mut cx.diags);
        values.insert(local.name.to_string(), value);
    }
    values
}

/// Tarjan's strongly connected components of a graph given as adjacency lists (edges from a
/// local to the locals it uses); each component comes after every component it reaches.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.edges[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort_unstable();
            s.out.push(component);
        }
    }
    let n = edges.len();
    let mut s = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A path from `start` back to itself within `component`: `[a, b, a]`.
fn cycle_path(start: usize, component: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    // Breadth-first from `start`, so the path named is a shortest cycle.
    let mut previous: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &edges[v] {
            if !component.contains(&w) {
                continue;
            }
            if w == start {
                let mut chain = vec![v];
                let mut at = v;
                while at != start {
                    at = previous.get(&at).copied().unwrap_or(start);
                    chain.push(at);
                }
                chain.reverse();
                chain.push(start);
                return chain;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = previous.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}
