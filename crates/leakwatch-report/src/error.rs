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
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match e.classify() {
        serde_json::error::Category::Eof => format!("truncated: {text}"),
        serde_json::error::Category::Syntax => format!("not valid JSON: {text}"),
        serde_json::error::Category::Data => format!("unexpected content: {text}"),
        serde_json::error::Category::Io => format!("read error: {text}"),
    }
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
