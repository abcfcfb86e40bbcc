//! A store or a backend that is down must not make every request write log
//! lines: with Redis gone, each request's lookup, lease and epoch read
//! fail, and a line each was over three lines a request, tens of thousands
//! a second under load (a client sending requests during an outage fills
//! the disk with logs); with the backend gone, a line a request. The lines
//! come at most once a second, saying how many were left out; the metrics
//! count every failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use uip_cache_testkit::ServeProcess;

use crate::disk_store::{serve, TempDir};

/// A keep-alive origin answering every GET with a small cacheable body.
fn origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                loop {
                    // A request head without a body, line by line.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let body = "origin answer";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncache-control: max-age=60\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A port nothing listens on (a Redis that is down).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads one response with a `content-length` body from `s`: its status.
fn response(s: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        line.clear();
        s.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    status
}

#[test]
fn a_store_that_is_down_writes_a_line_a_second_not_one_a_request() {
    let dir = TempDir::new("log-flood-store");
    let config = dir.0.join("redis.yaml");
    std::fs::write(
        &config,
        format!(
            "store:\n  type: redis\n  timeout: 100ms\nredis:\n  host: 127.0.0.1\n  port: {}\npolicies:\n  - name: all\n    pattern: \"/*\"\n",
            dead_port()
        ),
    )
    .unwrap();
    let serve = serve(&config, origin());

    // Requests on one keep-alive connection for 2.5 s, each of a path of
    // its own (every one a lookup that fails, then a fetch).
    let (requests, secs) = requests_for_a_while(serve.addr, |i| format!("/doc/{i}"), 200);
    assert!(requests >= 20, "{requests} requests");

    // Every store failure line it wrote meanwhile.
    let lines = logged(&serve, |l| {
        l.contains("cache store failed") || l.contains("cache store timed out")
    });
    // One of each kind (failed, timed out) a second at most, and the first.
    assert!(!lines.is_empty(), "the outage is logged");
    assert!(
        (lines.len() as u64) <= 2 * (secs + 1),
        "{} lines for {requests} requests in {secs} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // A line after the first says how many failures it stands for.
    let left_out: u64 = lines
        .iter()
        .filter_map(|l| l.split("left_out=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(
        left_out >= requests / 2,
        "left_out {left_out} of {requests} requests"
    );

    // The metrics count every failure: at least one per request.
    let admin = serve.admin.unwrap();
    let mut s = TcpStream::connect(admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let errors: f64 = text
        .lines()
        .find(|l| l.starts_with("uip_cache_store_errors_total"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .expect("uip_cache_store_errors_total");
    assert!(
        errors >= requests as f64,
        "{errors} store errors counted for {requests} requests"
    );
}

/// The lines `serve` prints for which `wanted` holds, until none comes
/// for 2 s.
fn logged(serve: &ServeProcess, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(line) = serve.line(&wanted, Duration::from_secs(2)) {
        lines.push(line);
    }
    lines
}

/// Sends requests on one keep-alive connection to `addr` for 2.5 s, for
/// the paths `path(i)`, each answered with `status`; how many, and the
/// seconds they took (rounded up).
fn requests_for_a_while(
    addr: std::net::SocketAddr,
    path: impl Fn(u64) -> String,
    status: u16,
) -> (u64, u64) {
    let stream = TcpStream::connect(addr).unwrap();
    // Each request in one write, sent at once.
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let started = Instant::now();
    let mut requests = 0u64;
    while started.elapsed() < Duration::from_millis(2500) {
        let request = format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", path(requests));
        writer.write_all(request.as_bytes()).unwrap();
        assert_eq!(response(&mut reader), status, "request {requests}");
        requests += 1;
    }
    (requests, started.elapsed().as_secs() + 1)
}

#[test]
fn a_backend_that_is_down_writes_a_line_a_second_not_one_a_request() {
    let dir = TempDir::new("log-flood-backend");
    let config = dir.0.join("memory.yaml");
    // `/c/` is cached (a miss goes through the general path), the rest is
    // relayed by the fast loop: both log a failed upstream request.
    std::fs::write(
        &config,
        "store:\n  type: memory\npolicies:\n  - name: c\n    pattern: \"/c/*\"\n",
    )
    .unwrap();
    let serve = serve(&config, dead_port());
    let (requests, secs) = requests_for_a_while(
        serve.addr,
        |i| match i % 2 {
            0 => format!("/c/{i}"),
            _ => format!("/p/{i}"),
        },
        502,
    );
    assert!(requests >= 20, "{requests} requests");
    let lines = logged(&serve, |l| l.contains("upstream request failed"));
    assert!(!lines.is_empty(), "the outage is logged");
    assert!(
        (lines.len() as u64) <= secs + 1,
        "{} lines for {requests} requests in {secs} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
}
