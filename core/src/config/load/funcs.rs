//! The functions fleet files may call: the common Terraform ones, so that expressions written
//! for Terraform read the same here, plus the arithmetic behind `+ - * / %` and templates.
//!
//! hcl-rs's own arithmetic panics on division by zero and on integer overflow, and a fleet file
//! must never crash the binary, so [`super::eval`] rewrites every arithmetic operator and every
//! plain string template into a call to one of the `__` functions below, which compute in `f64`
//! and return an error instead. Users cannot call those (their names are not in [`NAMES`]).

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

type Func = fn(FuncArgs) -> Result<Value, String>;

/// The functions a fleet file may call, by name.
const PUBLIC: &[(&str, Func)] = &[
    ("abs", abs),
    ("ceil", ceil),
    ("coalesce", coalesce),
    ("concat", concat),
    ("contains", contains),
    ("element", element),
    ("floor", floor),
    ("format", format),
    ("join", join),
    ("keys", keys),
    ("length", length),
    ("lookup", lookup),
    ("lower", lower),
    ("max", max),
    ("merge", merge),
    ("min", min),
    ("range", range),
    ("replace", replace),
    ("split", split),
    ("tonumber", tonumber),
    ("tostring", tostring),
    ("trimspace", trimspace),
    ("upper", upper),
    ("values", values),
];

/// Internal functions that operators and templates are rewritten into.
const INTERNAL: &[(&str, Func)] = &[
    (ADD, op_add),
    (SUB, op_sub),
    (MUL, op_mul),
    (DIV, op_div),
    (MOD, op_mod),
    (NEG, op_neg),
    (TEMPLATE, template),
];

pub(super) const ADD: &str = "__add";
pub(super) const SUB: &str = "__sub";
pub(super) const MUL: &str = "__mul";
pub(super) const DIV: &str = "__div";
pub(super) const MOD: &str = "__mod";
pub(super) const NEG: &str = "__neg";
pub(super) const TEMPLATE: &str = "__template";

/// The names of the functions a fleet file may call, sorted.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    PUBLIC.iter().map(|(name, _)| *name)
}

/// Whether `name` is a function a fleet file may call.
pub(super) fn is_public(name: &str) -> bool {
    PUBLIC.iter().any(|(n, _)| *n == name)
}

/// Whether `name` is one of the internal operator functions (their errors read as the
/// operator's, not as a function call's).
pub(super) fn is_internal(name: &str) -> bool {
    INTERNAL.iter().any(|(n, _)| *n == name)
}

/// Declares every function in `ctx`. Each takes any arguments and checks them itself, so its
/// messages can say what was expected in the fleet file's terms.
pub(super) fn declare(ctx: &mut Context<'_>) {
    for (name, func) in PUBLIC.iter().chain(INTERNAL) {
        ctx.declare_func(
            *name,
            FuncDef::builder()
                .variadic_param(ParamType::Any)
                .build(*func),
        );
    }
}

fn arity(args: &FuncArgs, min: usize, max: usize) -> Result<(), String> {
    let n = args.len();
    if n < min || n > max {
        let expected = match (min, max) {
            (a, b) if a == b => format!("{a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        let s = if expected == "1" { "" } else { "s" };
        return Err(format!("expected {expected} argument{s}, got {n}"));
    }
    Ok(())
}

/// A short description of a value for messages: `string "abc"`, `number 3`, `list`.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a map".to_string(),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        // Terraform converts numeric strings where a number is expected.
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn arg_number(value: &Value, what: &str) -> Result<f64, String> {
    number(value).ok_or_else(|| format!("{what} must be a number, got {}", describe(value)))
}

fn arg_str<'a>(value: &'a Value, what: &str) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{what} must be a string, got {}", describe(value)))
}

fn arg_list<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{what} must be a list, got {}", describe(value)))
}

fn arg_map<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be a map, got {}", describe(value)))
}

fn num_value(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "the result is not a finite number".to_string())
}

/// A string form of a primitive, as templates and `tostring` convert.
pub(super) fn to_string_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn binary(args: &FuncArgs, op: &str) -> Result<(f64, f64), String> {
    arity(args, 2, 2)?;
    match (number(&args[0]), number(&args[1])) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!(
            "operator `{op}` needs two numbers, got {} and {}",
            describe(&args[0]),
            describe(&args[1])
        )),
    }
}

fn op_add(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = binary(&args, "+")?;
    num_value(a + b)
}

fn op_sub(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = binary(&args, "-")?;
    num_value(a - b)
}

fn op_mul(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = binary(&args, "*")?;
    num_value(a * b)
}

fn op_div(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = binary(&args, "/")?;
    if b == 0.0 {
        return Err("division by zero".to_string());
    }
    num_value(a / b)
}

fn op_mod(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = binary(&args, "%")?;
    if b == 0.0 {
        return Err("modulo by zero".to_string());
    }
    num_value(a % b)
}

fn op_neg(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    let a = number(&args[0])
        .ok_or_else(|| format!("operator `-` needs a number, got {}", describe(&args[0])))?;
    num_value(-a)
}

fn template(args: FuncArgs) -> Result<Value, String> {
    let mut out = String::new();
    for value in args.iter() {
        match to_string_value(value) {
            Some(s) => out.push_str(&s),
            None => {
                return Err(format!(
                    "cannot put {} into a string template; only strings, numbers and bools",
                    describe(value)
                ));
            }
        }
    }
    Ok(Value::String(out))
}

fn numbers(args: &FuncArgs, name: &str) -> Result<Vec<f64>, String> {
    arity(args, 1, usize::MAX)?;
    args.iter()
        .enumerate()
        .map(|(i, v)| arg_number(v, &format!("argument {} of `{name}`", i + 1)))
        .collect()
}

fn min(args: FuncArgs) -> Result<Value, String> {
    let ns = numbers(&args, "min")?;
    num_value(ns.into_iter().fold(f64::INFINITY, f64::min))
}

fn max(args: FuncArgs) -> Result<Value, String> {
    let ns = numbers(&args, "max")?;
    num_value(ns.into_iter().fold(f64::NEG_INFINITY, f64::max))
}

fn abs(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    num_value(arg_number(&args[0], "the argument")?.abs())
}

fn ceil(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    num_value(arg_number(&args[0], "the argument")?.ceil())
}

fn floor(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    num_value(arg_number(&args[0], "the argument")?.floor())
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    Ok(Value::String(
        arg_str(&args[0], "the argument")?.to_lowercase(),
    ))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    Ok(Value::String(
        arg_str(&args[0], "the argument")?.to_uppercase(),
    ))
}

fn trimspace(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    Ok(Value::String(
        arg_str(&args[0], "the argument")?.trim().to_string(),
    ))
}

/// `format(spec, args...)`: `%s`, `%d`, `%f`, `%v`, `%q` and `%%`, as Terraform's common uses.
fn format(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, usize::MAX)?;
    let spec = arg_str(&args[0], "the format")?;
    let mut rest = args.iter().skip(1);
    let mut out = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("the format ends with a lone `%`")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("not enough arguments for `%{verb}` in the format"))?;
        match verb {
            's' | 'v' => out.push_str(&to_string_value(value).ok_or_else(|| {
                format!(
                    "`%{verb}` needs a string, number or bool, got {}",
                    describe(value)
                )
            })?),
            'q' => out.push_str(&format!(
                "{:?}",
                to_string_value(value)
                    .ok_or_else(|| { format!("`%q` needs a string, got {}", describe(value)) })?
            )),
            'd' => {
                let n = arg_number(value, "the argument of `%d`")?;
                if n.fract() != 0.0 {
                    return Err(format!("`%d` needs a whole number, got {n}"));
                }
                out.push_str(&format!("{n:.0}"));
            }
            'f' => out.push_str(&format!(
                "{:.6}",
                arg_number(value, "the argument of `%f`")?
            )),
            other => {
                return Err(format!(
                    "unsupported verb `%{other}`; use %s, %d, %f, %v or %q"
                ));
            }
        }
    }
    if rest.next().is_some() {
        return Err("too many arguments for the format".to_string());
    }
    Ok(Value::String(out))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 2, usize::MAX)?;
    let sep = arg_str(&args[0], "the separator")?;
    let mut parts = Vec::new();
    for list in args.iter().skip(1) {
        for v in arg_list(list, "the list")? {
            parts.push(
                to_string_value(v).ok_or_else(|| {
                    format!("`join` needs a list of strings, found {}", describe(v))
                })?,
            );
        }
    }
    Ok(Value::String(parts.join(sep)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 2, 2)?;
    let sep = arg_str(&args[0], "the separator")?;
    let s = arg_str(&args[1], "the string")?;
    if sep.is_empty() {
        return Err("the separator must not be empty".to_string());
    }
    Ok(Value::Array(
        s.split(sep).map(|p| Value::String(p.to_string())).collect(),
    ))
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, usize::MAX)?;
    let mut out = Vec::new();
    for list in args.iter() {
        out.extend(arg_list(list, "each argument of `concat`")?.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    let n = match &args[0] {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        Value::String(s) => s.chars().count(),
        other => {
            return Err(format!(
                "needs a list, map or string, got {}",
                describe(other)
            ));
        }
    };
    Ok(Value::from(n as u64))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 2, 2)?;
    let list = arg_list(&args[0], "the first argument")?;
    Ok(Value::Bool(list.contains(&args[1])))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for map in args.iter() {
        if map.is_null() {
            continue;
        }
        for (k, v) in arg_map(map, "each argument of `merge`")? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    let mut keys: Vec<&String> = arg_map(&args[0], "the argument")?.keys().collect();
    keys.sort();
    Ok(Value::Array(
        keys.into_iter().map(|k| Value::String(k.clone())).collect(),
    ))
}

fn values(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    let mut entries: Vec<(&String, &Value)> = arg_map(&args[0], "the argument")?.iter().collect();
    // Terraform returns the values in the lexical order of their keys, as `keys` does.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Ok(Value::Array(
        entries.into_iter().map(|(_, v)| v.clone()).collect(),
    ))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 2, 3)?;
    let map = arg_map(&args[0], "the first argument")?;
    let key = arg_str(&args[1], "the key")?;
    match (map.get(key), args.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!("no key `{key}` in the map, and no default given")),
    }
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, usize::MAX)?;
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "every argument is null or an empty string".to_string())
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    to_string_value(&args[0])
        .map(Value::String)
        .ok_or_else(|| format!("cannot convert {} to a string", describe(&args[0])))
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 1)?;
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    let n = number(&args[0])
        .ok_or_else(|| format!("cannot convert {} to a number", describe(&args[0])))?;
    num_value(n)
}

/// The most elements `range` builds, so that a typo cannot exhaust memory.
const RANGE_LIMIT: usize = 1_000_000;

fn range(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 1, 3)?;
    let ns: Vec<f64> = args
        .iter()
        .map(|v| arg_number(v, "each argument of `range`"))
        .collect::<Result<_, _>>()?;
    let (start, limit, step) = match ns.as_slice() {
        [limit] => (0.0, *limit, 1.0),
        [start, limit] => (*start, *limit, if limit >= start { 1.0 } else { -1.0 }),
        [start, limit, step] => (*start, *limit, *step),
        _ => return Err("expected 1 to 3 arguments".to_string()),
    };
    if step == 0.0 {
        return Err("the step must not be zero".to_string());
    }
    if (step > 0.0 && limit < start) || (step < 0.0 && limit > start) {
        return Err("the step goes away from the limit".to_string());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < limit) || (step < 0.0 && x > limit) {
        if out.len() >= RANGE_LIMIT {
            return Err(format!(
                "the range would have more than {RANGE_LIMIT} elements"
            ));
        }
        out.push(num_value(x)?);
        x += step;
    }
    Ok(Value::Array(out))
}

fn element(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 2, 2)?;
    let list = arg_list(&args[0], "the first argument")?;
    let index = arg_number(&args[1], "the index")?;
    if list.is_empty() {
        return Err("cannot take an element of an empty list".to_string());
    }
    if index < 0.0 || index.fract() != 0.0 {
        return Err(format!(
            "the index must be a whole number of at least 0, got {index}"
        ));
    }
    // Terraform wraps around: element(["a", "b"], 3) is "b".
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (index as usize) % list.len();
    Ok(list[i].clone())
}

fn replace(args: FuncArgs) -> Result<Value, String> {
    arity(&args, 3, 3)?;
    let s = arg_str(&args[0], "the string")?;
    let from = arg_str(&args[1], "the substring")?;
    let to = arg_str(&args[2], "the replacement")?;
    if from.is_empty() {
        return Err("the substring to replace must not be empty".to_string());
    }
    Ok(Value::String(s.replace(from, to)))
}
