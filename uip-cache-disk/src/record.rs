//! The metadata record of one entry, as the index keeps it, and its
//! versioned binary encoding. Decoding checks every length: bytes that are
//! not a record (a torn write, a record of a later version, hostile bytes)
//! are an error, never a panic or a wrong record.

/// The encoding's version, its first byte.
const VERSION: u8 = 1;

/// What the index keeps of one entry: where its body is, how to check it,
/// when it expires, and what purges find it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Milliseconds since the Unix epoch after which the entry is gone.
    pub(crate) expires_ms: u64,
    /// Its place in eviction order (lower leaves first).
    pub(crate) seq: u64,
    /// The body file's number.
    pub(crate) file: u64,
    /// The body's length in bytes.
    pub(crate) len: u64,
    /// CRC-32 of the body.
    pub(crate) crc: u32,
    /// The request's path (for URL-pattern purges).
    pub(crate) path: String,
    /// The request's raw query.
    pub(crate) query: Option<String>,
    /// The entry's tags.
    pub(crate) tags: Vec<String>,
}

/// Bytes that are not a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadRecord;

impl Record {
    /// The record as bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.path.len());
        out.push(VERSION);
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.file.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        put_str(&mut out, &self.path);
        match &self.query {
            None => out.push(0),
            Some(q) => {
                out.push(1);
                put_str(&mut out, q);
            }
        }
        let n = u32::try_from(self.tags.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for t in self.tags.iter().take(n as usize) {
            put_str(&mut out, t);
        }
        out
    }

    /// The record `bytes` encode, all of them.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, BadRecord> {
        let mut tags = Vec::new();
        let (fixed, path, query) = parse(bytes, Some(&mut tags))?;
        Ok(Record {
            expires_ms: fixed.expires_ms,
            seq: fixed.seq,
            file: fixed.file,
            len: fixed.len,
            crc: fixed.crc,
            path: path.to_owned(),
            query: query.map(str::to_owned),
            tags,
        })
    }

    /// Where the body is and how to check it.
    pub(crate) fn place(&self) -> Place {
        Place {
            file: self.file,
            len: self.len,
            crc: self.crc,
        }
    }
}

/// A record's fields of fixed size, read without allocating (a hit needs
/// no more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub(crate) expires_ms: u64,
    pub(crate) seq: u64,
    pub(crate) file: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

impl Fixed {
    /// The fixed fields of the record `bytes` encode, all of them: bytes
    /// [`Record::decode`] refuses are refused here too.
    pub(crate) fn read(bytes: &[u8]) -> Result<Fixed, BadRecord> {
        parse(bytes, None).map(|(fixed, ..)| fixed)
    }

    /// Where the body is and how to check it.
    pub(crate) fn place(&self) -> Place {
        Place {
            file: self.file,
            len: self.len,
            crc: self.crc,
        }
    }
}

/// A body file: its number, length and CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) file: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

/// Reads a whole record in place: its fixed fields, path and query as
/// borrows, and its tags into `tags` when given (each checked either way).
fn parse<'a>(
    bytes: &'a [u8],
    mut tags: Option<&mut Vec<String>>,
) -> Result<(Fixed, &'a str, Option<&'a str>), BadRecord> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(BadRecord);
    }
    let fixed = Fixed {
        expires_ms: r.u64()?,
        seq: r.u64()?,
        file: r.u64()?,
        len: r.u64()?,
        crc: r.u32()?,
    };
    let path = r.str()?;
    let query = match r.u8()? {
        0 => None,
        1 => Some(r.str()?),
        _ => return Err(BadRecord),
    };
    let n = r.u32()? as usize;
    // Each tag takes at least its 4-byte length: a count the bytes
    // cannot hold is refused before anything is allocated for it.
    if n > r.0.len() / 4 {
        return Err(BadRecord);
    }
    if let Some(tags) = tags.as_deref_mut() {
        tags.reserve_exact(n);
    }
    for _ in 0..n {
        let tag = r.str()?;
        if let Some(tags) = tags.as_deref_mut() {
            tags.push(tag.to_owned());
        }
    }
    if !r.0.is_empty() {
        return Err(BadRecord);
    }
    Ok((fixed, path, query))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than 4 GiB are cut at a character boundary (none
    // reaches this far: keys, paths and tags are bounded by the request
    // limits far below).
    let mut end = s.len().min(u32::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        if self.0.len() < n {
            return Err(BadRecord);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BadRecord> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BadRecord> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, BadRecord> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<&'a str, BadRecord> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| BadRecord)
    }
}

/// The store's own state, written in the same batch as every change to the
/// records: bytes charged, entries, the next file and order number, and
/// which commit wrote it. A batch that adds a member to the eviction order
/// carries the state on that member (see [`order_member`]), so a write
/// adds no item of its own for it to the journal a start replays; any
/// other batch writes it under the `meta` keyspace's `state` key. The one
/// of the two with the later commit is the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// Bytes charged for the entries held (see `charge`).
    pub(crate) used: u64,
    /// Entries held.
    pub(crate) count: u64,
    /// The next file and order number.
    pub(crate) next: u64,
    /// The commit that wrote this state (counted from 1; 0: a state of
    /// the first version, written before states were counted).
    pub(crate) commit: u64,
}

/// The state's encoding before it counted commits: written under `meta`
/// alone, by every batch.
const STATE_V1: u8 = 1;
/// The state's encoding with the commit count.
const STATE_V2: u8 = 2;
/// The length of an encoded state.
pub(crate) const STATE_LEN: usize = 33;

impl State {
    /// The state as bytes.
    pub(crate) fn encode(&self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        out[0] = STATE_V2;
        out[1..9].copy_from_slice(&self.used.to_le_bytes());
        out[9..17].copy_from_slice(&self.count.to_le_bytes());
        out[17..25].copy_from_slice(&self.next.to_le_bytes());
        out[25..33].copy_from_slice(&self.commit.to_le_bytes());
        out
    }

    /// Whether `bytes` are a state of the current version.
    pub(crate) fn is_current(bytes: &[u8]) -> bool {
        bytes.len() == STATE_LEN && bytes[0] == STATE_V2
    }

    /// The state `bytes` encode (either version).
    pub(crate) fn decode(bytes: &[u8]) -> Result<State, BadRecord> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != STATE_V1 && version != STATE_V2 {
            return Err(BadRecord);
        }
        let mut state = State {
            used: r.u64()?,
            count: r.u64()?,
            next: r.u64()?,
            commit: 0,
        };
        if version == STATE_V2 {
            state.commit = r.u64()?;
        }
        if !r.0.is_empty() {
            return Err(BadRecord);
        }
        Ok(state)
    }
}

/// The first byte of an eviction-order member of the current form: a byte
/// no UTF-8 text starts with, so a member of the earlier form (the key
/// alone) is told apart.
const MEMBER: u8 = 0xFF;
/// Where the key starts in a member of the current form.
const MEMBER_HEAD: usize = 1 + 8 + STATE_LEN;

/// An eviction-order member's value: the entry's body file, the store's
/// state as of the commit that adds it (see [`set_member_state`]), and
/// the entry's key.
pub(crate) fn order_member(file: u64, state: &State, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MEMBER_HEAD + key.len());
    out.push(MEMBER);
    out.extend_from_slice(&file.to_le_bytes());
    out.extend_from_slice(&state.encode());
    out.extend_from_slice(key);
    out
}

/// Puts `state` in `member` (made by [`order_member`]) in place of the
/// one it holds.
pub(crate) fn set_member_state(member: &mut [u8], state: &State) {
    if member.first() == Some(&MEMBER) && member.len() >= MEMBER_HEAD {
        member[9..MEMBER_HEAD].copy_from_slice(&state.encode());
    }
}

/// What an eviction-order member says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OrderMember<'a> {
    /// The entry's key.
    pub(crate) key: &'a [u8],
    /// Its body file (none in a member of the earlier form).
    pub(crate) file: Option<u64>,
    /// The state it carries (none in a member of the earlier form, or
    /// one whose state does not decode).
    pub(crate) state: Option<State>,
    /// Whether it is of the current form (which carries a state: without
    /// one, it is damaged).
    pub(crate) current: bool,
}

/// Reads an eviction-order member's value.
pub(crate) fn read_order_member(value: &[u8]) -> OrderMember<'_> {
    match value.split_first() {
        Some((&MEMBER, _)) if value.len() >= MEMBER_HEAD => {
            let mut file = [0u8; 8];
            file.copy_from_slice(&value[1..9]);
            OrderMember {
                key: &value[MEMBER_HEAD..],
                file: Some(u64::from_le_bytes(file)),
                state: State::decode(&value[9..MEMBER_HEAD]).ok(),
                current: true,
            }
        }
        // A key (text) never starts with that byte: a member cut short,
        // naming no key.
        Some((&MEMBER, _)) => OrderMember {
            key: &[],
            file: None,
            state: None,
            current: true,
        },
        _ => OrderMember {
            key: value,
            file: None,
            state: None,
            current: false,
        },
    }
}

/// The key under which the tag index holds `key`'s membership of `tag`:
/// the tag's length, the tag, the key (so that no tag is a prefix of
/// another's members).
pub(crate) fn tag_member(tag: &str, key: &str) -> Vec<u8> {
    let mut out = tag_prefix(tag);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The prefix of every member of `tag`.
pub(crate) fn tag_prefix(tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + tag.len());
    out.extend_from_slice(&u32::try_from(tag.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(tag.as_bytes());
    out
}

/// The key under which the path index holds `key`, stored at `path`: the
/// path, a zero byte, the key. Path prefixes are byte prefixes, so a
/// pattern's literal prefix is a range of this index; a member found
/// there is checked against its record before anything is removed.
pub(crate) fn path_member(path: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1 + key.len());
    out.extend_from_slice(path.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<[u64; 4]>(),
            any::<u32>(),
            ".{0,40}",
            proptest::option::of(".{0,20}"),
            proptest::collection::vec(".{0,12}", 0..5),
        )
            .prop_map(
                |([expires_ms, seq, file, len], crc, path, query, tags)| Record {
                    expires_ms,
                    seq,
                    file,
                    len,
                    crc,
                    path,
                    query,
                    tags,
                },
            )
    }

    proptest! {
        #[test]
        fn records_round_trip(r in record()) {
            prop_assert_eq!(Record::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode(&bytes);
            let _ = State::decode(&bytes);
        }

        /// A hit reads the fixed fields alone: of exactly the records
        /// `decode` takes, with the same values.
        #[test]
        fn fixed_fields_are_read_from_the_records_decode_takes(
            r in record(),
            flip in any::<prop::sample::Index>(),
            to in any::<u8>(),
        ) {
            let mut bytes = r.encode();
            let fixed = Fixed::read(&bytes).unwrap();
            prop_assert_eq!(fixed.place(), r.place());
            prop_assert_eq!((fixed.expires_ms, fixed.seq), (r.expires_ms, r.seq));
            // Any byte changed (a bad length, text that is not UTF-8, a
            // wrong version): both take it or both refuse it.
            let at = flip.index(bytes.len());
            bytes[at] = to;
            match (Record::decode(&bytes), Fixed::read(&bytes)) {
                (Ok(r), Ok(f)) => {
                    prop_assert_eq!(f.place(), r.place());
                    prop_assert_eq!((f.expires_ms, f.seq), (r.expires_ms, r.seq));
                }
                (Err(_), Err(_)) => {}
                (d, f) => prop_assert!(false, "decode {:?}, fixed {:?}", d, f),
            }
        }

        #[test]
        fn a_cut_or_extended_record_is_refused(r in record(), cut in any::<prop::sample::Index>(), extra in any::<u8>()) {
            let bytes = r.encode();
            let at = cut.index(bytes.len());
            prop_assert_eq!(Record::decode(&bytes[..at]), Err(BadRecord));
            let mut longer = bytes.clone();
            longer.push(extra);
            prop_assert_eq!(Record::decode(&longer), Err(BadRecord));
        }

        #[test]
        fn states_round_trip(used in any::<u64>(), count in any::<u64>(), next in any::<u64>(), commit in any::<u64>()) {
            let s = State { used, count, next, commit };
            prop_assert_eq!(State::decode(&s.encode()), Ok(s));
            // The first version (no commit count) still reads.
            let mut v1 = s.encode()[..25].to_vec();
            v1[0] = STATE_V1;
            prop_assert_eq!(State::decode(&v1), Ok(State { commit: 0, ..s }));
        }

        #[test]
        fn order_members_give_back_their_key_file_and_state(
            key in ".{0,60}",
            file in any::<u64>(),
            used in any::<u64>(),
            commit in any::<u64>(),
        ) {
            let state = State { used, count: 3, next: 9, commit };
            let mut member = order_member(file, &State::default(), key.as_bytes());
            set_member_state(&mut member, &state);
            prop_assert_eq!(
                read_order_member(&member),
                OrderMember { key: key.as_bytes(), file: Some(file), state: Some(state), current: true }
            );
            // A member of the earlier form is the key alone.
            prop_assert_eq!(
                read_order_member(key.as_bytes()),
                OrderMember { key: key.as_bytes(), file: None, state: None, current: false }
            );
        }

        #[test]
        fn hostile_order_members_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = bytes;
            let member = read_order_member(&bytes);
            prop_assert!(member.key.len() <= bytes.len());
            set_member_state(&mut bytes, &State::default());
        }
    }

    #[test]
    fn a_huge_tag_count_is_refused_without_allocating() {
        let mut bytes = Record {
            expires_ms: 0,
            seq: 0,
            file: 0,
            len: 0,
            crc: 0,
            path: String::new(),
            query: None,
            tags: vec![],
        }
        .encode();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Record::decode(&bytes), Err(BadRecord));
    }

    #[test]
    fn no_tag_is_a_prefix_of_another_tags_members() {
        assert!(!tag_member("ab", "c").starts_with(&tag_prefix("a")));
        assert!(tag_member("a", "bc").starts_with(&tag_prefix("a")));
    }
}
