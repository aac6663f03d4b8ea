//! A problem in a file the operator wrote (the configuration, a profile): which file,
//! where in it (a key path, or a line and column for syntax errors), and what is wrong.
//! Config and profile loading both report these, so `polegate check` prints one shape.

use std::fmt;
use std::path::PathBuf;

/// One problem: `file: key.path: message`, or `file: message` for file-level problems.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    /// The file, or a stand-in such as `environment POLEGATE__MQTT__URL`.
    pub file: PathBuf,
    /// Key path inside the file, e.g. `device[3].modbus.unit` or `point[2].type`; empty
    /// for file-level problems (unreadable, syntax).
    pub key: String,
    pub message: String,
}

impl FileError {
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FileError {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A problem with the file as a whole (no key path).
    pub fn file_level(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        FileError::new(file, String::new(), message)
    }

    pub fn is_file_level(&self) -> bool {
        self.key.is_empty()
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for FileError {}

/// 1-based line and column (in characters, not bytes) of byte `offset` in `text`; an
/// offset past the end or inside a character counts as the end of the text.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_level_problem_prints_without_a_key_path() {
        assert_eq!(
            FileError::file_level("a.toml", "cannot read").to_string(),
            "a.toml: cannot read"
        );
        assert_eq!(
            FileError::new("a.toml", "point[2].type", "required").to_string(),
            "a.toml: point[2].type: required"
        );
    }

    #[test]
    fn columns_count_characters_and_offsets_past_the_end_stop_at_the_end() {
        let text = "a = 1\nµ = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "µ" is two bytes: the `=` after it is the third character of line 2.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 7), line_col(text, text.len()));
        assert_eq!(line_col(text, 1000), (3, 1));
    }
}
