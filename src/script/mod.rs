//! Sandboxed Rhai scripts for serial and LoRa profiles (SPEC §3, §8 "Scripts").
//!
//! Minimal version (LoRa worktree): the serial issue ships the full engine with the
//! binary-protocol helpers behind the same API. Scripts get the standard library without
//! `eval`, and operation, depth and size limits, so a looping script fails instead of
//! stalling its driver.

use crate::model::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Operations one call may run (a `loop {}` stops in a few ms).
pub const MAX_OPERATIONS: u64 = 200_000;

#[derive(Clone)]
pub struct Engine {
    inner: Arc<rhai::Engine>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Engine")
    }
}

#[derive(Clone, Debug)]
pub struct Script {
    ast: Arc<rhai::AST>,
    file: PathBuf,
}

impl Script {
    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    pub fn new() -> Engine {
        let mut e = rhai::Engine::new();
        e.set_max_operations(MAX_OPERATIONS);
        e.set_max_call_levels(32);
        e.set_max_expr_depths(64, 32);
        e.set_max_string_size(64 * 1024);
        e.set_max_array_size(16 * 1024);
        e.set_max_map_size(1024);
        e.disable_symbol("eval");
        Engine { inner: Arc::new(e) }
    }

    pub fn compile_file(&self, path: &Path) -> Result<Script, ScriptError> {
        let src = std::fs::read_to_string(path).map_err(|e| ScriptError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read script: {e}"),
        })?;
        self.compile_named(path.to_path_buf(), &src)
    }

    pub fn compile_str(&self, name: &str, src: &str) -> Result<Script, ScriptError> {
        self.compile_named(PathBuf::from(name), src)
    }

    fn compile_named(&self, file: PathBuf, src: &str) -> Result<Script, ScriptError> {
        match self.inner.compile(src) {
            Ok(ast) => Ok(Script {
                ast: Arc::new(ast),
                file,
            }),
            Err(e) => Err(ScriptError {
                file,
                line: e.1.line(),
                message: e.0.to_string(),
            }),
        }
    }

    pub fn call(
        &self,
        script: &Script,
        func: &str,
        args: impl rhai::FuncArgs,
    ) -> Result<rhai::Dynamic, ScriptError> {
        let mut scope = rhai::Scope::new();
        self.inner
            .call_fn::<rhai::Dynamic>(&mut scope, &script.ast, func, args)
            .map_err(|e| ScriptError {
                file: script.file.clone(),
                line: e.position().line(),
                message: e.to_string(),
            })
    }
}

/// A script value as a point value; `None` for unit, arrays, maps and the like.
pub fn dynamic_to_value(d: &rhai::Dynamic) -> Option<Value> {
    if let Some(b) = d.clone().try_cast::<bool>() {
        Some(Value::Bool(b))
    } else if let Some(i) = d.clone().try_cast::<rhai::INT>() {
        Some(Value::Int(i))
    } else if let Some(f) = d.clone().try_cast::<rhai::FLOAT>() {
        Some(Value::Float(f))
    } else if d.is_string() {
        d.clone().into_string().ok().map(Value::Text)
    } else {
        None
    }
}

pub fn value_to_dynamic(v: &Value) -> rhai::Dynamic {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Text(s) => s.clone().into(),
    }
}

#[cfg(test)]
mod tests {
    //! The sandbox stops runaway scripts.
    use super::*;

    #[test]
    fn a_script_that_loops_forever_is_stopped_with_an_error() {
        let e = Engine::new();
        let s = e.compile_str("loop.rhai", "fn f() { loop {} }").unwrap();
        assert!(s.has_fn("f", 0));
        assert!(e.call(&s, "f", ()).is_err());
    }
}
