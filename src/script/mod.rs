//! The sandboxed script engine for serial and LoRa profiles (SPEC §3, §8 "Scripts").
//!
//! Invariants:
//! - A script is compiled once, when its profile is loaded; a call never re-parses.
//! - Every call runs under the limits below: a script that loops forever is stopped after
//!   [`MAX_OPERATIONS`] operations (a few milliseconds), deep recursion and huge strings,
//!   arrays or maps are refused. Scripts have no I/O: no `eval`, no `import` (no module
//!   resolver), and `print`/`debug` go to the `tracing` debug log, never to stdout.
//! - Every failure is a [`ScriptError`] naming the script file and, when known, the line.
//!
//! The helpers for binary protocols live in `helpers.rs` and are documented for profile
//! authors in `plugins/SCRIPTING.md`.
//!
//! Functions are called without re-running the script's top level (`eval_ast = false`):
//! a script is a set of functions, and per-frame calls must stay cheap.

mod helpers;

pub use helpers::{crc16_modbus, hex_decode, hex_encode, sum8, xor8};

use crate::model::Value;
use rhai::{CallFnOptions, Dynamic, EvalAltResult, Scope};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Operations one call may run; `loop {}` stops after ~2 ms on a cabinet-class core.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Wall time one call may take: operations bound a script's own work, this bounds it
/// on a loaded machine and between helpers that each count as one operation.
pub const MAX_CALL_TIME: std::time::Duration = std::time::Duration::from_millis(50);
/// How often (in operations) the wall-time deadline is looked at.
const DEADLINE_CHECK_EVERY: u64 = 256;

thread_local! {
    /// The deadline of the call running on this thread (calls are synchronous).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Nesting of function calls (recursion).
pub const MAX_CALL_LEVELS: usize = 32;
/// Nesting of expressions (global level, inside functions).
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FN_EXPR_DEPTH: usize = 32;
/// Bytes in a string, elements in an array or blob, entries in a map.
pub const MAX_STRING_SIZE: usize = 64 * 1024;
pub const MAX_ARRAY_SIZE: usize = 64 * 1024;
pub const MAX_MAP_SIZE: usize = 1024;
/// Script files are small; anything bigger is not a profile script.
pub const MAX_SCRIPT_BYTES: u64 = 256 * 1024;

/// A script problem: `file:line: message` (line when known).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

/// A compiled script. Cheap to clone; remembers the file it came from. Two scripts are
/// equal when they come from the same file with the same text (profile reload diffs).
#[derive(Clone)]
pub struct Script {
    ast: Arc<rhai::AST>,
    path: Arc<Path>,
    text: Arc<str>,
}

impl Script {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the script defines `name` with `arity` parameters.
    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Script {
    fn eq(&self, other: &Script) -> bool {
        self.path == other.path && self.text == other.text
    }
}

/// The sandboxed engine. Cheap to clone (shared), usable from any thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<rhai::Engine>,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("script::Engine")
    }
}

impl Engine {
    pub fn new() -> Engine {
        let mut e = rhai::Engine::new();
        e.set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
            .set_max_string_size(MAX_STRING_SIZE)
            .set_max_array_size(MAX_ARRAY_SIZE)
            .set_max_map_size(MAX_MAP_SIZE)
            .set_max_modules(0)
            .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
            .disable_symbol("eval")
            .disable_symbol("import")
            .disable_symbol("export");
        e.on_progress(|ops| {
            let late = ops % DEADLINE_CHECK_EVERY == 0
                && DEADLINE
                    .with(|d| d.get())
                    .is_some_and(|d| std::time::Instant::now() > d);
            late.then(|| Dynamic::from("deadline"))
        });
        e.on_print(|s| tracing::debug!(target: "polegate::script", "print: {s}"));
        e.on_debug(|s, src, pos| {
            tracing::debug!(target: "polegate::script", source = src.unwrap_or(""), line = pos.line(), "debug: {s}")
        });
        helpers::register(&mut e);
        Engine { inner: Arc::new(e) }
    }

    /// Reads and compiles a script file.
    pub fn compile_file(&self, path: &Path) -> Result<Script, ScriptError> {
        let err = |message: String| ScriptError {
            file: path.to_path_buf(),
            line: None,
            message,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.len() > MAX_SCRIPT_BYTES => {
                return Err(err(format!(
                    "file of {} bytes is too large for a script (limit {MAX_SCRIPT_BYTES})",
                    m.len()
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(err(format!("cannot read script: {e}"))),
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read script: {e}")))?;
        self.compile_at(path, &text)
    }

    /// Compiles a script held in memory; `name` stands for its file in messages.
    pub fn compile_str(&self, name: &str, src: &str) -> Result<Script, ScriptError> {
        self.compile_at(Path::new(name), src)
    }

    fn compile_at(&self, path: &Path, src: &str) -> Result<Script, ScriptError> {
        match self.inner.compile(src) {
            Ok(mut ast) => {
                ast.set_source(path.display().to_string());
                Ok(Script {
                    ast: Arc::new(ast),
                    path: Arc::from(path),
                    text: Arc::from(src),
                })
            }
            Err(e) => Err(ScriptError {
                file: path.to_path_buf(),
                line: e.position().line(),
                message: format!("syntax error: {}", e.err_type()),
            }),
        }
    }

    /// Calls `func` of `script` under the sandbox limits.
    pub fn call(
        &self,
        script: &Script,
        func: &str,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
        DEADLINE.with(|d| d.set(Some(std::time::Instant::now() + MAX_CALL_TIME)));
        let r = self.inner.call_fn_with_options::<Dynamic>(
            options,
            &mut scope,
            &script.ast,
            func,
            args,
        );
        DEADLINE.with(|d| d.set(None));
        r.map_err(|e| {
            let mut err = runtime_error(&script.path, func, *e);
            // Limits hit inside a loop carry no position: point at the function.
            if err.line.is_none() {
                err.line = fn_line(&script.text, func);
            }
            err
        })
    }
}

/// Finds the innermost position (the line inside the script's function) and a message
/// a technician can act on.
fn runtime_error(path: &Path, func: &str, e: EvalAltResult) -> ScriptError {
    let mut err = &e;
    let mut line = e.position().line();
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, pos) = err {
        line = inner.position().line().or(pos.line()).or(line);
        err = inner;
    }
    let message = match err {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "fn {func}: stopped after {MAX_OPERATIONS} operations (a loop that never ends?)"
        ),
        EvalAltResult::ErrorTerminated(..) => format!(
            "fn {func}: stopped after {} ms (too slow for one frame)",
            MAX_CALL_TIME.as_millis()
        ),
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("fn {func}: calls nested deeper than {MAX_CALL_LEVELS} levels")
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.starts_with(func) => {
            format!("the script has no fn {sig}")
        }
        other => format!("fn {func}: {}", strip_position(other)),
    };
    ScriptError {
        file: path.to_path_buf(),
        line,
        message,
    }
}

/// The line where `fn func(` is defined, if the script defines it.
fn fn_line(text: &str, func: &str) -> Option<usize> {
    let pat = format!("fn {func}(");
    text.lines()
        .position(|l| l.trim_start().starts_with(&pat))
        .map(|i| i + 1)
}

/// Rhai's Display appends " (line N, position M)"; the line is already in the prefix.
fn strip_position(e: &EvalAltResult) -> String {
    let s = e.to_string();
    match s.rfind(" (line ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// A script value as a point value: bool, integer, float or string (char too).
/// Anything else (unit, blob, array, map, function pointer) is not a point value.
pub fn dynamic_to_value(d: &Dynamic) -> Option<Value> {
    if let Ok(b) = d.as_bool() {
        Some(Value::Bool(b))
    } else if let Ok(i) = d.as_int() {
        Some(Value::Int(i))
    } else if let Ok(f) = d.as_float() {
        f.is_finite().then_some(Value::Float(f))
    } else if d.is_string() {
        d.clone().into_string().ok().map(Value::Text)
    } else if let Ok(c) = d.as_char() {
        Some(Value::Text(c.to_string()))
    } else {
        None
    }
}

pub fn value_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Float(f) => Dynamic::from_float(*f),
        Value::Text(s) => Dynamic::from(s.clone()),
    }
}

/// The human name of a script value's type, for "returned a blob, expected a map".
pub fn type_name(d: &Dynamic) -> &'static str {
    if d.is_unit() {
        "()"
    } else if d.is_map() {
        "map"
    } else if d.is_blob() {
        "blob"
    } else if d.is_array() {
        "array"
    } else if d.is_string() {
        "string"
    } else if d.is_int() {
        "integer"
    } else if d.is_float() {
        "float"
    } else if d.is_bool() {
        "bool"
    } else if d.is_char() {
        "char"
    } else {
        "value"
    }
}

#[cfg(test)]
mod tests;
