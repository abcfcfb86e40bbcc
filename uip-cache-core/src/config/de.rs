//! Field deserializers shared by the sections: empty strings as none,
//! durations and sizes that must not be zero.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ByteSize, Seconds};

pub(super) fn yes() -> bool {
    true
}

pub(super) fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

pub(super) fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
    let v = Seconds::deserialize(d)?;
    if v.get().is_zero() {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

pub(super) fn nonzero_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    let v = ByteSize::deserialize(d)?;
    if v.bytes() == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

pub(super) fn positive_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Seconds>, D::Error> {
    let v = Option::<Seconds>::deserialize(d)?;
    if let Some(s) = v {
        if s.get().is_zero() {
            return Err(serde::de::Error::custom(
                "ttl must be at least 1 second; leave `ttl` out to store only what the origin marks fresh",
            ));
        }
        if s.get() > Duration::from_secs(365 * 86_400) {
            return Err(serde::de::Error::custom("ttl must be at most one year"));
        }
    }
    Ok(v)
}
