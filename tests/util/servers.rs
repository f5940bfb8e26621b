//! The S3 (moto) and SFTP (sshd) servers of the backend tests, started by
//! `scripts/test-servers.sh start` (which `scripts/test.sh` runs) on 127.0.0.1, and a
//! TCP proxy in front of either, which a test stops and starts again to take the
//! server away from cbsnap mid-run.
//!
//! Without the servers (no `CBSNAP_TEST_S3` / `CBSNAP_TEST_SFTP` in the environment)
//! a test that needs one fails and says how to start them; `cargo test -- --skip s3
//! --skip sftp` leaves those tests out, as `--skip docker` does for the engine.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cbsnap::storage::{Location, Remote, Retry, S3Settings, Storage};

/// One of the test servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    S3,
    Sftp,
}

impl Server {
    fn var(self) -> &'static str {
        match self {
            Server::S3 => "CBSNAP_TEST_S3",
            Server::Sftp => "CBSNAP_TEST_SFTP",
        }
    }

    /// The base location the servers script exported.
    fn base(self) -> String {
        std::env::var(self.var()).unwrap_or_else(|_| {
            panic!(
                "{} is not set: the {:?} test server is not running. Start the servers with \
                 `eval \"$(scripts/test-servers.sh start)\"` (scripts/test.sh does), or leave \
                 these tests out with `cargo test -- --skip s3 --skip sftp`",
                self.var(),
                self
            )
        })
    }

    /// A new, empty repository location on this server, unique to the caller.
    pub fn location(self) -> String {
        format!("{}/{}", self.base(), crate::util::docker::unique("t"))
    }

    /// The TCP address the server listens on (`127.0.0.1:port`).
    pub fn addr(self) -> String {
        let dir = std::env::var("CBSNAP_TEST_SERVERS").expect("CBSNAP_TEST_SERVERS");
        let file = match self {
            Server::S3 => "s3.port",
            Server::Sftp => "sftp.port",
        };
        let port = std::fs::read_to_string(Path::new(&dir).join(file)).unwrap();
        format!("127.0.0.1:{}", port.trim())
    }
}

/// Retries that give up fast: a test of a stopped server should not wait 8 s per call.
/// The breaker never stays open (`pause` 0): a test that brings its server back asks
/// it again at once.
pub fn quick_retry() -> Retry {
    Retry {
        attempts: 1,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(200),
        pause: Duration::ZERO,
        ..Retry::default()
    }
}

/// A server that accepts TCP connections and never answers, nor closes them: a
/// frozen S3 endpoint or SFTP server as the client sees it. Counts the connections.
pub struct Frozen {
    pub port: u16,
    pub accepted: Arc<AtomicU64>,
}

impl Frozen {
    pub fn start() -> Frozen {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming() {
                let Ok(c) = c else { return };
                count.fetch_add(1, Ordering::SeqCst);
                held.push(c);
            }
        });
        Frozen { port, accepted }
    }

    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The backend of `location` as the binary opens it (the `AWS_*` variables of the
/// servers script, no config file).
pub fn storage(location: &str) -> Arc<dyn Storage> {
    let l = Location::parse(location).unwrap();
    Arc::new(Remote::open(&l, &S3Settings::default(), quick_retry()).unwrap())
}

/// `cbsnap --repo LOCATION` with its own cache (`HOME/cache`) and no config file: a
/// host of its own as far as the repository can tell.
pub fn cbsnap(home: &Path, location: &str) -> Command {
    let mut c = Command::new(crate::util::BIN);
    c.arg("--repo")
        .arg(location)
        .env("XDG_CONFIG_HOME", home.join("no-config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("CBSNAP_REPO")
        .env_remove("CBSNAP_LOCK_WAIT");
    c
}

/// A TCP proxy on 127.0.0.1 in front of `target`; [`Proxy::stop`] closes the
/// listener and cuts every connection (the server gone, as the client sees it),
/// [`Proxy::start`] listens again on the same port. Counts the bytes sent to the
/// server.
pub struct Proxy {
    pub port: u16,
    target: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    pub sent: Arc<AtomicU64>,
    /// Bytes the server sent back through the proxy.
    pub received: Arc<AtomicU64>,
}

impl Proxy {
    pub fn new(target: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = Proxy {
            port,
            target: target.to_string(),
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            sent: Arc::new(AtomicU64::new(0)),
            received: Arc::new(AtomicU64::new(0)),
        };
        p.start();
        p
    }

    pub fn start(&self) {
        let listener = {
            let mut tries = 0;
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("proxy: listen on {}: {e}", self.port),
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, conns, target, sent, received) = (
            self.up.clone(),
            self.conns.clone(),
            self.target.clone(),
            self.sent.clone(),
            self.received.clone(),
        );
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                let sent = sent.clone();
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    move |piece| {
                        sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    },
                );
                let received = received.clone();
                pipe(server, client, move |piece| {
                    received.fetch_add(piece.len() as u64, Ordering::Relaxed);
                });
            }
            // The listener is dropped here: new connections are refused.
        });
    }

    /// Stop listening and cut every open connection.
    pub fn stop(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Let the accept loop see the flag and drop its listener.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A connection a test proxy forwards: TCP or a Unix socket.
pub trait Stream: Read + Write + Send + 'static {
    /// Closes both directions.
    fn close(&self);
}

impl Stream for TcpStream {
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// Copy `from` to `to` on a thread until either side closes, showing each piece read
/// to `seen` before it is forwarded (to count bytes, or to act before a request
/// goes on).
pub fn pipe<S: Stream>(mut from: S, mut to: S, mut seen: impl FnMut(&[u8]) + Send + 'static) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        to.close();
        from.close();
    });
}
