//! A set of certificates read from PEM files, and the choice of one for a
//! handshake by the client's SNI.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A PEM file larger than this is not read (a certificate chain is a few
/// kilobytes; this bounds what a wrong path, such as a log file, costs).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The two files of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateFiles {
    /// PEM: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl CertificateFiles {
    /// The files `cert` and `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// A certificate or key file that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertError {
    file: PathBuf,
    message: String,
}

impl CertError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        CertError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    /// The file at fault.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for CertError {}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, CertError> {
    let file = std::fs::File::open(path).map_err(|e| CertError::new(path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CertError::new(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(CertError::new(path, "larger than 1 MB: not a PEM file"));
    }
    Ok(bytes)
}

/// The certificate chain in a PEM file: at least one certificate.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::new(path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::new(
            path,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(chain)
}

/// The private key in a PEM file.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| CertError::new(path, format!("no usable PEM private key in it: {e}")))
}

/// One certificate with its key, and the names it serves.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

fn load_one(files: &CertificateFiles, provider: &CryptoProvider) -> Result<Loaded, CertError> {
    let chain = read_chain(&files.cert)?;
    let names = {
        let end_entity = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
            CertError::new(
                &files.cert,
                format!("the first certificate is not valid: {e}"),
            )
        })?;
        end_entity
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    let key = read_key(&files.key)?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        CertError::new(
            &files.key,
            format!(
                "not the key of {}: {e}",
                files.cert.file_name().map_or_else(
                    || files.cert.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
    })
}

/// Certificates by the names they serve: exact names, then `*.` wildcard
/// names (one label, as RFC 6125 allows), then the first certificate.
#[derive(Debug)]
pub(crate) struct CertSet {
    certs: Vec<Arc<CertifiedKey>>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    names: Vec<Vec<String>>,
}

impl CertSet {
    /// Reads every certificate of `files`; the first file at fault is the
    /// error (nothing is half loaded).
    pub(crate) fn load(
        files: &[CertificateFiles],
        provider: &CryptoProvider,
    ) -> Result<Self, CertError> {
        let mut set = CertSet {
            certs: Vec::with_capacity(files.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            names: Vec::with_capacity(files.len()),
        };
        for (i, f) in files.iter().enumerate() {
            let loaded = load_one(f, provider)?;
            for name in &loaded.names {
                // File order decides: an earlier certificate keeps a name.
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.entry(parent.to_owned()).or_insert(i),
                    None => set.exact.entry(name.clone()).or_insert(i),
                };
            }
            set.certs.push(loaded.key);
            set.names.push(loaded.names);
        }
        Ok(set)
    }

    /// The certificate for a client that asked for `server_name` (SNI),
    /// or the first one.
    pub(crate) fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let i = server_name.and_then(|n| self.find(n)).unwrap_or(0);
        self.certs.get(i).cloned()
    }

    fn find(&self, name: &str) -> Option<usize> {
        // SNI names are short (rustls only passes valid DNS names); a
        // trailing dot names the same host.
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some(i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    /// The names each certificate serves, in file order.
    pub(crate) fn names(&self) -> &[Vec<String>] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(exact: &[(&str, usize)], wildcard: &[(&str, usize)]) -> CertSet {
        CertSet {
            certs: Vec::new(),
            exact: exact.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            wildcard: wildcard.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            names: Vec::new(),
        }
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let s = set(&[("a.test", 0), ("x.b.test", 2)], &[("b.test", 1)]);
        assert_eq!(s.find("a.test"), Some(0));
        assert_eq!(s.find("A.Test."), Some(0));
        assert_eq!(s.find("y.b.test"), Some(1));
        assert_eq!(s.find("x.b.test"), Some(2));
        assert_eq!(s.find("b.test"), None);
        assert_eq!(s.find("z.y.b.test"), None);
        assert_eq!(s.find(""), None);
        assert_eq!(s.find("."), None);
    }

    proptest::proptest! {
        /// Any name a client sends is looked up without a panic, and a
        /// wildcard answers only for names one label under it.
        #[test]
        fn any_server_name_is_looked_up_safely(name in "\\PC{0,300}") {
            let s = set(&[("a.test", 0)], &[("b.test", 1)]);
            if s.find(&name) == Some(1) {
                let lower = name.trim_end_matches('.').to_ascii_lowercase();
                let (label, parent) = lower.split_once('.').unwrap();
                proptest::prop_assert_eq!(parent, "b.test");
                proptest::prop_assert!(!label.contains('.'));
            }
        }
    }
}
