//! A TCP proxy that can be frozen: while frozen it forwards nothing either
//! way and closes nothing, as a NAT or firewall that silently forgot a flow
//! does (a half-open connection: no data, no error, no close).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// A proxy on 127.0.0.1 to another local port; stops on drop.
#[derive(Debug)]
pub struct FreezableProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    frozen: AtomicBool,
    stopped: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl FreezableProxy {
    /// Starts forwarding connections to `127.0.0.1:target`.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let s = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ];
                s.streams
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend([client, server]);
                for (from, to) in pairs {
                    let s = s.clone();
                    thread::spawn(move || pump(from, to, &s));
                }
            }
        });
        FreezableProxy { port, state }
    }

    /// Stops forwarding, on every connection, without closing any.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::Release);
    }

    /// Forwards again (what was held goes through).
    pub fn thaw(&self) {
        self.state.frozen.store(false, Ordering::Release);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Held, not dropped: a frozen flow delivers nothing, and nothing
        // it carried is lost should it be thawed.
        while state.frozen.load(Ordering::Acquire) {
            if state.stopped.load(Ordering::Acquire) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
        for s in self
            .state
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
