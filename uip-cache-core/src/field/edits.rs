//! One list of header changes, for an adapter to apply in order: the
//! type is plain data, so that every module deciding a change (responses,
//! the request to the origin, forwarding headers) can make one without
//! depending on the others.

use bytes::Bytes;

/// One change to a header map.
///
/// Exhaustive on purpose: a new kind of change must make every adapter
/// apply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Remove every field of this name (any case; a name that is not a
    /// valid field name is nothing to remove).
    Remove(&'a str),
    /// Set this field to this one value, replacing any it has. The name is
    /// lower case and a valid field name (adapters may take it as a static
    /// header name); a value that is not valid in a field is not set.
    Set(&'static str, Bytes),
}

/// Header changes to apply in order ([`HeaderEdit`]); iterate over it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "the edits do nothing until the adapter applies them"]
pub struct HeaderEdits<'a> {
    edits: Vec<HeaderEdit<'a>>,
}

impl<'a> HeaderEdits<'a> {
    /// No changes.
    pub fn new() -> Self {
        HeaderEdits::default()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The changes, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, HeaderEdit<'a>> {
        self.edits.iter()
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        HeaderEdits {
            edits: Vec::with_capacity(n),
        }
    }

    pub(crate) fn remove(&mut self, name: &'a str) {
        self.edits.push(HeaderEdit::Remove(name));
    }

    pub(crate) fn set(&mut self, name: &'static str, value: impl Into<Bytes>) {
        self.edits.push(HeaderEdit::Set(name, value.into()));
    }
}

impl<'a> IntoIterator for HeaderEdits<'a> {
    type Item = HeaderEdit<'a>;
    type IntoIter = std::vec::IntoIter<HeaderEdit<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.edits.into_iter()
    }
}

impl<'a> FromIterator<HeaderEdit<'a>> for HeaderEdits<'a> {
    fn from_iter<I: IntoIterator<Item = HeaderEdit<'a>>>(iter: I) -> Self {
        HeaderEdits {
            edits: iter.into_iter().collect(),
        }
    }
}
