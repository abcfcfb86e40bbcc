//! Large entries in sealed memory files, so a server can send cache hits
//! with `sendfile(2)` instead of copying them into the socket.
//!
//! A hit of a large body is a copy from the cache's memory into the
//! socket (nginx sends its cache files with `sendfile` and has none). With
//! [`enable`] on, a store value of at least `seal_min` bytes given to
//! [`seal`] is written once into a memory file (`memfd_create`), sealed
//! against any further write, shrink or grow, and mapped read-only. The
//! returned [`Bytes`] reads that mapping like any other, and [`find`] tells a
//! writer which file and offset a slice of it comes from, so the kernel can
//! hand the file's pages to the socket.
//!
//! Why this cannot leak one response into another: the kernel may still hold
//! a file's pages for a slow client after the entry is evicted, but the file
//! can never change (the seals are checked by the kernel, and the seal list
//! itself is sealed), and its pages are freed only when nothing holds them.
//! Memory that is reused is never memory that was handed to a socket.
//!
//! A file a store keeps on disk and never changes in place, of at least
//! `min_len` bytes, can be given to [`map_file`] instead: it is mapped
//! read-only (shared) and found by [`find`] the same way, so a hit is sent
//! from the file's own pages.
//!
//! The two minimums differ because the two sources cost the kernel
//! differently: it hands a disk file's pages to a socket in batches, a
//! memory file's one page lookup at a time, and below a few hundred
//! kilobytes copying a value into the socket costs less than that (see
//! the server's `SEAL_MIN`).
//!
//! Off until [`enable`] is called (the `uip-cache` server calls it); each
//! sealed value holds one file descriptor, so `enable` raises the soft
//! descriptor limit to the hard one and uses at most a quarter of it. When
//! that budget (or a quarter of the kernel's limit on memory mappings,
//! since each value is one) is used up, or anything fails, values stay
//! ordinary memory.
//! On systems other than Linux every function here is a no-op.
//!
//! ```
//! use bytes::Bytes;
//! use uip_cache_core::zerocopy;
//!
//! zerocopy::enable(16 * 1024, 64 * 1024);
//! let value = zerocopy::seal(Bytes::from(vec![7u8; 100_000]));
//! assert_eq!(&value[..], &[7u8; 100_000][..]);
//! # #[cfg(target_os = "linux")]
//! assert_eq!(zerocopy::find(&value[10..20]).unwrap().offset(), 10);
//! // Below the sealing minimum a value stays ordinary memory.
//! let small = zerocopy::seal(Bytes::from(vec![7u8; 20_000]));
//! assert!(zerocopy::find(&small).is_none());
//! ```

use bytes::Bytes;

#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
pub use other::*;

/// Bytes sent from sealed memory so far (all sockets, all threads).
pub fn sent_bytes() -> u64 {
    SENT.load(std::sync::atomic::Ordering::Relaxed)
}

static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(not(target_os = "linux"))]
mod other {
    use super::Bytes;

    /// Does nothing on this system; the number of values that may be sealed
    /// (0).
    pub fn enable(_min_len: usize, _seal_min: usize) -> usize {
        0
    }

    /// Returns `value` as it is on this system.
    pub fn seal(value: Bytes) -> Bytes {
        value
    }

    /// Gives `file` back on this system (read it instead).
    pub fn map_file(file: std::fs::File, _len: usize) -> Result<Bytes, std::fs::File> {
        Err(file)
    }

    /// Never on this system.
    pub fn maps(_len: usize) -> bool {
        false
    }

    /// Never a sealed slice on this system.
    pub fn find(_slice: &[u8]) -> Option<Sealed> {
        None
    }

    /// A slice of sealed memory (never made on this system).
    #[derive(Debug)]
    pub struct Sealed(());

    impl Sealed {
        /// Where the slice starts in its file.
        pub fn offset(&self) -> usize {
            0
        }

        /// The length of its file now (never called on this system).
        pub fn file_len(&self) -> std::io::Result<u64> {
            Ok(0)
        }

        /// Whether the slice lies in a store's file (never on this system).
        pub fn is_file(&self) -> bool {
            false
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    //! The one place of the workspace with `unsafe`: system calls and a
    //! slice over a read-only mapping. Each block says why it is sound.

    use std::collections::BTreeMap;
    use std::fs::File;
    use std::io::{self, Write};
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, RwLock, Weak};

    use super::{Bytes, SENT};

    /// Smallest file mapped; `usize::MAX` while off.
    static MIN_LEN: AtomicUsize = AtomicUsize::new(usize::MAX);
    /// Smallest value sealed; `usize::MAX` while off.
    static SEAL_MIN: AtomicUsize = AtomicUsize::new(usize::MAX);
    /// How many values may be sealed at once (one descriptor each).
    static MAX_REGIONS: AtomicUsize = AtomicUsize::new(0);
    /// How many are.
    static LIVE: AtomicUsize = AtomicUsize::new(0);

    /// Live mappings by start address: their length and the region.
    type Registry = BTreeMap<usize, (usize, Weak<Region>)>;
    static REGISTRY: RwLock<Registry> = RwLock::new(BTreeMap::new());

    fn registry_read() -> std::sync::RwLockReadGuard<'static, Registry> {
        REGISTRY.read().unwrap_or_else(|p| p.into_inner())
    }

    fn registry_write() -> std::sync::RwLockWriteGuard<'static, Registry> {
        REGISTRY.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Turns mapping on for files of at least `min_len` bytes and sealing
    /// for values of at least `seal_min` (each at least 1); the number of
    /// files and values that may be mapped or sealed at once.
    pub fn enable(min_len: usize, seal_min: usize) -> usize {
        let limit = raise_descriptor_limit();
        // Each value is also a mapping of its own: past the kernel's limit
        // on mappings every allocation of the process would fail, so a
        // quarter of that limit too.
        let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(65_530);
        let max = usize::try_from((limit / 4).min(maps / 4)).unwrap_or(usize::MAX);
        MAX_REGIONS.store(max, Ordering::Relaxed);
        MIN_LEN.store(min_len.max(1), Ordering::Relaxed);
        SEAL_MIN.store(seal_min.max(1), Ordering::Relaxed);
        max
    }

    /// Raises the soft limit on open descriptors to the hard one; the limit
    /// in force.
    fn raise_descriptor_limit() -> u64 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit for the call to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit read by the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }

    /// One sealed, mapped memory file.
    #[derive(Debug)]
    struct Region {
        ptr: usize,
        len: usize,
        fd: OwnedFd,
        /// A store's file ([`map_file`]), not a memory file ([`seal`]).
        file: bool,
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // Unregister before unmapping, so the address is never found
            // once it may be mapped again.
            registry_write().remove(&self.ptr);
            // SAFETY: `ptr..ptr+len` is the mapping made in `map`, unmapped
            // only here, and no slice of it outlives the region (every
            // `Bytes` over it holds an `Arc` of the region).
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The owner of a sealed `Bytes`.
    struct Mapped(Arc<Region>);

    impl AsRef<[u8]> for Mapped {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: the region maps `len` readable bytes at `ptr` for as
            // long as it lives (it does while `self` does); the file is a
            // memory file sealed against writes (`seal`) or a file nobody
            // writes or cuts while mapped (`map_file`'s contract), so the
            // bytes never change under the slice.
            unsafe { std::slice::from_raw_parts(self.0.ptr as *const u8, self.0.len) }
        }
    }

    /// Writes `value` into a new sealed memory file and maps it read-only.
    fn map(value: &[u8]) -> io::Result<Region> {
        // SAFETY: a NUL-terminated name and flags; returns a new descriptor
        // or -1.
        let raw = unsafe {
            libc::memfd_create(
                c"uip-cache-entry".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned to us and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = File::from(fd);
        file.write_all(value)?;
        let fd = OwnedFd::from(file);
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: F_ADD_SEALS on a descriptor we own takes an int argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh read-only private mapping of `value.len()` (> 0)
        // bytes of a file that long; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                value.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            ptr: ptr as usize,
            len: value.len(),
            fd,
            file: false,
        })
    }

    /// Whether a file of `len` bytes would be mapped now: mapping is on,
    /// `len` is at least its minimum and the budget is not used up (a
    /// snapshot: another thread may take the last of it).
    pub fn maps(len: usize) -> bool {
        len > 0
            && len >= MIN_LEN.load(Ordering::Relaxed)
            && LIVE.load(Ordering::Relaxed) < MAX_REGIONS.load(Ordering::Relaxed)
    }

    /// `value` in sealed memory when sealing is on, it is at least the
    /// sealing minimum and the descriptor budget allows; otherwise `value`.
    /// The bytes are the same either way.
    pub fn seal(value: Bytes) -> Bytes {
        if value.len() < SEAL_MIN.load(Ordering::Relaxed) || find(&value).is_some() {
            return value;
        }
        let max = MAX_REGIONS.load(Ordering::Relaxed);
        if LIVE
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return value;
        }
        match map(&value) {
            Ok(region) => {
                let region = Arc::new(region);
                registry_write().insert(region.ptr, (region.len, Arc::downgrade(&region)));
                Bytes::from_owner(Mapped(region))
            }
            Err(e) => {
                LIVE.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "could not seal an entry; keeping it in ordinary memory");
                value
            }
        }
    }

    /// `file`, a regular file `len` bytes long (its length now, checked
    /// by the caller), mapped read-only and shared as [`Bytes`] whose
    /// slices [`find`] knows, so they leave with `sendfile(2)` from the file
    /// itself, as a web server sends its cache files. The file is given
    /// back (read it instead) when sealing is off, `len` is below the
    /// minimum length or 0, the descriptor budget is used up (the mapping
    /// holds `file` open, and counts against the same budget as sealed
    /// values) or the mapping fails.
    ///
    /// Only for files nobody writes or cuts while they are mapped: the
    /// bytes would change under the [`Bytes`], and reading a page past a
    /// cut end raises `SIGBUS`. The disk store's body files are written
    /// once, before any record names them, and only ever unlinked (an
    /// unlinked file stays whole while mapped).
    pub fn map_file(file: File, len: usize) -> Result<Bytes, File> {
        if len == 0 || len < MIN_LEN.load(Ordering::Relaxed) {
            return Err(file);
        }
        let max = MAX_REGIONS.load(Ordering::Relaxed);
        if LIVE
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(file);
        }
        // SAFETY: a fresh read-only shared mapping of `len` (> 0) bytes of
        // an open file the caller found that long; the kernel picks the
        // address. Reading it is sound as long as nobody writes or cuts
        // the file while it is mapped, which `map_file`'s callers promise
        // (see its docs).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %io::Error::last_os_error(), "could not map a file; reading it instead");
            return Err(file);
        }
        let region = Arc::new(Region {
            ptr: ptr as usize,
            len,
            fd: OwnedFd::from(file),
            file: true,
        });
        registry_write().insert(region.ptr, (region.len, Arc::downgrade(&region)));
        Ok(Bytes::from_owner(Mapped(region)))
    }

    /// Where `slice` lies in sealed memory, if it does entirely.
    pub fn find(slice: &[u8]) -> Option<Sealed> {
        if slice.is_empty() {
            return None;
        }
        let at = slice.as_ptr() as usize;
        let registry = registry_read();
        let (&start, (len, region)) = registry.range(..=at).next_back()?;
        if at.checked_add(slice.len())? > start + len {
            return None;
        }
        Some(Sealed {
            region: region.upgrade()?,
            offset: at - start,
        })
    }

    /// A slice of sealed memory: its file and where it starts there.
    #[derive(Debug)]
    pub struct Sealed {
        region: Arc<Region>,
        offset: usize,
    }

    impl Sealed {
        /// Where the slice starts in its file.
        pub fn offset(&self) -> usize {
            self.offset
        }

        /// Whether the slice lies in a store's file ([`map_file`]) rather
        /// than in a memory file ([`seal`]).
        pub fn is_file(&self) -> bool {
            self.region.file
        }

        /// The length its file has now (`fstat(2)` of the descriptor the
        /// mapping holds, no path looked up): a file cut since it was mapped
        /// ([`map_file`]) is shorter than the mapping, and reading past its
        /// end would raise `SIGBUS`.
        pub fn file_len(&self) -> io::Result<u64> {
            let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: the descriptor is open while `self` holds the region,
            // and `stat` is room for one `struct stat`, which the kernel
            // fills when the call succeeds (and only then is it read).
            let stat = unsafe {
                if libc::fstat(self.region.fd.as_raw_fd(), stat.as_mut_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                stat.assume_init()
            };
            u64::try_from(stat.st_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
        }

        /// Sends up to `len` bytes of the file from the slice's start to
        /// `socket` with `sendfile(2)`; how many were sent. A non-blocking
        /// socket that is full gives `WouldBlock`.
        pub fn send(&self, socket: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
            let len = len.min(self.region.len.saturating_sub(self.offset));
            let mut offset = libc::off_t::try_from(self.offset)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: both descriptors are open for the call (the region is
            // held by `self`, the socket is borrowed), `offset` is a valid
            // off_t to update, and `len` stays within the file.
            let n = unsafe {
                libc::sendfile(
                    socket.as_raw_fd(),
                    self.region.fd.as_fd().as_raw_fd(),
                    &mut offset,
                    len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            SENT.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(n)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        fn on() {
            enable(1024, 1024);
        }

        #[test]
        fn small_values_stay_ordinary_and_large_ones_are_sealed_and_equal() {
            on();
            let small = seal(Bytes::from(vec![1u8; 100]));
            assert!(find(&small).is_none());
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let sealed = seal(Bytes::from(data.clone()));
            assert_eq!(&sealed[..], &data[..]);
            let found = find(&sealed[5000..6000]).expect("sealed");
            assert_eq!(found.offset(), 5000);
            // Sealing twice does not copy again.
            let again = seal(sealed.clone());
            assert_eq!(again.as_ptr(), sealed.as_ptr());
        }

        #[test]
        fn the_file_refuses_writes_and_the_region_goes_with_its_last_bytes() {
            on();
            let sealed = seal(Bytes::from(vec![9u8; 50_000]));
            let found = find(&sealed).expect("sealed");
            let fd = found.region.fd.try_clone().unwrap();
            let mut file = File::from(fd);
            assert_eq!(
                file.write(b"x").unwrap_err().raw_os_error(),
                Some(libc::EPERM),
                "a sealed file takes no write"
            );
            let start = sealed.as_ptr() as usize;
            drop(found);
            let tail = sealed.slice(40_000..);
            drop(sealed);
            assert!(find(&tail).is_some(), "a slice keeps the region");
            drop(tail);
            assert!(
                !registry_read().contains_key(&start),
                "unregistered on drop"
            );
        }

        #[test]
        fn sendfile_sends_the_slice_exactly() {
            on();
            let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
            let sealed = seal(Bytes::from(data.clone()));
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut &b, &mut out).unwrap();
                out
            });
            let part = &sealed[1234..80_000];
            let found = find(part).unwrap();
            let mut sent = 0;
            while sent < part.len() {
                let s = Sealed {
                    region: found.region.clone(),
                    offset: found.offset + sent,
                };
                sent += s.send(a.as_fd(), part.len() - sent).unwrap();
            }
            drop(a);
            assert_eq!(reader.join().unwrap(), &data[1234..80_000]);
        }

        #[test]
        fn a_mapped_file_reads_as_its_bytes_and_is_sent_from_the_file() {
            on();
            let data: Vec<u8> = (0..150_000u32).map(|i| (i * 13 % 256) as u8).collect();
            let path =
                std::env::temp_dir().join(format!("uip-cache-zerocopy-map-{}", std::process::id()));
            std::fs::write(&path, &data).unwrap();
            let small = path.with_extension("small");
            std::fs::write(&small, b"tiny").unwrap();
            let open = |p: &std::path::Path| File::open(p).unwrap();
            assert!(map_file(open(&small), 4).is_err(), "below the minimum");
            assert!(map_file(open(&path), 0).is_err(), "empty");
            let mapped = map_file(open(&path), data.len()).unwrap();
            // Unlinked while mapped: the bytes stay.
            std::fs::remove_file(&path).unwrap();
            std::fs::remove_file(&small).unwrap();
            assert_eq!(&mapped[..], &data[..]);
            let part = mapped.slice(777..140_000);
            let found = find(&part).expect("found");
            assert_eq!(found.offset(), 777);
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut &b, &mut out).unwrap();
                out
            });
            let mut sent = 0;
            while sent < part.len() {
                let s = find(&part[sent..]).unwrap();
                sent += s.send(a.as_fd(), part.len() - sent).unwrap();
            }
            drop(a);
            assert_eq!(reader.join().unwrap(), &data[777..140_000]);
            let start = mapped.as_ptr() as usize;
            drop((mapped, part, found));
            assert!(!registry_read().contains_key(&start), "unmapped on drop");
        }

        proptest! {
            #[test]
            fn find_gives_the_offset_of_any_sub_slice(len in 2000usize..40_000, a in 0usize..40_000, b in 0usize..40_000) {
                on();
                let sealed = seal(Bytes::from(vec![3u8; len]));
                let (a, b) = (a % len, b % len);
                let (lo, hi) = (a.min(b), a.max(b));
                let found = find(&sealed[lo..hi]);
                if lo == hi {
                    prop_assert!(found.is_none());
                } else {
                    prop_assert_eq!(found.unwrap().offset(), lo);
                }
                // A slice running past the mapping is never reported.
                let outside = [0u8; 4];
                prop_assert!(find(&outside).is_none());
            }
        }
    }
}
