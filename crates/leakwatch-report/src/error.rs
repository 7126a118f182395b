//! Errors of reading recorded files and reports.

use std::fmt;

/// What went wrong, and where: a file (or other input) and, when known, a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The input: a file path, or a name such as `<stdin>`.
    pub origin: String,
    /// 1-based line of the input, when the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong, in one line.
    pub message: String,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error at `origin` (and `line`, if known).
    pub fn at(origin: &str, line: Option<usize>, message: impl Into<String>) -> Error {
        Error {
            origin: origin.to_string(),
            line,
            message: message.into(),
        }
    }

    /// A JSON syntax or shape error in a whole-file document, at the line serde found it.
    pub fn json(origin: &str, e: &serde_json::Error) -> Error {
        Error::at(origin, Some(e.line()).filter(|&l| l > 0), describe_json(e))
    }
}

/// One line describing a JSON error, without serde's position suffix (the caller puts
/// the position first).
pub(crate) fn describe_json(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    // serde quotes what it read, decoded: a string's `\r` or `\n` escape would break
    // the line.
    let text = printable(text);
    match e.classify() {
        serde_json::error::Category::Eof => format!("truncated: {text}"),
        serde_json::error::Category::Syntax => format!("not valid JSON: {text}"),
        serde_json::error::Category::Data => format!("unexpected content: {text}"),
        serde_json::error::Category::Io => format!("read error: {text}"),
    }
}

/// `text` with its control characters written as escapes (`\r`, `\n`, `\u{1b}`).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_json_error_quoting_a_control_character_stays_one_line() {
        // serde names an unknown variant as decoded: here with a CR and a LF in it (a
        // fuzzed series line's `unwinder`).
        let e = serde_json::from_str::<leakwatch_types::Unwinder>("\"fp\\r\\nx\"").unwrap_err();
        assert!(e.to_string().contains('\r'), "{e}");
        let message = super::describe_json(&e);
        assert!(!message.contains(['\r', '\n']), "{message:?}");
        assert!(
            message.contains("unknown variant `fp\\r\\nx`"),
            "{message:?}"
        );
    }
}
