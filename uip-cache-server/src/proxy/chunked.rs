//! A chunked response body (RFC 9112 section 7.1) decoded as it arrives
//! from a backend, for the relay of the fast loop (see
//! `crate::server::hits`), which passes the data on and keeps nothing.
//!
//! Written here rather than taken from hyper, whose decoder is private to
//! its connection type. It is as strict as hyper's: hexadecimal sizes of
//! at most 16 digits, optional whitespace and extensions after them (at
//! most [`EXTENSIONS_MAX`] bytes over the body, no bare CR or LF in
//! them), CRLF after each line and each chunk's data, trailer fields
//! read and dropped (at most [`TRAILERS_MAX`] bytes). Anything else is an
//! error, and the relay then closes both connections: a body whose end
//! is not known exactly must never let the bytes after it be read as the
//! next response.

/// Bytes of chunk extensions a body may carry, over all its chunks.
pub(crate) const EXTENSIONS_MAX: usize = 16 * 1024;

/// Bytes of trailer section a body may end with.
pub(crate) const TRAILERS_MAX: usize = 16 * 1024;

/// What [`Chunked::decode`] found next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// Data of the body, to pass on.
    Data(&'a [u8]),
    /// Everything given was framing: more bytes are needed.
    More,
    /// The body ended (its last chunk and trailer section read).
    End,
}

/// The body is not valid chunked coding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk's size: its value and digits so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size.
    SizeSpace,
    /// An extension, up to its line's CR.
    Extension,
    /// The LF of a size line.
    SizeLf,
    /// Data bytes still to come in this chunk.
    Data(u64),
    /// The CR, then the LF, after a chunk's data.
    DataCr,
    DataLf,
    /// A trailer line (or the empty line that ends the body): whether any
    /// byte of it was read.
    Trailer {
        empty: bool,
    },
    /// The LF of a trailer line.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// A chunked body being decoded.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    /// The size of the chunk whose line is being read.
    size: u64,
    extensions: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            size: 0,
            extensions: 0,
            trailers: 0,
        }
    }
}

impl Chunked {
    /// Decodes from the start of `buf`: how many of its bytes were taken,
    /// and what they were. Data is given as soon as it is there, a piece
    /// at a time; call again with the bytes after those taken.
    pub(crate) fn decode<'a>(&mut self, buf: &'a [u8]) -> Result<(usize, Decoded<'a>), Invalid> {
        let mut at = 0;
        while at < buf.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - at);
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                return Ok((at + n, Decoded::Data(&buf[at..at + n])));
            }
            let b = buf[at];
            at += 1;
            self.state = match self.state {
                State::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(Invalid("a chunk size of more than 16 digits"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        State::Size {
                            value: (value << 4) | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(Invalid("a chunk size without digits")),
                    b' ' | b'\t' => {
                        self.size = value;
                        State::SizeSpace
                    }
                    b';' => {
                        self.size = value;
                        State::Extension
                    }
                    b'\r' => {
                        self.size = value;
                        State::SizeLf
                    }
                    _ => return Err(Invalid("a chunk size that is not hexadecimal")),
                },
                State::SizeSpace => match b {
                    b' ' | b'\t' => State::SizeSpace,
                    b';' => State::Extension,
                    b'\r' => State::SizeLf,
                    _ => return Err(Invalid("bytes after a chunk size")),
                },
                State::Extension => {
                    self.extensions += 1;
                    if self.extensions > EXTENSIONS_MAX {
                        return Err(Invalid("chunk extensions too long"));
                    }
                    match b {
                        b'\r' => State::SizeLf,
                        b'\n' => return Err(Invalid("a bare LF in a chunk extension")),
                        _ => State::Extension,
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Invalid("a chunk size line without CRLF"));
                    }
                    match self.size {
                        0 => State::Trailer { empty: true },
                        n => State::Data(n),
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                State::DataCr | State::DataLf => {
                    return Err(Invalid("chunk data not followed by CRLF"))
                }
                State::Trailer { empty } => {
                    self.trailers += 1;
                    if self.trailers > TRAILERS_MAX {
                        return Err(Invalid("trailer section too long"));
                    }
                    match b {
                        b'\r' => State::TrailerLf { empty },
                        b'\n' => return Err(Invalid("a bare LF in the trailer section")),
                        _ => State::Trailer { empty: false },
                    }
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(Invalid("a trailer line without CRLF"));
                    }
                    if empty {
                        self.state = State::Done;
                        return Ok((at, Decoded::End));
                    }
                    State::Trailer { empty: true }
                }
                State::Data(_) | State::Done => unreachable!("handled above"),
            };
        }
        Ok((
            at,
            if self.state == State::Done {
                Decoded::End
            } else {
                Decoded::More
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `wire` fed in the pieces `cuts` makes: the data, and the
    /// bytes taken up to the end (`None` if it never ended).
    fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Option<usize>), Invalid> {
        let mut chunked = Chunked::default();
        let mut data = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        bounds.push(wire.len());
        bounds.sort_unstable();
        let (mut fed, mut at) = (0, 0);
        for end in bounds {
            fed = fed.max(end);
            while at < fed {
                let (taken, what) = chunked.decode(&wire[at..fed])?;
                at += taken;
                match what {
                    Decoded::Data(d) => data.extend_from_slice(d),
                    Decoded::More => {}
                    Decoded::End => return Ok((data, Some(at))),
                }
            }
        }
        Ok((data, None))
    }

    fn encode(body: &[u8], sizes: &[usize], extension: bool, trailers: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes.get(i).copied().unwrap_or(7).clamp(1, rest.len());
            i += 1;
            wire.extend_from_slice(format!("{n:X}").as_bytes());
            if extension {
                wire.extend_from_slice(b" ;name=\"v\"");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n");
        if trailers {
            wire.extend_from_slice(b"x-sum: 1\r\nx-other: two\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    #[test]
    fn a_body_with_extensions_and_trailers_decodes_to_its_data() {
        let wire = b"5;a=b\r\nhello\r\n1\t \r\n!\r\n0\r\nx: y\r\n\r\nNEXT";
        let (data, end) = decode_in_pieces(wire, &[]).unwrap();
        assert_eq!(data, b"hello!");
        assert_eq!(
            end,
            Some(wire.len() - 4),
            "the bytes after it are not taken"
        );
    }

    #[test]
    fn what_is_not_chunked_coding_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nx: y\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_in_pieces(bad, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // The largest size is taken, and is no overflow.
        let mut c = Chunked::default();
        let (_, what) = c.decode(b"FFFFFFFFFFFFFFFF\r\nab").unwrap();
        assert_eq!(what, Decoded::Data(b"ab"));
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut wire = b"1;".to_vec();
        wire.extend(std::iter::repeat_n(b'x', EXTENSIONS_MAX + 1));
        assert!(decode_in_pieces(&wire, &[]).is_err());
        let mut wire = b"0\r\n".to_vec();
        for _ in 0..(TRAILERS_MAX / 8 + 1) {
            wire.extend_from_slice(b"x: 1234\r\n");
        }
        assert!(decode_in_pieces(&wire, &[]).is_err());
    }

    proptest! {
        /// Any body, in any chunk sizes, with or without extensions and
        /// trailers, fed in any pieces: its data and its exact end.
        #[test]
        fn chunked_bodies_decode_whole_however_they_arrive(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..200, 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            extension in any::<bool>(),
            trailers in any::<bool>(),
        ) {
            let mut wire = encode(&body, &sizes, extension, trailers);
            let end = wire.len();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let (data, taken) = decode_in_pieces(&wire, &cuts).unwrap();
            prop_assert_eq!(data, body);
            prop_assert_eq!(taken, Some(end));
        }

        /// Bytes of any kind never panic the decoder, and what it gives
        /// as data is never more than it was given.
        #[test]
        fn any_bytes_are_decoded_or_refused_without_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            if let Ok((data, _)) = decode_in_pieces(&wire, &cuts) {
                prop_assert!(data.len() <= wire.len());
            }
        }

        /// A body cut anywhere before its end never ends.
        #[test]
        fn a_cut_body_never_ends(
            body in proptest::collection::vec(any::<u8>(), 1..300),
            sizes in proptest::collection::vec(1usize..50, 0..10),
            cut in any::<usize>(),
        ) {
            let wire = encode(&body, &sizes, false, false);
            let cut = cut % wire.len();
            let (_, taken) = decode_in_pieces(&wire[..cut], &[]).unwrap();
            prop_assert_eq!(taken, None);
        }
    }
}
