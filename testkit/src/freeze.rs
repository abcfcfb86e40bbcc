//! A TCP proxy that can be frozen: while frozen it forwards nothing either
//! way and closes nothing, as a NAT or firewall that silently forgot a flow
//! does (a half-open connection: no data, no error, no close).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

/// A proxy on 127.0.0.1 to another local port; stops on drop.
#[derive(Debug)]
pub struct FreezableProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    flow: Mutex<Flow>,
    /// Told every change of `flow` (a thaw, the stop).
    changed: Condvar,
    streams: Mutex<Vec<TcpStream>>,
}

#[derive(Debug, Default)]
struct Flow {
    frozen: bool,
    stopped: bool,
}

impl State {
    fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the flow and wakes the pumps held by it.
    fn set(&self, change: impl FnOnce(&mut Flow)) {
        change(&mut self.flow());
        self.changed.notify_all();
    }
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
                if s.flow().stopped {
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
        self.state.set(|f| f.frozen = true);
    }

    /// Forwards again (what was held goes through).
    pub fn thaw(&self) {
        self.state.set(|f| f.frozen = false);
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
        let mut flow = state.flow();
        while flow.frozen {
            if flow.stopped {
                return;
            }
            flow = state
                .changed
                .wait(flow)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(flow);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.state.set(|f| f.stopped = true);
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
