//! Measures the storage engines considered for the disk store, on this
//! machine: put and get of entries of a given size, the bytes on disk per
//! entry, and the time to open a store holding many entries.
//!
//! ```text
//! disk-engines putget <engine> <dir> <size> <count>
//! disk-engines fill   <engine> <dir> <count>      # metadata-sized records
//! disk-engines open   <engine> <dir>              # time to open and read one
//! ```
//! Engines: redb-inline (bodies in redb), redb-files (metadata in redb,
//! bodies in files), fjall-inline (bodies in fjall, large ones in its blob
//! files), fjall-files (metadata in fjall, bodies in files).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("entries");

trait Engine {
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// Many records in one write (for `fill`).
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]);
}

struct RedbInline(Database);
struct RedbFiles(Database, PathBuf);
struct FjallInline(fjall::Database, fjall::Keyspace);
struct FjallFiles(fjall::Database, fjall::Keyspace, PathBuf);

fn body_path(dir: &Path, key: &[u8]) -> PathBuf {
    let h = crc32fast::hash(key);
    let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{:02x}", h & 0xff)).join(name)
}

/// Writes a body file (no fsync: a process crash keeps what write(2) took;
/// the checksum catches what a power loss tears).
fn write_body(dir: &Path, key: &[u8], value: &[u8]) -> Vec<u8> {
    let p = body_path(dir, key);
    let tmp = p.with_extension("tmp");
    let mut f = fs::File::create(&tmp).unwrap();
    f.write_all(value).unwrap();
    fs::rename(&tmp, &p).unwrap();
    // The metadata record: body length and checksum.
    let mut meta = (value.len() as u64).to_le_bytes().to_vec();
    meta.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    meta
}

fn read_body(dir: &Path, key: &[u8], meta: &[u8]) -> Option<Vec<u8>> {
    let body = fs::read(body_path(dir, key)).ok()?;
    let crc = u32::from_le_bytes(meta[8..12].try_into().unwrap());
    (crc32fast::hash(&body) == crc).then_some(body)
}

fn redb_put(db: &Database, items: &[(&[u8], &[u8])]) {
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::Immediate).unwrap();
    {
        let mut t = tx.open_table(TABLE).unwrap();
        for (k, v) in items {
            t.insert(*k, *v).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn redb_get(db: &Database, key: &[u8]) -> Option<Vec<u8>> {
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(TABLE).ok()?;
    t.get(key).unwrap().map(|v| v.value().to_vec())
}

impl Engine for RedbInline {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        redb_put(&self.0, &[(key, value)]);
    }
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        redb_get(&self.0, key)
    }
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let v: Vec<(&[u8], &[u8])> = items.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        redb_put(&self.0, &v);
    }
}

impl Engine for RedbFiles {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let meta = write_body(&self.1, key, value);
        redb_put(&self.0, &[(key, &meta)]);
    }
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let meta = redb_get(&self.0, key)?;
        read_body(&self.1, key, &meta)
    }
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let v: Vec<(&[u8], &[u8])> = items.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        redb_put(&self.0, &v);
    }
}

impl Engine for FjallInline {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.1.insert(key, value).unwrap();
    }
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.1.get(key).unwrap().map(|v| v.to_vec())
    }
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let mut b = self.0.batch();
        for (k, v) in items {
            b.insert(&self.1, &k[..], &v[..]);
        }
        b.commit().unwrap();
    }
}

impl Engine for FjallFiles {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let meta = write_body(&self.2, key, value);
        self.1.insert(key, meta).unwrap();
    }
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let meta = self.1.get(key).unwrap()?;
        read_body(&self.2, key, &meta)
    }
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let mut b = self.0.batch();
        for (k, v) in items {
            b.insert(&self.1, &k[..], &v[..]);
        }
        b.commit().unwrap();
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    fs::create_dir_all(dir).unwrap();
    let bodies = dir.join("bodies");
    if engine.ends_with("-files") {
        for i in 0..256 {
            fs::create_dir_all(bodies.join(format!("{i:02x}"))).unwrap();
        }
    }
    match engine {
        "redb-inline" => Box::new(RedbInline(Database::create(dir.join("db.redb")).unwrap())),
        "redb-files" => Box::new(RedbFiles(
            Database::create(dir.join("db.redb")).unwrap(),
            bodies,
        )),
        "fjall-inline" | "fjall-files" => {
            // JOURNAL_MB caps the journal (the disk store uses 64).
            let mut builder = fjall::Database::builder(dir.join("fjall"));
            if let Some(mb) = std::env::var("JOURNAL_MB").ok().and_then(|v| v.parse::<u64>().ok()) {
                builder = builder.max_journaling_size(mb << 20);
            }
            let db = builder.open().unwrap();
            let ks = db
                .keyspace("entries", || {
                    let mut o = fjall::KeyspaceCreateOptions::default();
                    // MEMTABLE_MB: the memtable size (the disk store uses 8).
                    if let Some(mb) = std::env::var("MEMTABLE_MB").ok().and_then(|v| v.parse::<u64>().ok()) {
                        o = o.max_memtable_size(mb << 20);
                    }
                    if engine == "fjall-inline" {
                        o.with_kv_separation(Some(fjall::KvSeparationOptions::default()))
                    } else {
                        o
                    }
                })
                .unwrap();
            if engine == "fjall-inline" {
                Box::new(FjallInline(db, ks))
            } else {
                Box::new(FjallFiles(db, ks, bodies))
            }
        }
        other => panic!("unknown engine {other}"),
    }
}

fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += du(&e.path()) + m.blocks() * 512;
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

fn key(i: u64) -> Vec<u8> {
    format!("GET http://example.com/item/{i:010}").into_bytes()
}

/// A metadata-sized record: expiry, length, checksum, two tags, a path.
fn meta_record(i: u64) -> Vec<u8> {
    let mut v = vec![0u8; 28];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v.extend_from_slice(format!("tag-a\0tag-{}\0/item/{i:010}", i % 100).as_bytes());
    v.resize(160, 7);
    v
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = args[1].as_str();
    let engine = args[2].as_str();
    let dir = PathBuf::from(&args[3]);
    match test {
        "putget" => {
            let size: usize = args[4].parse().unwrap();
            let count: u64 = args[5].parse().unwrap();
            let _ = fs::remove_dir_all(&dir);
            let mut e = open(engine, &dir);
            // Incompressible bytes: an engine that compresses must not
            // look smaller than it is.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut value: Vec<u8> = (0..size).map(|_| xorshift(&mut x) as u8).collect();
            let t = Instant::now();
            for i in 0..count {
                value[..8].copy_from_slice(&i.to_le_bytes());
                e.put(&key(i), &value);
            }
            let put = t.elapsed();
            let mut x = 88172645463325252u64;
            let t = Instant::now();
            for _ in 0..count {
                let i = xorshift(&mut x) % count;
                let v = e.get(&key(i)).expect("present");
                assert_eq!(v.len(), size);
            }
            let get = t.elapsed();
            drop(e);
            let bytes = du(&dir);
            println!(
                "{engine} size={size} count={count} put={:.0}/s ({:.1} us) get={:.0}/s ({:.1} us) disk/entry={} B ({:.2}x)",
                count as f64 / put.as_secs_f64(),
                put.as_secs_f64() * 1e6 / count as f64,
                count as f64 / get.as_secs_f64(),
                get.as_secs_f64() * 1e6 / count as f64,
                bytes / count,
                bytes as f64 / (count as f64 * size as f64),
            );
        }
        "fill" => {
            let count: u64 = args[4].parse().unwrap();
            let _ = fs::remove_dir_all(&dir);
            let mut e = open(engine, &dir);
            let t = Instant::now();
            let mut i = 0;
            while i < count {
                let items: Vec<_> = (i..(i + 10_000).min(count))
                    .map(|j| (key(j), meta_record(j)))
                    .collect();
                e.put_batch(&items);
                i += 10_000;
            }
            // SETTLE_S: seconds the store stays open after the writes (as
            // a server does), for its background flushes.
            if let Some(s) = std::env::var("SETTLE_S").ok().and_then(|v| v.parse::<u64>().ok()) {
                std::thread::sleep(std::time::Duration::from_secs(s));
            }
            drop(e);
            println!(
                "{engine} fill count={count} in {:.1} s, disk {} MB ({} B/record)",
                t.elapsed().as_secs_f64(),
                du(&dir) >> 20,
                du(&dir) / count
            );
        }
        "open" => {
            let t = Instant::now();
            let mut e = open(engine, &dir);
            let opened = t.elapsed();
            let one = e.get(&key(12345));
            let first = t.elapsed();
            let rss = fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap_or("")
                .to_string();
            println!(
                "{engine} open: {:.1} ms, first get {:.1} ms (found: {}), {rss}",
                opened.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                one.is_some()
            );
        }
        other => panic!("unknown test {other}"),
    }
}
