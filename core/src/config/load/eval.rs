//! Expressions: first checked for what they refer to (so an unknown `var.x` is reported at
//! `var.x`, with "did you mean", before hcl-rs sees it), then evaluated with hcl-rs.
//!
//! hcl-rs reports evaluation errors without spans, only with the (parent) expression that
//! failed; [`locate`] finds that expression in the hcl-edit tree again to point at it.

use super::{Source, funcs, suggest};
use crate::config::Diagnostic;
use hcl::edit::Span;
use hcl::edit::expr as ee;
use hcl::edit::template as et;
use hcl::eval::{Context, Evaluate};
use hcl::expr::{
    BinaryOperator, FuncCall, ObjectKey, Operation, TemplateExpr, TraversalOperator, UnaryOperator,
};
use hcl::template::{Element, Template};
use hcl::{Expression, Value};
use std::collections::BTreeMap;
use std::ops::Range;

/// Variables or locals by name. `None` is one without a value: its error is already reported,
/// so expressions that use it are skipped rather than reported again.
pub(super) type Values = BTreeMap<String, Option<Value>>;

/// What expressions may refer to, and the evaluation itself.
#[derive(Debug, Default)]
pub(super) struct Evaluator {
    /// `var.NAME`; `None` where variables may not be used (a variable's default, a value in a
    /// variable file).
    pub(super) vars: Option<Values>,
    /// `local.NAME`; `None` where locals may not be used.
    pub(super) locals: Option<Values>,
}

/// What [`Evaluator::scan`] found in one expression.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// References to unknown names and functions, and references not allowed here.
    pub(super) problems: Vec<Diagnostic>,
    /// The locals it uses (names), for ordering the evaluation of locals.
    pub(super) locals: Vec<String>,
    /// Whether it uses a variable that has no value.
    pub(super) blocked: bool,
}

/// The byte span of an hcl-edit node, or an empty span at 0 (only for synthesized nodes).
pub(super) fn span_of<T: Span>(node: &T) -> Range<usize> {
    node.span().unwrap_or(0..0)
}

impl Evaluator {
    /// An evaluator for constants: functions, but no variables or locals.
    pub(super) fn constant() -> Evaluator {
        Evaluator::default()
    }

    /// Checks what `expr` refers to.
    pub(super) fn scan(&self, src: &Source, expr: &ee::Expression) -> Scan {
        let mut walker = Walker {
            ev: self,
            src,
            scope: Vec::new(),
            scan: Scan::default(),
        };
        walker.expr(expr);
        walker.scan
    }

    /// Checks and evaluates `expr`; problems go to `diags`, and `None` means there were some
    /// (or it uses a value that has none).
    pub(super) fn eval(
        &self,
        src: &Source,
        expr: &ee::Expression,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        let scan = self.scan(src, expr);
        if !scan.problems.is_empty() {
            diags.extend(scan.problems);
            return None;
        }
        let valueless_local = |name: &String| {
            self.locals
                .as_ref()
                .is_some_and(|l| l.get(name).is_some_and(Option::is_none))
        };
        if scan.blocked || scan.locals.iter().any(valueless_local) {
            return None;
        }
        self.eval_checked(src, expr, diags)
    }

    /// Evaluates an expression [`Evaluator::scan`] found no problem in.
    pub(super) fn eval_checked(
        &self,
        src: &Source,
        expr: &ee::Expression,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        let lowered = lower(expr);
        let ctx = self.context();
        // The operators that panic in hcl-rs are rewritten (see `funcs`), but templates with
        // directives are left to hcl-rs; a panic there must still not take the binary down.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lowered.evaluate(&ctx)));
        match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                let span = err
                    .expr()
                    .and_then(|target| locate(expr, target))
                    .and_then(|parent| refine(parent, err.kind()))
                    .unwrap_or_else(|| span_of(expr));
                diags.push(src.error(span, eval_message(err.kind()), "cannot be evaluated"));
                None
            }
            Err(_) => {
                diags.push(src.error(
                    span_of(expr),
                    "this expression cannot be evaluated",
                    "an arithmetic error (overflow or division by zero)",
                ));
                None
            }
        }
    }

    fn context(&self) -> Context<'static> {
        let mut ctx = Context::new();
        funcs::declare(&mut ctx);
        for (root, values) in [("var", &self.vars), ("local", &self.locals)] {
            if let Some(values) = values {
                let object: hcl::Map<String, Value> = values
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect();
                ctx.declare_var(root, Value::Object(object));
            }
        }
        ctx
    }
}

fn eval_message(kind: &hcl::eval::ErrorKind) -> String {
    use hcl::eval::ErrorKind;
    match kind {
        ErrorKind::FuncCall(name, msg) if funcs::is_internal(name.name.as_str()) => msg.clone(),
        ErrorKind::FuncCall(name, msg) => format!("in `{name}`: {msg}"),
        ErrorKind::Unexpected(value, expected) => {
            format!("expected {expected}, got {}", funcs::describe(value))
        }
        ErrorKind::Index(i) => format!("index {i} is out of range"),
        ErrorKind::NoSuchKey(key) => format!("no key `{key}` in the map"),
        other => other.to_string(),
    }
}

/// The hcl-rs expression for an hcl-edit one, with arithmetic operators and plain string
/// templates rewritten into calls of the internal functions of [`funcs`].
fn lower(expr: &ee::Expression) -> Expression {
    let mut e = Expression::from(expr.clone());
    rewrite(&mut e);
    e
}

fn call(name: &str, args: Vec<Expression>) -> Expression {
    let mut builder = FuncCall::builder(name);
    for arg in args {
        builder = builder.arg(arg);
    }
    Expression::FuncCall(Box::new(builder.build()))
}

fn take(e: &mut Expression) -> Expression {
    std::mem::replace(e, Expression::Null)
}

fn rewrite(e: &mut Expression) {
    let replacement = match e {
        Expression::Array(items) => {
            items.iter_mut().for_each(rewrite);
            None
        }
        Expression::Object(object) => {
            let old = std::mem::take(object);
            *object = old
                .into_iter()
                .map(|(mut k, mut v)| {
                    if let ObjectKey::Expression(ke) = &mut k {
                        rewrite(ke);
                    }
                    rewrite(&mut v);
                    (k, v)
                })
                .collect();
            None
        }
        Expression::TemplateExpr(t) => template_call(t),
        Expression::Traversal(t) => {
            rewrite(&mut t.expr);
            for op in &mut t.operators {
                if let TraversalOperator::Index(i) = op {
                    rewrite(i);
                }
            }
            None
        }
        Expression::FuncCall(f) => {
            f.args.iter_mut().for_each(rewrite);
            None
        }
        Expression::Parenthesis(inner) => {
            rewrite(inner);
            None
        }
        Expression::Conditional(c) => {
            rewrite(&mut c.cond_expr);
            rewrite(&mut c.true_expr);
            rewrite(&mut c.false_expr);
            None
        }
        Expression::ForExpr(f) => {
            rewrite(&mut f.collection_expr);
            if let Some(k) = &mut f.key_expr {
                rewrite(k);
            }
            rewrite(&mut f.value_expr);
            if let Some(c) = &mut f.cond_expr {
                rewrite(c);
            }
            None
        }
        Expression::Operation(op) => match op.as_mut() {
            Operation::Unary(u) => {
                rewrite(&mut u.expr);
                (u.operator == UnaryOperator::Neg)
                    .then(|| call(funcs::NEG, vec![take(&mut u.expr)]))
            }
            Operation::Binary(b) => {
                rewrite(&mut b.lhs_expr);
                rewrite(&mut b.rhs_expr);
                let name = match b.operator {
                    BinaryOperator::Plus => Some(funcs::ADD),
                    BinaryOperator::Minus => Some(funcs::SUB),
                    BinaryOperator::Mul => Some(funcs::MUL),
                    BinaryOperator::Div => Some(funcs::DIV),
                    BinaryOperator::Mod => Some(funcs::MOD),
                    _ => None,
                };
                name.map(|n| call(n, vec![take(&mut b.lhs_expr), take(&mut b.rhs_expr)]))
            }
        },
        _ => None,
    };
    if let Some(r) = replacement {
        *e = r;
    }
}

/// `"a${x}b"` as `__template("a", x, "b")`; `"${x}"` as `x` itself (HCL keeps the value of a
/// lone interpolation unconverted). `None` for templates with directives, left to hcl-rs.
fn template_call(t: &TemplateExpr) -> Option<Expression> {
    enum Part {
        Literal(String),
        Interpolation(Expression, bool, bool),
    }
    let TemplateExpr::QuotedString(text) = t else {
        return None;
    };
    let template: Template = text.parse().ok()?;
    let mut parts = Vec::new();
    for element in template.elements() {
        match element {
            Element::Literal(s) => parts.push(Part::Literal(s.clone())),
            Element::Interpolation(i) => parts.push(Part::Interpolation(
                i.expr.clone(),
                i.strip.strip_start(),
                i.strip.strip_end(),
            )),
            Element::Directive(_) => return None,
        }
    }
    for i in 0..parts.len() {
        let (before, after) = match &parts[i] {
            Part::Interpolation(_, before, after) => (*before, *after),
            Part::Literal(_) => continue,
        };
        if before
            && i > 0
            && let Part::Literal(s) = &mut parts[i - 1]
        {
            *s = s.trim_end().to_string();
        }
        if after
            && i + 1 < parts.len()
            && let Part::Literal(s) = &mut parts[i + 1]
        {
            *s = s.trim_start().to_string();
        }
    }
    let mut args: Vec<Expression> = parts
        .into_iter()
        .filter(|p| !matches!(p, Part::Literal(s) if s.is_empty()))
        .map(|p| match p {
            Part::Literal(s) => Expression::String(s),
            Part::Interpolation(mut e, _, _) => {
                rewrite(&mut e);
                e
            }
        })
        .collect();
    if args.len() == 1 && !matches!(args[0], Expression::String(_)) {
        return args.pop();
    }
    Some(call(funcs::TEMPLATE, args))
}

/// The sub-expressions of an hcl-edit expression, template interpolations included.
fn children(e: &ee::Expression) -> Vec<&ee::Expression> {
    let mut out = Vec::new();
    match e {
        ee::Expression::Array(a) => out.extend(a.iter()),
        ee::Expression::Object(o) => {
            for (k, v) in o.iter() {
                if let ee::ObjectKey::Expression(ke) = k {
                    out.push(ke);
                }
                out.push(v.expr());
            }
        }
        ee::Expression::StringTemplate(t) => template_children(t, &mut out),
        ee::Expression::HeredocTemplate(h) => template_children(&h.template, &mut out),
        ee::Expression::Parenthesis(p) => out.push(p.inner()),
        ee::Expression::Conditional(c) => out.extend([&c.cond_expr, &c.true_expr, &c.false_expr]),
        ee::Expression::FuncCall(f) => out.extend(f.args.iter()),
        ee::Expression::Traversal(t) => {
            out.push(&t.expr);
            for op in &t.operators {
                if let ee::TraversalOperator::Index(i) = op.value() {
                    out.push(i);
                }
            }
        }
        ee::Expression::UnaryOp(u) => out.push(&u.expr),
        ee::Expression::BinaryOp(b) => out.extend([&b.lhs_expr, &b.rhs_expr]),
        ee::Expression::ForExpr(f) => {
            out.push(&f.intro.collection_expr);
            out.extend(f.key_expr.as_ref());
            out.push(&f.value_expr);
            out.extend(f.cond.as_ref().map(|c| &c.expr));
        }
        _ => {}
    }
    out
}

fn template_children<'a>(t: &'a et::Template, out: &mut Vec<&'a ee::Expression>) {
    for element in t.iter() {
        match element {
            et::Element::Literal(_) => {}
            et::Element::Interpolation(i) => out.push(&i.expr),
            et::Element::Directive(d) => match d.as_ref() {
                et::Directive::If(d) => {
                    out.push(&d.if_expr.cond_expr);
                    template_children(&d.if_expr.template, out);
                    if let Some(e) = &d.else_expr {
                        template_children(&e.template, out);
                    }
                }
                et::Directive::For(d) => {
                    out.push(&d.for_expr.collection_expr);
                    template_children(&d.for_expr.template, out);
                }
            },
        }
    }
}

/// The sub-expression of `root` that lowers to `target`, first in source order.
fn locate<'a>(root: &'a ee::Expression, target: &Expression) -> Option<&'a ee::Expression> {
    if lower(root) == *target {
        return Some(root);
    }
    children(root).into_iter().find_map(|c| locate(c, target))
}

/// hcl-rs names the expression around the one that failed; for a failed call or operator,
/// the first such call or operator within it is the better place to point at.
fn refine(parent: &ee::Expression, kind: &hcl::eval::ErrorKind) -> Option<Range<usize>> {
    let hcl::eval::ErrorKind::FuncCall(name, _) = kind else {
        return parent.span();
    };
    let name = name.name.as_str();
    let operator = match name {
        funcs::ADD => Some(BinaryOperator::Plus),
        funcs::SUB => Some(BinaryOperator::Minus),
        funcs::MUL => Some(BinaryOperator::Mul),
        funcs::DIV => Some(BinaryOperator::Div),
        funcs::MOD => Some(BinaryOperator::Mod),
        _ => None,
    };
    fn find<'a>(
        e: &'a ee::Expression,
        matches: &dyn Fn(&ee::Expression) -> bool,
    ) -> Option<&'a ee::Expression> {
        if matches(e) {
            return Some(e);
        }
        children(e).into_iter().find_map(|c| find(c, matches))
    }
    let matches = |e: &ee::Expression| match e {
        ee::Expression::FuncCall(f) => f.name.name.as_str() == name,
        ee::Expression::BinaryOp(b) => Some(*b.operator.value()) == operator,
        ee::Expression::UnaryOp(u) => {
            name == funcs::NEG && *u.operator.value() == UnaryOperator::Neg
        }
        ee::Expression::StringTemplate(_) => name == funcs::TEMPLATE,
        _ => false,
    };
    find(parent, &matches).map_or_else(|| parent.span(), Span::span)
}

/// The reference check behind [`Evaluator::scan`].
struct Walker<'a> {
    ev: &'a Evaluator,
    src: &'a Source,
    /// Names bound by enclosing `for` expressions and directives.
    scope: Vec<String>,
    scan: Scan,
}

impl Walker<'_> {
    fn expr(&mut self, e: &ee::Expression) {
        match e {
            ee::Expression::Variable(v) => self.root(v.as_str(), span_of(v), None),
            ee::Expression::Traversal(t) => {
                if let ee::Expression::Variable(v) = &t.expr {
                    let attr = t.operators.first().and_then(|op| match op.value() {
                        ee::TraversalOperator::GetAttr(name) => {
                            Some((name.as_str().to_string(), span_of(op)))
                        }
                        _ => None,
                    });
                    self.root(v.as_str(), span_of(v), attr);
                } else {
                    self.expr(&t.expr);
                }
                for op in &t.operators {
                    if let ee::TraversalOperator::Index(i) = op.value() {
                        self.expr(i);
                    }
                }
            }
            ee::Expression::FuncCall(f) => {
                let name = f.name.name.as_str();
                if f.name.is_namespaced() || !funcs::is_public(name) {
                    let full: Vec<&str> = f
                        .name
                        .namespace
                        .iter()
                        .chain([&f.name.name])
                        .map(|i| i.as_str())
                        .collect();
                    let full = full.join("::");
                    let help = suggest::did_you_mean(name, funcs::names()).unwrap_or_else(|| {
                        format!(
                            "the functions are {}",
                            funcs::names().collect::<Vec<_>>().join(", ")
                        )
                    });
                    let d = self
                        .src
                        .error(
                            span_of(&f.name.name),
                            format!("unknown function `{full}`"),
                            "not a function flotilla knows",
                        )
                        .with_help(help);
                    self.scan.problems.push(d);
                }
                for arg in f.args.iter() {
                    self.expr(arg);
                }
            }
            ee::Expression::ForExpr(f) => {
                self.expr(&f.intro.collection_expr);
                let bound = self.scope.len();
                if let Some(k) = &f.intro.key_var {
                    self.scope.push(k.as_str().to_string());
                }
                self.scope.push(f.intro.value_var.as_str().to_string());
                if let Some(k) = &f.key_expr {
                    self.expr(k);
                }
                self.expr(&f.value_expr);
                if let Some(c) = &f.cond {
                    self.expr(&c.expr);
                }
                self.scope.truncate(bound);
            }
            ee::Expression::StringTemplate(t) => self.template(t),
            ee::Expression::HeredocTemplate(h) => self.template(&h.template),
            other => {
                for c in children(other) {
                    self.expr(c);
                }
            }
        }
    }

    fn template(&mut self, t: &et::Template) {
        for element in t.iter() {
            match element {
                et::Element::Literal(_) => {}
                et::Element::Interpolation(i) => self.expr(&i.expr),
                et::Element::Directive(d) => match d.as_ref() {
                    et::Directive::If(d) => {
                        self.expr(&d.if_expr.cond_expr);
                        self.template(&d.if_expr.template);
                        if let Some(e) = &d.else_expr {
                            self.template(&e.template);
                        }
                    }
                    et::Directive::For(d) => {
                        self.expr(&d.for_expr.collection_expr);
                        let bound = self.scope.len();
                        if let Some(k) = &d.for_expr.key_var {
                            self.scope.push(k.as_str().to_string());
                        }
                        self.scope.push(d.for_expr.value_var.as_str().to_string());
                        self.template(&d.for_expr.template);
                        self.scope.truncate(bound);
                    }
                },
            }
        }
    }

    /// A name at the root of an expression (`var`, `local`, a `for` variable, …), with the
    /// attribute that follows it, if any.
    fn root(&mut self, name: &str, span: Range<usize>, attr: Option<(String, Range<usize>)>) {
        if self.scope.iter().any(|s| s == name) {
            return;
        }
        let whole = attr
            .as_ref()
            .map_or(span.clone(), |(_, s)| span.start..s.end);
        match name {
            "var" | "local" => {
                let (values, what, declare) = if name == "var" {
                    (
                        &self.ev.vars,
                        "variable",
                        "declare it: variable \"NAME\" { default = … }",
                    )
                } else {
                    (
                        &self.ev.locals,
                        "local",
                        "define it in a `locals { … }` block",
                    )
                };
                let Some(values) = values else {
                    let label = if name == "var" {
                        "expected a constant: a variable's default and a value given for it cannot use variables"
                    } else {
                        "expected a constant: locals cannot be used here"
                    };
                    let shown = attr
                        .as_ref()
                        .map_or(name.to_string(), |(a, _)| format!("{name}.{a}"));
                    self.problem(whole, format!("`{shown}` cannot be used here"), label, None);
                    return;
                };
                let Some((attr, _)) = attr else {
                    self.problem(
                        whole,
                        format!("`{name}` must be followed by a {what} name"),
                        &format!("expected `{name}.NAME`"),
                        None,
                    );
                    return;
                };
                match values.get(&attr) {
                    Some(Some(_)) => {}
                    // A local without a value may just not be evaluated yet; callers decide.
                    Some(None) if name == "local" => {}
                    Some(None) => self.scan.blocked = true,
                    None => {
                        let help = suggest::closest(&attr, values.keys().map(String::as_str))
                            .map(|c| format!("did you mean `{name}.{c}`?"))
                            .unwrap_or_else(|| declare.replace("NAME", &attr));
                        self.problem(
                            whole,
                            format!("unknown {what} `{name}.{attr}`"),
                            &format!("no {what} `{attr}` is declared"),
                            Some(help),
                        );
                    }
                }
                if name == "local" && values.contains_key(&attr) {
                    self.scan.locals.push(attr);
                }
            }
            "fleet" | "volume" | "gateway" => {
                let shown = attr
                    .as_ref()
                    .map_or(name.to_string(), |(a, _)| format!("{name}.{a}"));
                self.problem(
                    whole,
                    format!("`{shown}` cannot be used here"),
                    "references to fleets, volumes and gateways belong in `volumes`, `targets` and output values",
                    None,
                );
            }
            _ => {
                let in_vars = self.ev.vars.as_ref().is_some_and(|v| v.contains_key(name));
                let in_locals = self
                    .ev
                    .locals
                    .as_ref()
                    .is_some_and(|v| v.contains_key(name));
                let help = if in_vars {
                    format!("did you mean `var.{name}`?")
                } else if in_locals {
                    format!("did you mean `local.{name}`?")
                } else {
                    let mut names: Vec<&str> = self.scope.iter().map(String::as_str).collect();
                    if self.ev.vars.is_some() {
                        names.push("var");
                    }
                    if self.ev.locals.is_some() {
                        names.push("local");
                    }
                    suggest::did_you_mean(name, names).unwrap_or_else(|| {
                        format!("to write the text `{name}`, quote it: \"{name}\"")
                    })
                };
                let label = if self.ev.vars.is_some() {
                    "expected a value, `var.NAME` or `local.NAME`"
                } else {
                    "expected a value"
                };
                self.problem(span, format!("unknown name `{name}`"), label, Some(help));
            }
        }
    }

    fn problem(&mut self, span: Range<usize>, message: String, label: &str, help: Option<String>) {
        let mut d = self.src.error(span, message, label);
        d.help = help;
        self.scan.problems.push(d);
    }
}
