//! What a client got back, the same whichever adapter or transport answered.

use bytes::Bytes;

/// A finished response: status, headers in order, the whole body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Got {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl Got {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lower case), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `X-Cache` (`HIT`, `MISS`, `STALE`, ...), empty when absent.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }

    /// `Cache-Status`, empty when absent.
    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[cfg(feature = "tower")]
pub(crate) use from_http::header_pairs;

#[cfg(any(feature = "tower", feature = "client"))]
mod from_http {
    use http_body_util::BodyExt;

    use super::Got;

    impl Got {
        /// Reads a whole `http` response.
        pub async fn read<B>(resp: http::Response<B>) -> Result<Got, B::Error>
        where
            B: http_body::Body,
        {
            let (parts, body) = resp.into_parts();
            Ok(Got {
                status: parts.status.as_u16(),
                headers: header_pairs(&parts.headers),
                body: body.collect().await?.to_bytes(),
            })
        }
    }

    /// The header fields of `h` as text pairs.
    pub(crate) fn header_pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
}
