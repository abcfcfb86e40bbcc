//! Transformations the origin forbade, against `uip-cache serve` run as a
//! user runs it (a catch-all policy with gzip on), over real sockets: a
//! `no-transform` body arrives as the origin sent it, a gzip the cache made
//! has its own validator and `Vary`, conditionals are answered for the
//! representation the client gets, and a large gzip entry reaches a client
//! without gzip complete.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use uip_cache_testkit::ServeProcess;

const CONFIG: &str = "policies:
  - name: all
    pattern: \"/*\"
    ttl: 60
    max_size: 32MB
    compression: {min_size: 256}
admin:
  enabled: false
";

/// JSON-like text that compresses well, `n` bytes.
fn json(n: usize) -> Vec<u8> {
    let unit = br#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}},"#;
    unit.iter().copied().cycle().take(n).collect()
}

const BIG: usize = 6 << 20;

/// What the origin answers for `path`: headers and body.
fn origin_answer(path: &str) -> (Vec<(&'static str, &'static str)>, Vec<u8>) {
    let json_type = ("content-type", "application/json");
    match path {
        "/no-transform" => (
            vec![
                json_type,
                ("cache-control", "max-age=60, no-transform"),
                ("etag", "\"nt1\""),
            ],
            json(8192),
        ),
        "/cdn-no-transform" => (
            vec![
                json_type,
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "max-age=60, no-transform"),
            ],
            json(8192),
        ),
        "/big" => (
            vec![
                json_type,
                ("cache-control", "max-age=60"),
                ("etag", "\"big1\""),
            ],
            json(BIG),
        ),
        _ => (
            vec![
                json_type,
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("vary", "Accept-Language"),
            ],
            json(8192),
        ),
    }
}

/// An origin on a free port, in threads of its own.
fn origin() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&seen);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (headers, body) = origin_answer(&path);
                let mut head = String::from("HTTP/1.1 200 OK\r\n");
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str(&format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                ));
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    port
}

/// `uip-cache serve` in front of `origin`, killed on drop.
struct Server {
    process: ServeProcess,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(origin: u16) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "uip-cache-transform-{}-{origin}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("cache.yaml");
        std::fs::write(&config, CONFIG).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
        command.args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://127.0.0.1:{origin}"),
        ]);
        // Returns once it listens, on a port the system gave it.
        let process = ServeProcess::start(command);
        Server { process, dir }
    }

    /// One exchange on a fresh connection.
    fn get(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut s = TcpStream::connect(self.process.addr).unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nhost: cache.test\r\nconnection: close\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status: status.parse().unwrap(),
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    /// Asks until the cache answers (the first answer is the origin's,
    /// stored once its body has passed).
    fn hit(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.get("GET", path, headers);
            if a.header("x-cache") == Some("HIT") {
                return a;
            }
            assert!(Instant::now() < deadline, "{path} is never a hit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names `Vary` lists, over all its lines, lower case.
    fn vary(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n == "vary")
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .collect();
        names.sort();
        names
    }

    fn gunzipped(&self) -> Vec<u8> {
        uip_cache_core::compress::gunzip(&self.body, 64 << 20).expect("a gzip body")
    }
}

const GZIP: (&str, &str) = ("accept-encoding", "gzip, deflate, br");

#[test]
fn a_no_transform_body_arrives_as_the_origin_sent_it() {
    let server = Server::start(origin());
    for path in ["/no-transform", "/cdn-no-transform"] {
        let (_, body) = origin_answer(path);
        let a = server.hit(path, &[GZIP]);
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-encoding"), None, "{path} was transformed");
        assert!(a.body == body, "{path}: the body differs from the origin's");
    }
    let a = server.hit("/no-transform", &[GZIP]);
    assert_eq!(a.header("etag"), Some("\"nt1\""));
}

#[test]
fn the_gzip_the_cache_made_has_its_own_validator_and_conditionals_follow_it() {
    let server = Server::start(origin());
    let (_, body) = origin_answer("/items");
    let gz = server.hit("/items", &[GZIP]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.gunzipped() == body);
    let plain = server.hit("/items", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.body == body);
    let (gz_tag, plain_tag) = (gz.header("etag").unwrap(), plain.header("etag").unwrap());
    assert_eq!(
        plain_tag, "\"v1\"",
        "the origin's bytes keep the origin's tag"
    );
    assert_ne!(gz_tag, plain_tag, "two representations, one validator");
    assert!(
        gz_tag.starts_with("W/"),
        "a cache-made gzip cannot promise the same bytes after a recompression: {gz_tag}"
    );
    for a in [&gz, &plain] {
        assert_eq!(a.vary(), ["accept-encoding", "accept-language"]);
    }

    let listed = format!("\"x\", {gz_tag}");
    // (request headers, status, ETag of the answer)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![GZIP, ("if-none-match", gz_tag)], 304, gz_tag),
        (vec![("if-none-match", plain_tag)], 304, plain_tag),
        (vec![("if-none-match", gz_tag)], 200, plain_tag),
        (vec![GZIP, ("if-none-match", plain_tag)], 200, gz_tag),
        (vec![GZIP, ("if-none-match", listed.as_str())], 304, gz_tag),
    ];
    for (headers, status, etag) in &cases {
        let a = server.get("GET", "/items", headers);
        assert_eq!(a.status, *status, "{headers:?}");
        assert_eq!(a.header("etag"), Some(*etag), "{headers:?}");
        assert_eq!(
            a.vary(),
            ["accept-encoding", "accept-language"],
            "{headers:?}: every answer says what it varies on"
        );
        if *status == 200 {
            let got = match a.header("content-encoding") {
                Some("gzip") => a.gunzipped(),
                _ => a.body.clone(),
            };
            assert!(got == body, "{headers:?}");
        }
    }
    // A client that asks for the content untransformed gets the origin's.
    let a = server.get("GET", "/items", &[GZIP, ("cache-control", "no-transform")]);
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.header("etag"), Some(plain_tag));
    assert!(a.body == body);
}

#[test]
fn a_large_gzip_entry_reaches_a_client_without_gzip_complete() {
    let server = Server::start(origin());
    let (_, body) = origin_answer("/big");
    let gz = server.hit("/big", &[GZIP]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.body.len() < body.len() / 10);
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|_| s.spawn(|| server.get("GET", "/big", &[])))
            .collect();
        for c in clients {
            let a = c.join().unwrap();
            assert_eq!(a.status, 200);
            assert_eq!(a.header("x-cache"), Some("HIT"));
            assert_eq!(a.header("content-encoding"), None);
            assert_eq!(a.header("content-length"), Some(BIG.to_string().as_str()));
            assert!(a.body == body, "the body differs ({} bytes)", a.body.len());
        }
    });
    let head = server.get("HEAD", "/big", &[]);
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert!(head.body.is_empty());
}
