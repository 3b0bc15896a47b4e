//! Budgets for what a caller holds open: long-lived calls (streams) and
//! connections.
//!
//! - [`StreamBudget`]: every streaming call takes a [`StreamPermit`] from the
//!   budget of whoever makes it. A caller with a client certificate (a bank,
//!   the central bank) has a budget of its own; callers without one share a
//!   node-wide anonymous budget and are also capped per remote IP address. So
//!   no number of anonymous streams can take a slot a bank or the central bank
//!   needs, and one noisy peer cannot take the whole anonymous budget.
//! - [`ConnectionBudget`]: a cap on TCP connections, node-wide and per remote
//!   IP address, applied when a connection is accepted (before TLS), so that a
//!   peer cannot exhaust file descriptors or TLS handshakes.
//!
//! Refusals are `RESOURCE_EXHAUSTED` with reason `TOO_MANY_STREAMS` and an
//! ErrorInfo `scope` of `node`, `peer` or `participant` (streams), or a closed
//! connection (connections: there is no HTTP/2 yet to answer on).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tonic::{Code, Request, Status};

use crate::auth::Participant;
use crate::convert::coded_status_with;

/// Who a streaming call is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Authenticated by its client certificate.
    Participant(Participant),
    /// No (usable) client certificate: known only by its address.
    Anonymous(Option<IpAddr>),
}

impl Caller {
    /// The caller of a request: its participant if its certificate names one,
    /// else anonymous by remote address.
    pub fn of<T>(req: &Request<T>) -> Caller {
        match crate::auth::participant_from_request(req) {
            Ok(p) => Caller::Participant(p),
            Err(_) => Caller::Anonymous(req.remote_addr().map(|a| a.ip())),
        }
    }
}

/// Caps on concurrent streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCaps {
    /// All anonymous streams together, node-wide.
    pub anonymous: usize,
    /// Anonymous streams from one IP address.
    pub per_ip: usize,
    /// Streams of one authenticated participant (each bank, the central bank).
    pub per_participant: usize,
}

#[derive(Default)]
struct StreamCounts {
    anonymous: usize,
    per_ip: HashMap<Option<IpAddr>, usize>,
    per_participant: HashMap<Participant, usize>,
}

/// The node's stream budgets; cheap to clone.
#[derive(Clone)]
pub struct StreamBudget {
    caps: StreamCaps,
    counts: Arc<Mutex<StreamCounts>>,
}

/// One stream slot; released when dropped (when the stream ends).
pub struct StreamPermit {
    counts: Arc<Mutex<StreamCounts>>,
    caller: Caller,
}

impl StreamBudget {
    pub fn new(caps: StreamCaps) -> Self {
        StreamBudget {
            caps,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `caller`, or answers RESOURCE_EXHAUSTED saying which
    /// cap was reached.
    pub fn acquire(&self, caller: Caller) -> Result<StreamPermit, Status> {
        let mut c = self.counts.lock();
        match caller {
            Caller::Participant(p) => {
                let n = c.per_participant.entry(p).or_default();
                if *n >= self.caps.per_participant {
                    return Err(refused(
                        "participant",
                        format!("{p} has {} streams open, the most allowed", self.caps.per_participant),
                    ));
                }
                *n += 1;
            }
            Caller::Anonymous(ip) => {
                if c.anonymous >= self.caps.anonymous {
                    return Err(refused(
                        "node",
                        format!(
                            "the node has {} streams open without a client certificate, the most allowed",
                            self.caps.anonymous
                        ),
                    ));
                }
                let n = c.per_ip.entry(ip).or_default();
                if *n >= self.caps.per_ip {
                    return Err(refused(
                        "peer",
                        format!(
                            "this address has {} streams open without a client certificate, the most allowed",
                            self.caps.per_ip
                        ),
                    ));
                }
                *n += 1;
                c.anonymous += 1;
            }
        }
        Ok(StreamPermit {
            counts: self.counts.clone(),
            caller,
        })
    }

    /// Streams open now: (anonymous, authenticated).
    pub fn open(&self) -> (usize, usize) {
        let c = self.counts.lock();
        (c.anonymous, c.per_participant.values().sum())
    }
}

fn refused(scope: &str, message: String) -> Status {
    coded_status_with(
        Code::ResourceExhausted,
        "TOO_MANY_STREAMS",
        message,
        &[("scope", scope)],
    )
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        match self.caller {
            Caller::Participant(p) => release(&mut c.per_participant, p),
            Caller::Anonymous(ip) => {
                release(&mut c.per_ip, ip);
                c.anonymous -= 1;
            }
        }
    }
}

/// Decrements a count, dropping the entry at zero so the map holds only
/// callers with something open.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, k: K) {
    if let Some(n) = map.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            map.remove(&k);
        }
    }
}

/// Caps on open TCP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub total: usize,
    pub per_ip: usize,
}

#[derive(Default)]
struct ConnCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The node's connection budget; cheap to clone.
#[derive(Clone)]
pub struct ConnectionBudget {
    caps: ConnectionCaps,
    counts: Arc<Mutex<ConnCounts>>,
}

/// One connection slot; released when the connection is dropped.
pub struct ConnectionSlot {
    counts: Arc<Mutex<ConnCounts>>,
    ip: IpAddr,
}

impl ConnectionBudget {
    pub fn new(caps: ConnectionCaps) -> Self {
        ConnectionBudget {
            caps,
            counts: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut c = self.counts.lock();
        if c.total >= self.caps.total {
            return None;
        }
        let n = c.per_ip.entry(ip).or_default();
        if *n >= self.caps.per_ip {
            return None;
        }
        *n += 1;
        c.total += 1;
        Some(ConnectionSlot {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        release(&mut c.per_ip, self.ip);
        c.total -= 1;
    }
}

/// An accepted TCP connection that holds its slot for as long as it lives.
pub struct BudgetedConn {
    io: tokio::net::TcpStream,
    _slot: ConnectionSlot,
}

impl BudgetedConn {
    pub fn new(io: tokio::net::TcpStream, slot: ConnectionSlot) -> Self {
        BudgetedConn { io, _slot: slot }
    }
}

impl tonic::transport::server::Connected for BudgetedConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl tokio::io::AsyncRead for BudgetedConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BudgetedConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_callers_cannot_take_a_participants_slot() {
        let b = StreamBudget::new(StreamCaps {
            anonymous: 3,
            per_ip: 2,
            per_participant: 1,
        });
        let ip = |n: u8| Caller::Anonymous(Some(IpAddr::from([10, 0, 0, n])));
        let a1 = b.acquire(ip(1)).unwrap();
        let _a2 = b.acquire(ip(1)).unwrap();
        let st = b.acquire(ip(1)).err().unwrap();
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert!(st.message().contains("this address"), "{st:?}");
        let _a3 = b.acquire(ip(2)).unwrap();
        let st = b.acquire(ip(3)).err().unwrap();
        assert!(st.message().contains("the node has 3"), "{st:?}");
        // The anonymous budget is full; a bank still gets in, once.
        let bank = Caller::Participant(Participant::Bank([1; 32]));
        let p = b.acquire(bank).unwrap();
        assert!(b.acquire(bank).is_err());
        assert!(b.acquire(Caller::Participant(Participant::CentralBank)).is_ok());
        // Dropping a permit frees its slot, and only its own.
        drop(a1);
        assert!(b.acquire(ip(3)).is_ok());
        drop(p);
        assert!(b.acquire(bank).is_ok());
    }

    #[test]
    fn connections_are_capped_per_ip_and_in_total() {
        let b = ConnectionBudget::new(ConnectionCaps { total: 3, per_ip: 2 });
        let (x, y, z) = (
            IpAddr::from([1, 1, 1, 1]),
            IpAddr::from([2, 2, 2, 2]),
            IpAddr::from([3, 3, 3, 3]),
        );
        let s1 = b.try_acquire(x).unwrap();
        let _s2 = b.try_acquire(x).unwrap();
        assert!(b.try_acquire(x).is_none());
        let _s3 = b.try_acquire(y).unwrap();
        assert!(b.try_acquire(z).is_none());
        drop(s1);
        assert_eq!(b.open(), 2);
        assert!(b.try_acquire(z).is_some());
    }
}
