//! TLS both ways: termination for clients (`server.tls`) and verified
//! connections to `https://` upstreams (`server.upstream_tls`), with
//! rustls.
//!
//! # The crypto provider: ring
//!
//! rustls is built with *ring*, not aws-lc-rs. Measured with
//! `bench/tls.sh` on the development machine, aws-lc-rs made no difference
//! a run's noise does not make (2 KB hits 0.93x nginx against ring's 0.95x,
//! 64 KB 1.48x against 1.46-1.66x, 224 µs of server CPU per new connection
//! against 213 µs): both run the same kind of assembly for what a hit costs
//! (AES-GCM with AES-NI, ChaCha20-Poly1305, P-256, X25519). What differs is
//! the build: aws-lc-sys' build script takes about 57 s (release, two
//! jobs), ring's 6.5 s, in every clean build and every feature combination
//! CI checks.
//!
//! The cost: ring has no post-quantum key exchange (X25519MLKEM768), which
//! is why rustls 0.23.48 marks its ring provider deprecated; clients that
//! offer it agree on X25519 instead. Moving to aws-lc-rs is a change of
//! [`provider`] and of the rustls, tokio-rustls and hyper-rustls features.
//!
//! # Termination
//!
//! [`Certificates`] holds the certificates of `server.tls.certificates`:
//! each serves the DNS names of its certificate's subject alternative
//! names (exact, or one-label `*.` wildcards), chosen by the client's SNI;
//! a client that sends no SNI, or a name no certificate has, gets the
//! first. TLS 1.3 and 1.2 only; ALPN offers `h2`, then `http/1.1`.
//!
//! Certificates are read again without a restart ([`Certificates::reload`],
//! on SIGHUP, and by [`Certificates::watch_files`] when a file changes):
//! a set with any file at fault changes nothing (the error names the
//! file), and a new set replaces the old at once for new handshakes while
//! handshakes in progress finish with the certificate they chose.
//!
//! A handshake must finish within [`HANDSHAKE_TIMEOUT`] of the TCP
//! connection's opening: a client that connects and sends nothing, or
//! sends its ClientHello a byte at a time, holds its connection that long
//! at most. The connection limit counts connections still in their
//! handshake.

mod certs;
pub mod client;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use uip_cache_core::config::TlsConfig;

use certs::CertSet;
pub use certs::{CertError, CertificateFiles};

/// Time from a TLS connection's opening to the end of its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Certificates::watch_files`] looks at the files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The crypto provider both directions use (see the module docs).
pub fn provider() -> Arc<CryptoProvider> {
    // Deprecated for want of post-quantum key exchange only (see above).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions offered both ways: TLS 1.3 and 1.2.
pub(crate) static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocols a TLS listener offers, by preference.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What a file looked like when last read: reloading is tried again only
/// when one of them changes.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

struct Inner {
    provider: Arc<CryptoProvider>,
    files: Mutex<Vec<CertificateFiles>>,
    /// Swapped whole: a handshake takes its own `Arc` of the set.
    current: RwLock<Arc<CertSet>>,
    stamps: Mutex<Vec<Stamp>>,
}

/// The certificates a TLS listener serves, read from PEM files and read
/// again without a restart (see the module docs). A cheap handle: clones
/// share the certificates.
#[derive(Clone)]
pub struct Certificates(Arc<Inner>);

impl Certificates {
    /// Reads `files` (at least one); the first is the default certificate.
    pub fn load(files: Vec<CertificateFiles>) -> Result<Self, CertError> {
        if files.is_empty() {
            return Err(CertError::new(Path::new(""), "no certificate files given"));
        }
        let provider = provider();
        let stamps = files_stamps(&files);
        let set = CertSet::load(&files, &provider)?;
        Ok(Certificates(Arc::new(Inner {
            provider,
            files: Mutex::new(files),
            current: RwLock::new(Arc::new(set)),
            stamps: Mutex::new(stamps),
        })))
    }

    /// The certificates of `server.tls`, relative paths read from `base`
    /// (the config file's folder).
    pub fn from_config(tls: &TlsConfig, base: &Path) -> Result<Self, CertError> {
        Certificates::load(files_of(tls, base))
    }

    /// Reads the same files again. On success the new set serves every
    /// handshake from now on and the answer is how many certificates it
    /// has; on error nothing changes.
    pub fn reload(&self) -> Result<usize, CertError> {
        let files = self.files();
        self.install(files.clone(), Some(files))
    }

    /// Reads `files` (a reloaded config's `server.tls`) and, when all of
    /// them are usable, serves them from now on instead of the current
    /// files; on error nothing changes.
    pub fn replace(&self, files: Vec<CertificateFiles>) -> Result<usize, CertError> {
        self.install(files, None)
    }

    fn files(&self) -> Vec<CertificateFiles> {
        self.0
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads `files` and serves them. `read_from`: the list a reload read
    /// `files` from; when another list was installed while they were read
    /// (a config reload's [`replace`](Self::replace) that finished first),
    /// they are dropped: the newer list stays.
    fn install(
        &self,
        files: Vec<CertificateFiles>,
        read_from: Option<Vec<CertificateFiles>>,
    ) -> Result<usize, CertError> {
        if files.is_empty() {
            return Err(CertError::new(Path::new(""), "no certificate files given"));
        }
        let stamps = files_stamps(&files);
        let loaded = CertSet::load(&files, &self.0.provider);
        // The list, the stamps and the set change together, under the
        // list's lock; the files are read outside it.
        let mut installed = self.0.files.lock().unwrap_or_else(|e| e.into_inner());
        if read_from.is_some_and(|read| *installed != read) {
            return Ok(self.set().names().len());
        }
        // Whatever happens, these versions of the files were tried.
        *self.0.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        let set = loaded?;
        let n = set.names().len();
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *installed = files;
        Ok(n)
    }

    /// Whether a file changed since it was last read.
    fn changed(&self) -> bool {
        let files = self.files();
        let now = files_stamps(&files);
        *self.0.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// The DNS names each certificate serves, in file order.
    pub fn names(&self) -> Vec<Vec<String>> {
        self.set().names().to_vec()
    }

    fn set(&self) -> Arc<CertSet> {
        self.0
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The rustls configuration of a listener serving these certificates:
    /// TLS 1.3 and 1.2, ALPN `h2` and `http/1.1`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(self.0.provider.clone())
            .with_protocol_versions(VERSIONS)
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self.clone()));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Reads the certificates again whenever one of their files changes
    /// (looked at every `interval`), until `stop` resolves. A change that
    /// leaves a file unusable (a key written before its certificate) is
    /// logged with the file and tried again at the next change.
    pub async fn watch_files(
        self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            if self.changed() {
                let _ = self.reload_logged("a certificate file changed");
            }
        }
    }

    /// [`Certificates::reload`], with the outcome logged; `why` says what
    /// asked for it.
    pub fn reload_logged(&self, why: &str) -> Result<usize, CertError> {
        let result = self.reload();
        match &result {
            Ok(n) => tracing::info!(certificates = n, reason = why, "TLS certificates reloaded"),
            Err(e) => tracing::error!(
                file = %e.file().display(),
                error = %e,
                reason = why,
                "TLS certificates not reloaded: the previous ones stay in use"
            ),
        }
        result
    }
}

fn files_stamps(files: &[CertificateFiles]) -> Vec<Stamp> {
    files
        .iter()
        .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
        .collect()
}

/// The files `server.tls` names, relative ones under `base`.
pub fn files_of(tls: &TlsConfig, base: &Path) -> Vec<CertificateFiles> {
    tls.certificates
        .iter()
        .map(|c| CertificateFiles::new(base.join(&*c.cert), base.join(&*c.key)))
        .collect()
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.set().pick(hello.server_name())
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files())
            .field("names", &self.names())
            .finish()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    /// A certificate for `name` and its key, written under `dir`.
    fn write_cert(dir: &Path, name: &str) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertificateFiles::new(
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The watcher's reload read the old list, a config reload replaced
    /// it meanwhile: the old certificates are not put back when the
    /// watcher's read ends. The old certificate file is a FIFO, so the
    /// watcher's read waits for this test to write it.
    #[test]
    fn a_reload_that_read_the_old_list_does_not_undo_a_replace() {
        let dir =
            Dir(std::env::temp_dir().join(format!("uip-cache-tls-race-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let old = write_cert(&dir.0, "old.test");
        let new = write_cert(&dir.0, "new.test");
        let certs = Certificates::load(vec![old.clone()]).unwrap();
        let pem = std::fs::read(&old.cert).unwrap();
        std::fs::remove_file(&old.cert).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&old.cert)
            .status()
            .unwrap();
        assert!(made.success());

        let watcher = {
            let certs = certs.clone();
            std::thread::spawn(move || certs.reload())
        };
        // Opening the FIFO for writing returns once the reload has opened
        // it for reading: it has read the list and is reading the files.
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .open(&old.cert)
            .unwrap();
        assert_eq!(certs.replace(vec![new]).unwrap(), 1);
        fifo.write_all(&pem).unwrap();
        drop(fifo);
        watcher.join().unwrap().unwrap();

        assert_eq!(certs.names(), vec![vec!["new.test".to_owned()]]);
    }
}
