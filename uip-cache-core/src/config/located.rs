//! [`Located`]: a config value and the line it was read from.

use std::ops::Deref;

use serde::{Deserialize, Deserializer};

/// A config value together with the line it was read from, so that checks made
/// after parsing can still point at the right place.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the config file; `None` for values built in code.
    pub line: Option<u64>,
}

impl<T> Located<T> {
    /// A value that did not come from a file.
    pub const fn new(value: T) -> Self {
        Located { value, line: None }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl AsRef<str> for Located<String> {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl<T> From<T> for Located<T> {
    fn from(value: T) -> Self {
        Located::new(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(d)?;
        let line = spanned.referenced.line();
        Ok(Located {
            value: spanned.value,
            line: (line > 0).then_some(line),
        })
    }
}
