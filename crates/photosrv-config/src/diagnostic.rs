//! Errors and warnings that point at a place in a file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A message about one place in one file: `FILE:LINE:COL: message`, then the line itself
/// with a caret under the column when the text is at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the message is about.
    pub path: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// What is wrong and what was expected, lowercase, no full stop.
    pub message: String,
    /// The offending line, for display.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A message at `line:col` of `path`.
    pub fn new(path: &Path, line: u32, col: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_path_buf(),
            line,
            col,
            message: message.into(),
            source_line: None,
        }
    }

    /// The same message with the offending line attached for display.
    pub fn with_source_line(mut self, line: &str) -> Self {
        self.source_line = Some(line.trim_end_matches(['\r', '\n']).to_owned());
        self
    }

    /// `FILE:LINE:COL: message` followed by the line and a caret, for people.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if let Some(line) = &self.source_line {
            let shown: String = line.chars().take(200).collect();
            let pad: String = shown
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n    | {shown}\n    | {pad}^"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Why a config or roster could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text has errors, every one of them listed.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics, when the text was read but is wrong.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(all) => all,
            ConfigError::Io { .. } => &[],
        }
    }
}

fn render_all(all: &[Diagnostic]) -> String {
    all.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_a_caret_at_the_column_keeping_tabs() {
        let d = Diagnostic::new(Path::new("p.cfg"), 2, 6, "bad").with_source_line("\tab cd\r\n");
        assert_eq!(d.render(), "p.cfg:2:6: bad\n    | \tab cd\n    | \t    ^");
        let bare = Diagnostic::new(Path::new("p.cfg"), 1, 1, "bad");
        assert_eq!(bare.render(), "p.cfg:1:1: bad");
    }
}
