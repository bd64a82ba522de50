//! A small interpreter of the Amazon States Language: runs `template.yaml`'s state machine
//! definition in tests, with its Lambda tasks calling the real function binaries.
//!
//! No Step Functions emulator is available without Docker, and moto does not execute
//! definitions. This reproduces the part of the language the template uses, following the
//! specification (states-language.net) and the Step Functions developer guide:
//! - states: `Task` (`arn:aws:states:::lambda:invoke` with `Parameters.FunctionName` and
//!   `Parameters.Payload`; the result is `{"Payload": …, "StatusCode": 200}`; a function error
//!   becomes the task's error named by the function's `errorType`, its cause the error message),
//!   `Pass`, `Choice` (`Variable` with `StringEquals`, `BooleanEquals`, `NumericEquals`,
//!   `IsPresent`; `Default`), `Map` (inline or distributed: `ItemsPath`,
//!   `MaxConcurrency` / `MaxConcurrencyPath`, `ItemProcessor` or `Iterator`,
//!   `ToleratedFailurePercentage`), `Succeed`, `Fail`;
//! - the input and output processing order: `InputPath`, `Parameters` / `ItemSelector` (keys
//!   ending in `.$` are paths or intrinsic functions), the task, `ResultSelector`,
//!   `ResultPath`, `OutputPath`;
//! - `Retry` (`ErrorEquals` with `States.ALL` and `States.TaskFailed`, `MaxAttempts`, default 3;
//!   the intervals are recorded, not slept) and `Catch` (`ErrorEquals`, `ResultPath`, `Next`,
//!   the error output `{"Error": …, "Cause": …}`);
//! - paths: `$`, `$.a.b`, `$.a[0]`, `$[*].x` (a wildcard maps over an array);
//! - intrinsic functions `States.ArrayContains`, `States.ArrayLength`, `States.StringToJson`
//!   and `States.Format` (with `{}` placeholders).
//!
//! Map items run one after another: any `MaxConcurrency` of 1 or more allows that order, and
//! the children of the template's map share no state. Anything else in a definition (another
//! state type, field or operator) is an error naming it, so a definition that grows beyond this
//! subset fails its test instead of being half-run.

use serde_json::{json, Map, Value};

/// A failed state: the error name and its cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    /// Such as `States.Timeout`, or a function's `errorType`.
    pub error: String,
    /// The message.
    pub cause: String,
}

impl StateError {
    fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StateError {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// What the Lambda task calls: the function (its ARN after substitution) and the payload, and
/// the function's answer or error.
pub type Invoker<'a> = dyn Fn(&str, &Value) -> Result<Value, StateError> + 'a;

/// One execution's trace.
#[derive(Debug, Default)]
pub struct Execution {
    /// Every state entered, in order (map children as `Map/Child`).
    pub entered: Vec<String>,
    /// The retries taken: (state, error, attempt).
    pub retries: Vec<(String, String, u32)>,
    /// The largest concurrency a map was allowed.
    pub map_concurrency: Vec<u64>,
}

const MAX_TRANSITIONS: usize = 10_000;

/// Runs `definition` on `input`: the execution's output, or the error it failed with.
pub fn run(
    definition: &Value,
    input: Value,
    invoke: &Invoker<'_>,
    trace: &mut Execution,
) -> Result<Value, StateError> {
    run_states(definition, input, invoke, trace, "")
}

fn run_states(
    machine: &Value,
    input: Value,
    invoke: &Invoker<'_>,
    trace: &mut Execution,
    scope: &str,
) -> Result<Value, StateError> {
    let states = machine["States"]
        .as_object()
        .ok_or_else(|| runtime("the definition has no States"))?;
    let mut name = machine["StartAt"]
        .as_str()
        .ok_or_else(|| runtime("the definition has no StartAt"))?
        .to_string();
    let mut data = input;
    for _ in 0..MAX_TRANSITIONS {
        let state = states
            .get(&name)
            .ok_or_else(|| runtime(format!("no state named {name}")))?;
        trace.entered.push(format!("{scope}{name}"));
        let (output, next) = run_state(&name, state, data, invoke, trace, scope)?;
        match next {
            Some(n) => {
                name = n;
                data = output;
            }
            None => return Ok(output),
        }
    }
    Err(runtime(format!("more than {MAX_TRANSITIONS} transitions")))
}

fn runtime(cause: impl Into<String>) -> StateError {
    StateError::new("States.Runtime", cause)
}

fn next_of(state: &Value) -> Result<Option<String>, StateError> {
    if state["End"] == json!(true) {
        return Ok(None);
    }
    state["Next"]
        .as_str()
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| runtime("a state has neither Next nor End"))
}

const KNOWN_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Resource",
    "Retry",
    "Catch",
    "TimeoutSeconds",
    "Choices",
    "Default",
    "Result",
    "ItemsPath",
    "ItemSelector",
    "ItemProcessor",
    "Iterator",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentage",
    "Error",
    "Cause",
];

fn run_state(
    name: &str,
    state: &Value,
    input: Value,
    invoke: &Invoker<'_>,
    trace: &mut Execution,
    scope: &str,
) -> Result<(Value, Option<String>), StateError> {
    if let Some(obj) = state.as_object() {
        if let Some(unknown) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(runtime(format!(
                "state {name}: field {unknown} is not reproduced by testkit::step_functions"
            )));
        }
    }
    let kind = state["Type"].as_str().unwrap_or_default();
    match kind {
        "Succeed" => Ok((input, None)),
        "Fail" => Err(StateError::new(
            state["Error"].as_str().unwrap_or("States.Fail"),
            state["Cause"].as_str().unwrap_or_default(),
        )),
        "Choice" => {
            let data = apply_input_path(state, &input)?;
            for rule in state["Choices"].as_array().into_iter().flatten() {
                if choice_matches(rule, &data)? {
                    let next = rule["Next"]
                        .as_str()
                        .ok_or_else(|| runtime(format!("state {name}: a choice has no Next")))?;
                    return Ok((output_path(state, input)?, Some(next.to_string())));
                }
            }
            let default = state["Default"].as_str().ok_or_else(|| {
                StateError::new("States.NoChoiceMatched", format!("state {name}"))
            })?;
            Ok((output_path(state, input)?, Some(default.to_string())))
        }
        "Pass" => {
            let effective = effective_input(state, &input, "Parameters")?;
            let result = state.get("Result").cloned().unwrap_or(effective);
            let out = result_path(state, input, result)?;
            Ok((output_path(state, out)?, next_of(state)?))
        }
        "Task" | "Map" => {
            let attempt_once = |trace: &mut Execution| -> Result<Value, StateError> {
                if kind == "Task" {
                    run_task(name, state, &input, invoke)
                } else {
                    run_map(name, state, &input, invoke, trace, scope)
                }
            };
            let mut attempts: Vec<u32> = vec![0; state["Retry"].as_array().map_or(0, Vec::len)];
            let result = loop {
                match attempt_once(trace) {
                    Ok(v) => break Ok(v),
                    Err(e) => {
                        let retrier = state["Retry"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .position(|r| error_matches(&r["ErrorEquals"], &e.error));
                        match retrier {
                            Some(i)
                                if attempts[i]
                                    < state["Retry"][i]["MaxAttempts"].as_u64().unwrap_or(3)
                                        as u32 =>
                            {
                                attempts[i] += 1;
                                trace.retries.push((
                                    format!("{scope}{name}"),
                                    e.error.clone(),
                                    attempts[i],
                                ));
                            }
                            _ => break Err(e),
                        }
                    }
                }
            };
            match result {
                Ok(raw) => {
                    let selected = match state.get("ResultSelector") {
                        Some(template) => fill(template, &raw)?,
                        None => raw,
                    };
                    let out = result_path(state, input, selected)?;
                    Ok((output_path(state, out)?, next_of(state)?))
                }
                Err(e) => {
                    for catcher in state["Catch"].as_array().into_iter().flatten() {
                        if error_matches(&catcher["ErrorEquals"], &e.error) {
                            let err = json!({"Error": e.error, "Cause": e.cause});
                            let out = set_path(
                                input,
                                catcher["ResultPath"].as_str().unwrap_or("$"),
                                err,
                            )?;
                            let next = catcher["Next"].as_str().ok_or_else(|| {
                                runtime(format!("state {name}: a catcher has no Next"))
                            })?;
                            return Ok((out, Some(next.to_string())));
                        }
                    }
                    Err(e)
                }
            }
        }
        other => Err(runtime(format!(
            "state {name}: type {other:?} is not reproduced by testkit::step_functions"
        ))),
    }
}

fn run_task(
    name: &str,
    state: &Value,
    input: &Value,
    invoke: &Invoker<'_>,
) -> Result<Value, StateError> {
    let resource = state["Resource"].as_str().unwrap_or_default();
    if resource != "arn:aws:states:::lambda:invoke" {
        return Err(runtime(format!(
            "state {name}: resource {resource:?} is not reproduced by testkit::step_functions"
        )));
    }
    let params = effective_input(state, input, "Parameters")?;
    let function = params["FunctionName"]
        .as_str()
        .ok_or_else(|| runtime(format!("state {name}: no FunctionName")))?;
    let payload = params.get("Payload").cloned().unwrap_or(Value::Null);
    let answer = invoke(function, &payload)?;
    Ok(json!({"Payload": answer, "StatusCode": 200}))
}

fn run_map(
    name: &str,
    state: &Value,
    input: &Value,
    invoke: &Invoker<'_>,
    trace: &mut Execution,
    scope: &str,
) -> Result<Value, StateError> {
    let data = apply_input_path(state, input)?;
    let items = get_path(&data, state["ItemsPath"].as_str().unwrap_or("$"))?;
    let items = items.as_array().cloned().ok_or_else(|| {
        StateError::new(
            "States.Runtime",
            format!("state {name}: ItemsPath is not an array"),
        )
    })?;
    let concurrency = match (&state["MaxConcurrency"], &state["MaxConcurrencyPath"]) {
        (Value::Number(n), _) => n.as_u64(),
        (Value::Null, Value::String(p)) => get_path(&data, p)?.as_u64(),
        (Value::Null, Value::Null) => Some(0),
        _ => None,
    }
    .ok_or_else(|| {
        runtime(format!(
            "state {name}: MaxConcurrency is not a whole number"
        ))
    })?;
    trace.map_concurrency.push(concurrency);
    let processor = state
        .get("ItemProcessor")
        .or_else(|| state.get("Iterator"))
        .ok_or_else(|| runtime(format!("state {name}: no ItemProcessor")))?;
    let tolerated = state["ToleratedFailurePercentage"].as_f64().unwrap_or(0.0);
    let mut results = Vec::with_capacity(items.len());
    let mut failures = 0usize;
    if state.get("ItemSelector").is_some() || state.get("Parameters").is_some() {
        return Err(runtime(format!(
            "state {name}: ItemSelector is not reproduced by testkit::step_functions"
        )));
    }
    let total = items.len();
    for item in items {
        match run_states(processor, item, invoke, trace, &format!("{scope}{name}/")) {
            Ok(v) => results.push(v),
            Err(e) => {
                failures += 1;
                // Over the threshold the map fails (Step Functions stops the other children).
                if (failures as f64) * 100.0 > tolerated * total as f64 {
                    return Err(StateError::new(
                        "States.ExceedToleratedFailureThreshold",
                        e.cause,
                    ));
                }
                results.push(json!({"Error": e.error, "Cause": e.cause}));
            }
        }
    }
    Ok(Value::Array(results))
}

fn error_matches(names: &Value, error: &str) -> bool {
    names.as_array().into_iter().flatten().any(|n| {
        let n = n.as_str().unwrap_or_default();
        n == "States.ALL"
            || n == error
            || (n == "States.TaskFailed" && error != "States.Timeout" && !error.is_empty())
    })
}

fn choice_matches(rule: &Value, data: &Value) -> Result<bool, StateError> {
    let var = rule["Variable"]
        .as_str()
        .ok_or_else(|| runtime("a choice rule without Variable is not reproduced"))?;
    let value = get_path(data, var);
    for (op, expected) in rule.as_object().into_iter().flatten() {
        match op.as_str() {
            "Variable" | "Next" => {}
            "IsPresent" => return Ok(value.is_ok() == (expected == &json!(true))),
            "StringEquals" | "BooleanEquals" | "NumericEquals" => {
                let v = value.clone()?;
                let same_type = match op.as_str() {
                    "StringEquals" => v.is_string(),
                    "BooleanEquals" => v.is_boolean(),
                    _ => v.is_number(),
                };
                return Ok(same_type
                    && (v == *expected
                        || (v.as_f64().is_some() && v.as_f64() == expected.as_f64())));
            }
            other => {
                return Err(runtime(format!(
                    "choice operator {other} is not reproduced by testkit::step_functions"
                )))
            }
        }
    }
    Err(runtime("a choice rule without an operator"))
}

fn apply_input_path(state: &Value, input: &Value) -> Result<Value, StateError> {
    match state.get("InputPath") {
        None => Ok(input.clone()),
        Some(Value::Null) => Ok(json!({})),
        Some(Value::String(p)) => get_path(input, p),
        Some(other) => Err(runtime(format!("InputPath {other}"))),
    }
}

fn effective_input(state: &Value, input: &Value, field: &str) -> Result<Value, StateError> {
    let data = apply_input_path(state, input)?;
    match state.get(field) {
        Some(template) => fill(template, &data),
        None => Ok(data),
    }
}

fn result_path(state: &Value, input: Value, result: Value) -> Result<Value, StateError> {
    match state.get("ResultPath") {
        None => Ok(result),
        Some(Value::Null) => Ok(input),
        Some(Value::String(p)) => set_path(input, p, result),
        Some(other) => Err(runtime(format!("ResultPath {other}"))),
    }
}

fn output_path(state: &Value, output: Value) -> Result<Value, StateError> {
    match state.get("OutputPath") {
        None => Ok(output),
        Some(Value::Null) => Ok(json!({})),
        Some(Value::String(p)) => get_path(&output, p),
        Some(other) => Err(runtime(format!("OutputPath {other}"))),
    }
}

/// A payload template: keys ending in `.$` take a path's value or an intrinsic's result.
pub fn fill(template: &Value, data: &Value) -> Result<Value, StateError> {
    match template {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(key) = k.strip_suffix(".$") {
                    let expr = v
                        .as_str()
                        .ok_or_else(|| runtime(format!("{k}: not a path")))?;
                    out.insert(key.to_string(), evaluate(expr, data)?);
                } else {
                    out.insert(k.clone(), fill(v, data)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(
            a.iter().map(|v| fill(v, data)).collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

fn evaluate(expr: &str, data: &Value) -> Result<Value, StateError> {
    let expr = expr.trim();
    if expr.starts_with('$') {
        return get_path(data, expr);
    }
    let open = expr
        .find('(')
        .filter(|_| expr.ends_with(')') && expr.starts_with("States."))
        .ok_or_else(|| {
            runtime(format!(
                "{expr:?} is neither a path nor an intrinsic function"
            ))
        })?;
    let name = &expr[..open];
    let args = split_args(&expr[open + 1..expr.len() - 1])?
        .into_iter()
        .map(|a| {
            if let Some(s) = a.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Ok(Value::String(s.replace("\\'", "'")))
            } else if a.starts_with('$') || a.starts_with("States.") {
                evaluate(&a, data)
            } else {
                serde_json::from_str(&a).map_err(|e| runtime(format!("argument {a}: {e}")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    match (name, args.as_slice()) {
        ("States.ArrayContains", [Value::Array(a), v]) => Ok(Value::Bool(a.contains(v))),
        ("States.ArrayLength", [Value::Array(a)]) => Ok(json!(a.len())),
        ("States.StringToJson", [Value::String(s)]) => serde_json::from_str(s)
            .map_err(|e| StateError::new("States.IntrinsicFailure", e.to_string())),
        ("States.Format", [Value::String(f), rest @ ..]) => {
            let mut out = String::new();
            let mut it = rest.iter();
            let mut pieces = f.split("{}").peekable();
            while let Some(p) = pieces.next() {
                out.push_str(p);
                if pieces.peek().is_some() {
                    match it.next() {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(v) => out.push_str(&v.to_string()),
                        None => return Err(StateError::new("States.IntrinsicFailure", f.clone())),
                    }
                }
            }
            Ok(Value::String(out))
        }
        _ => Err(runtime(format!(
            "intrinsic {name} with these arguments is not reproduced by testkit::step_functions"
        ))),
    }
}

fn split_args(s: &str) -> Result<Vec<String>, StateError> {
    let mut args = Vec::new();
    let (mut depth, mut quoted, mut current) = (0i32, false, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                current.push(c);
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                current.push(c);
            }
            ')' if !quoted => {
                depth -= 1;
                current.push(c);
            }
            ',' if !quoted && depth == 0 => {
                args.push(current.trim().to_string());
                current.clear();
            }
            c => current.push(c),
        }
    }
    if quoted || depth != 0 {
        return Err(runtime(format!("unbalanced arguments {s:?}")));
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_string());
    }
    Ok(args)
}

#[derive(Debug)]
enum Seg {
    Field(String),
    Index(usize),
    All,
}

fn parse_path(path: &str) -> Result<Vec<Seg>, StateError> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| runtime(format!("path {path:?} does not start with $")))?;
    let mut segs = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(runtime(format!("path {path:?}")));
            }
            segs.push(Seg::Field(r[..end].to_string()));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| runtime(format!("path {path:?}")))?;
            let inside = &r[..end];
            segs.push(if inside == "*" {
                Seg::All
            } else {
                Seg::Index(
                    inside
                        .parse()
                        .map_err(|_| runtime(format!("path {path:?} is not reproduced")))?,
                )
            });
            s = &r[end + 1..];
        } else {
            return Err(runtime(format!("path {path:?}")));
        }
    }
    Ok(segs)
}

/// The value at `path` (`States.Runtime` when it is absent, as Step Functions fails).
pub fn get_path(data: &Value, path: &str) -> Result<Value, StateError> {
    let segs = parse_path(path)?;
    walk(data, &segs).ok_or_else(|| runtime(format!("the path {path} is absent from the input")))
}

fn walk(v: &Value, segs: &[Seg]) -> Option<Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.clone());
    };
    match first {
        Seg::Field(f) => walk(v.get(f)?, rest),
        Seg::Index(i) => walk(v.get(*i)?, rest),
        Seg::All => Some(Value::Array(
            v.as_array()?.iter().filter_map(|x| walk(x, rest)).collect(),
        )),
    }
}

fn set_path(mut data: Value, path: &str, value: Value) -> Result<Value, StateError> {
    let segs = parse_path(path)?;
    if segs.is_empty() {
        return Ok(value);
    }
    if !data.is_object() {
        data = json!({});
    }
    let mut cur = &mut data;
    for (i, seg) in segs.iter().enumerate() {
        let Seg::Field(f) = seg else {
            return Err(runtime(format!("ResultPath {path} is not a field path")));
        };
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| runtime(format!("ResultPath {path}: not an object")))?;
        if i == segs.len() - 1 {
            obj.insert(f.clone(), value);
            return Ok(data);
        }
        cur = obj.entry(f.clone()).or_insert_with(|| json!({}));
    }
    unreachable!()
}

/// A definition with `DefinitionSubstitutions` applied (textual, as CloudFormation does).
pub fn substitute(definition: &Value, substitutions: &[(&str, &str)]) -> Value {
    let mut text = definition.to_string();
    for (k, v) in substitutions {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    serde_json::from_str(&text).expect("a substituted definition is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_intrinsics() {
        let d = json!({"a": {"b": [1, 2]}, "r": [{"o": "x"}, {"o": "failed"}]});
        assert_eq!(get_path(&d, "$.a.b[1]").unwrap(), json!(2));
        assert_eq!(get_path(&d, "$.r[*].o").unwrap(), json!(["x", "failed"]));
        assert!(get_path(&d, "$.zz").is_err());
        assert_eq!(
            evaluate("States.ArrayContains($.r[*].o, 'failed')", &d).unwrap(),
            json!(true)
        );
        assert_eq!(
            evaluate("States.StringToJson('12')", &d).unwrap(),
            json!(12)
        );
        assert_eq!(
            evaluate("States.Format('{} of {}', $.a.b[0], 'two')", &d).unwrap(),
            json!("1 of two")
        );
        assert_eq!(
            set_path(json!({"x": 1}), "$.y.z", json!(2)).unwrap(),
            json!({"x": 1, "y": {"z": 2}})
        );
    }

    #[test]
    fn retry_catch_choice_map_and_unknown_fields() {
        let def = json!({
            "StartAt": "Each",
            "States": {
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ItemProcessor": {"StartAt": "Call", "States": {
                        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": "f", "Payload": {"n.$": "$.n"}},
                            "ResultSelector": {"v.$": "$.Payload.v"}, "ResultPath": "$.r",
                            "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2}],
                            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "Failed"}],
                            "Next": "Again"},
                        "Again": {"Type": "Choice", "Choices": [{"Variable": "$.r.v", "StringEquals": "more", "Next": "Call"}], "Default": "Done"},
                        "Done": {"Type": "Pass", "Parameters": {"n.$": "$.n", "outcome": "ok"}, "End": true},
                        "Failed": {"Type": "Pass", "Parameters": {"n.$": "$.n", "outcome": "failed", "error.$": "$.e.Error"}, "End": true}
                    }},
                    "ResultSelector": {"outcomes.$": "$[*].outcome"}, "Next": "Sum"},
                "Sum": {"Type": "Pass", "Parameters": {"any.$": "States.ArrayContains($.outcomes, 'failed')"}, "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [{"Variable": "$.any", "BooleanEquals": true, "Next": "Bad"}], "Default": "Good"},
                "Bad": {"Type": "Fail", "Error": "SomeFailed"},
                "Good": {"Type": "Succeed"}
            }
        });
        let calls = std::cell::RefCell::new(Vec::new());
        let invoke = |f: &str, p: &Value| -> Result<Value, StateError> {
            assert_eq!(f, "f");
            let n = p["n"].as_u64().unwrap();
            let seen = calls.borrow().iter().filter(|c| **c == n).count();
            calls.borrow_mut().push(n);
            match (n, seen) {
                (1, 0) => Ok(json!({"v": "more"})),
                (1, _) => Ok(json!({"v": "done"})),
                (2, 0) => Err(StateError::new("Flaky", "once")),
                (2, _) => Ok(json!({"v": "done"})),
                _ => Err(StateError::new("Broken", "always")),
            }
        };
        let mut trace = Execution::default();
        let out = run(
            &def,
            json!({"items": [{"n": 1}, {"n": 2}]}),
            &invoke,
            &mut trace,
        );
        assert_eq!(out.unwrap(), json!({"any": false}));
        assert_eq!(*calls.borrow(), vec![1, 1, 2, 2]);
        assert_eq!(trace.retries, vec![("Each/Call".into(), "Flaky".into(), 1)]);
        assert_eq!(trace.map_concurrency, vec![2]);
        let mut trace = Execution::default();
        let err = run(
            &def,
            json!({"items": [{"n": 1}, {"n": 3}]}),
            &invoke,
            &mut trace,
        )
        .unwrap_err();
        assert_eq!(err.error, "SomeFailed");
        // A field outside the reproduced subset is refused, naming it.
        let mut bad = def.clone();
        bad["States"]["Sum"]["Credentials"] = json!({});
        let err = run(
            &bad,
            json!({"items": []}),
            &invoke,
            &mut Execution::default(),
        )
        .unwrap_err();
        assert!(err.cause.contains("Credentials"), "{err:?}");
    }
}
