//! The watch's rules, on a clock the tests set.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::inflight::Inflight;
use super::watch::{DrainMark, Verdict};
use super::*;

fn limits() -> ClientLimits {
    ClientLimits {
        send_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        max_inflight_bytes: 1000,
        handshake_timeout: Duration::from_secs(10),
    }
}

#[test]
fn a_write_blocked_for_send_timeout_stalls_and_progress_clears_it() {
    let inflight = Inflight::new(1 << 20);
    let w = inflight.watch();
    let _busy = w.request();
    w.blocked();
    let t = w.blocked.load(Ordering::Relaxed);
    let mut d = DrainMark::default();
    assert_eq!(w.check(&limits(), t + 9_999, false, &mut d), Verdict::Fine);
    assert!(matches!(
        w.check(&limits(), t + 10_000, false, &mut d),
        Verdict::Stalled(_)
    ));
    w.wrote(1);
    assert_eq!(w.check(&limits(), t + 60_000, false, &mut d), Verdict::Fine);
}

#[test]
fn a_request_in_progress_keeps_a_connection_busy_and_idle_counts_from_its_end() {
    let inflight = Inflight::new(1 << 20);
    let w = inflight.watch();
    let mut d = DrainMark::default();
    let first = w.request();
    let second = w.request();
    let t = now_ms();
    assert_eq!(w.check(&limits(), t + 100_000, true, &mut d), Verdict::Fine);
    drop(first);
    assert_eq!(w.check(&limits(), t + 100_000, true, &mut d), Verdict::Fine);
    drop(second);
    let ended = w.idle_since.load(Ordering::Relaxed);
    assert_eq!(
        w.check(&limits(), ended + 19_999, true, &mut d),
        Verdict::Fine
    );
    assert_eq!(
        w.check(&limits(), ended + 20_000, true, &mut d),
        Verdict::Idle
    );
}

#[test]
fn http1_headers_begun_must_end_in_time() {
    let inflight = Inflight::new(1 << 20);
    let w = inflight.watch();
    let mut d = DrainMark::default();
    w.read(3);
    let t = w.read_since.load(Ordering::Relaxed);
    // Started: the idle rule no longer applies, the header rule does.
    assert_eq!(w.check(&limits(), t + 25_000, false, &mut d), Verdict::Fine);
    assert!(matches!(
        w.check(&limits(), t + 30_000, false, &mut d),
        Verdict::Stalled(_)
    ));
}

#[test]
fn a_body_waiting_on_the_client_stalls_and_dropped_ones_are_forgotten() {
    let inflight = Inflight::new(1 << 20);
    let w = inflight.watch();
    let _busy = w.request();
    let mut d = DrainMark::default();
    let wait = w.wait(true);
    let t = wait.0.load(Ordering::Relaxed);
    assert!(matches!(
        w.check(&limits(), t + 10_000, false, &mut d),
        Verdict::Stalled(_)
    ));
    wait.set(false);
    assert_eq!(w.check(&limits(), t + 10_000, false, &mut d), Verdict::Fine);
    wait.set(true);
    drop(wait);
    assert_eq!(w.check(&limits(), t + 99_000, false, &mut d), Verdict::Fine);
    assert!(w.waits.lock().unwrap().is_empty());
}

#[test]
fn http2_bytes_owed_must_be_taken_within_send_timeout() {
    let inflight = Inflight::new(1 << 20);
    let w = inflight.watch();
    let _busy = w.request();
    let mut d = DrainMark::default();
    w.handed(100);
    let t = now_ms();
    assert_eq!(w.check(&limits(), t, true, &mut d), Verdict::Fine);
    // Other bytes keep flowing, but not all of those owed at `t`.
    w.wrote(60);
    w.handed(100);
    assert_eq!(w.check(&limits(), t + 5_000, true, &mut d), Verdict::Fine);
    assert!(matches!(
        w.check(&limits(), t + 10_000, true, &mut d),
        Verdict::Stalled(_)
    ));
    // Taken in time: a new mark, for what is owed now.
    let mut d = DrainMark::default();
    assert_eq!(w.check(&limits(), t, true, &mut d), Verdict::Fine);
    w.wrote(140);
    assert_eq!(w.check(&limits(), t + 9_000, true, &mut d), Verdict::Fine);
    assert_eq!(w.check(&limits(), t + 18_000, true, &mut d), Verdict::Fine);
    assert_eq!(inflight.bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn past_the_bound_the_longest_stalled_connections_are_chosen_first() {
    let inflight = Inflight::new(1000);
    let oldest = inflight.watch();
    let newer = inflight.watch();
    let active = inflight.watch();
    oldest.blocked.store(10, Ordering::Relaxed);
    newer.blocked.store(20, Ordering::Relaxed);
    // Took nothing for longer, but is not refusing writes.
    active.wrote.store(1, Ordering::Relaxed);
    active.handed(400);
    newer.handed(400);
    assert!(!newer.doomed.load(Ordering::Relaxed));
    // 1200 > 1000: `oldest` owes the most stalled bytes... once it owes some.
    oldest.handed(400);
    assert!(oldest.doomed.load(Ordering::Relaxed));
    assert!(!newer.doomed.load(Ordering::Relaxed));
    assert!(!active.doomed.load(Ordering::Relaxed));
    assert_eq!(inflight.excess(), 0);
    drop(oldest);
    assert_eq!(inflight.bytes.load(Ordering::Relaxed), 800);
    assert_eq!(inflight.doomed.load(Ordering::Relaxed), 0);
    // Bytes the socket takes are no longer owed.
    newer.wrote(1000);
    assert_eq!(inflight.bytes.load(Ordering::Relaxed), 400);
}
