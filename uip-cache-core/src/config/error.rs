use std::fmt;

/// Why a config could not be loaded: one or more problems, each with the file,
/// line and field path it concerns.
///
/// `Display` prints one problem per line in the form
/// `config/cache.yaml:12:14: policies[2].pattern: invalid regex ...`, which
/// editors and terminals turn into links.
#[derive(Debug, Clone)]
pub struct ConfigError {
    source_name: String,
    problems: Vec<ConfigProblem>,
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigProblem {
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field path, such as `policies[2].pattern`; empty for the whole file.
    pub path: String,
    /// What is wrong and, where useful, what to do.
    pub message: String,
}

impl ConfigProblem {
    pub(crate) fn new(
        line: Option<u64>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigProblem {
            line,
            column: None,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl ConfigError {
    pub(crate) fn new(source_name: impl Into<String>, problems: Vec<ConfigProblem>) -> Self {
        debug_assert!(!problems.is_empty());
        ConfigError {
            source_name: source_name.into(),
            problems,
        }
    }

    pub(crate) fn single(source_name: impl Into<String>, problem: ConfigProblem) -> Self {
        Self::new(source_name, vec![problem])
    }

    /// One problem at a field path, with no line (for checks made outside
    /// loading, such as building a store the config names).
    pub fn at(
        source_name: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::single(source_name, ConfigProblem::new(None, path, message))
    }

    /// The file name (or `<string>` for configs loaded from text).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Every problem found, in file order where lines are known.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

/// `line:col: field.path: message` (the file name is the caller's to add).
impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if p.line.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{p}", self.source_name)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
