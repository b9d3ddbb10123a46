//! A fault-injecting TCP proxy on loopback (in front of PostgreSQL or any
//! TCP server): each new connection takes the next fault of a script
//! (refused, delayed, cut when the client sends a given statement, or cut
//! after the server has run it but before its answer arrives), then passes
//! traffic through.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to one connection.
#[derive(Debug, Clone)]
pub enum TcpFault {
    Pass,
    /// Accepted and closed at once (a server going away).
    Refuse,
    /// Held this long before it is connected upstream (a slow network).
    Delay(Duration),
    /// Closed when the client sends bytes holding this text, which never
    /// reach the server (the request is lost).
    CutBefore(&'static str),
    /// The client's bytes holding this text reach the server, which runs
    /// them; the connection is closed before the answer comes back (the
    /// work is done, the client does not know it).
    CutAfter(&'static str),
}

pub struct FaultyTcp {
    pub port: u16,
    script: Arc<Mutex<VecDeque<TcpFault>>>,
    /// Faults that took effect (a connection refused or cut).
    pub injected: Arc<AtomicUsize>,
}

impl FaultyTcp {
    /// Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream>.
    pub fn start(upstream: u16) -> FaultyTcp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<Mutex<VecDeque<TcpFault>>> = Arc::default();
        let injected = Arc::new(AtomicUsize::new(0));
        let (queue, count) = (script.clone(), injected.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let fault = queue.lock().unwrap().pop_front().unwrap_or(TcpFault::Pass);
                let count = count.clone();
                std::thread::spawn(move || serve(client, upstream, fault, count));
            }
        });
        FaultyTcp {
            port,
            script,
            injected,
        }
    }

    /// The faults the next connections get, in order (then they pass).
    pub fn script(&self, faults: Vec<TcpFault>) {
        *self.script.lock().unwrap() = faults.into();
    }
}

fn serve(client: TcpStream, upstream: u16, fault: TcpFault, injected: Arc<AtomicUsize>) {
    match fault {
        TcpFault::Refuse => {
            injected.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        TcpFault::Delay(delay) => std::thread::sleep(delay),
        _ => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let dead = Arc::new(AtomicBool::new(false));
    let pattern = match &fault {
        TcpFault::CutBefore(text) | TcpFault::CutAfter(text) => Some(text.as_bytes()),
        _ => None,
    };
    // Server -> client: stops passing answers once the connection is dead.
    {
        let (mut from, mut to, dead) = (
            server.try_clone().unwrap(),
            client.try_clone().unwrap(),
            dead.clone(),
        );
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) if !dead.load(Ordering::SeqCst) => {
                        if to.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    // Client -> server, watching for the pattern.
    let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        // The connection ends at the first hit.
        let hit = pattern.is_some_and(|pattern| chunk.windows(pattern.len()).any(|w| w == pattern));
        if hit {
            injected.fetch_add(1, Ordering::SeqCst);
            if let TcpFault::CutAfter(_) = fault {
                dead.store(true, Ordering::SeqCst);
                let _ = to.write_all(chunk);
                // Let the server run it before the line goes down.
                std::thread::sleep(Duration::from_millis(300));
            }
            dead.store(true, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            break;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}
