//! Replication transport: openraft's three RPCs between the replicas of one
//! ledger, over gRPC (`ruble.raft.v1.RaftService`) with mutual TLS.
//!
//! - [`RaftNet`] is the sending side (`RaftNetworkFactory`): one lazily
//!   connected channel per peer, each call bounded by openraft's deadline.
//! - [`RaftRpc`] is the receiving side: the gRPC service in front of a local
//!   `openraft::Raft`, admitting only node certificates (CN `ruble-node`).
//!
//! Messages are openraft's own types, bincode-encoded: the protobuf
//! envelope only carries bytes. A receiver's `RaftError` travels back in
//! `RaftReply.error` and becomes `RPCError::RemoteError`; a peer that cannot
//! be reached is `Unreachable` (openraft backs off), any other transport
//! failure `Network`.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{Raft, RaftTypeConfig};
use ruble_ledger::raft::ReplicaNode;
use ruble_proto::raft::raft_service_client::RaftServiceClient;
use ruble_proto::raft::raft_service_server::RaftService;
use ruble_proto::raft::{RaftReply, RaftRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

/// The common name of a node certificate: the only one the replication
/// service admits (a bank's or the central bank's certificate is refused).
pub const NODE_CN: &str = "ruble-node";

/// Largest replication message, either way: a block of `max_block_ops`
/// operations is ~2 MiB; a batch of entries is bounded by openraft's
/// `max_payload_entries`.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;

/// Where a peer's replication service listens.
pub trait RaftAddr {
    /// `host:port`.
    fn raft_addr(&self) -> &str;
}

impl RaftAddr for ReplicaNode {
    fn raft_addr(&self) -> &str {
        &self.raft_addr
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    bincode::serialize(v).map_err(|e| Status::internal(format!("encoding a replication message: {e}")))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    bincode::deserialize(b).map_err(|e| Status::invalid_argument(format!("malformed replication message: {e}")))
}

/// The sending side: makes a [`RaftClient`] per peer.
pub struct RaftNet<C: RaftTypeConfig> {
    tls: Option<ClientTlsConfig>,
    /// Where this replica reaches a peer, when not at the address the
    /// membership advertises (a host may route to a peer differently, e.g.
    /// through a proxy).
    peer_addrs: BTreeMap<C::NodeId, String>,
    _c: PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig> RaftNet<C> {
    /// `tls`: the CA and this node's certificate (presented as the client);
    /// `None` only for plaintext loopback tests.
    pub fn new(tls: Option<ClientTlsConfig>) -> Self {
        RaftNet {
            tls,
            peer_addrs: BTreeMap::new(),
            _c: PhantomData,
        }
    }

    /// Reach these peers at these addresses (`host:port`) instead of the
    /// membership's.
    pub fn with_peer_addrs(mut self, addrs: BTreeMap<C::NodeId, String>) -> Self {
        self.peer_addrs = addrs;
        self
    }
}

impl<C> RaftNetworkFactory<C> for RaftNet<C>
where
    C: RaftTypeConfig,
    C::Node: RaftAddr,
{
    type Network = RaftClient<C>;

    async fn new_client(&mut self, target: C::NodeId, node: &C::Node) -> RaftClient<C> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let addr = self.peer_addrs.get(&target).map_or(node.raft_addr(), String::as_str);
        let uri = format!("{scheme}://{addr}");
        // Lazy: a peer that is down now is retried by openraft later, and a
        // bad address is an error of each call, not of the factory.
        let channel = Endpoint::from_shared(uri.clone()).map(|ep| {
            let ep = ep
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5));
            match &self.tls {
                Some(tls) => ep.tls_config(tls.clone()).map(|ep| ep.connect_lazy()),
                None => Ok(ep.connect_lazy()),
            }
        });
        let client = match channel {
            Ok(Ok(ch)) => Ok(RaftServiceClient::new(ch)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)),
            Ok(Err(e)) => Err(format!("{uri}: {e}")),
            Err(e) => Err(format!("{uri}: {e}")),
        };
        RaftClient {
            target,
            client,
            _c: PhantomData,
        }
    }
}

/// One peer's connection.
pub struct RaftClient<C: RaftTypeConfig> {
    target: C::NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    _c: PhantomData<fn() -> C>,
}

/// What a call can fail with, before openraft's own error types.
enum CallError<E> {
    Remote(E),
    Unreachable(Status),
    Network(Status),
}

impl<C: RaftTypeConfig> RaftClient<C> {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, option: &RPCOption) -> Result<Resp, CallError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(CallError::Unreachable(Status::unavailable(e.clone()))),
        };
        let body = encode(req).map_err(CallError::Network)?;
        let mut r = Request::new(RaftRequest { body });
        r.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::Append => client.append_entries(r).await,
            Method::Vote => client.vote(r).await,
            Method::Snapshot => client.install_snapshot(r).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            // Connection refused or reset, a peer that is down or cut off.
            Err(st) if st.code() == tonic::Code::Unavailable => return Err(CallError::Unreachable(st)),
            Err(st) => return Err(CallError::Network(st)),
        };
        if !reply.error.is_empty() {
            return Err(CallError::Remote(decode(&reply.error).map_err(CallError::Network)?));
        }
        decode(&reply.body).map_err(CallError::Network)
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError<E>) -> RPCError<C::NodeId, C::Node, E> {
        match e {
            CallError::Remote(e) => RPCError::RemoteError(RemoteError::new(self.target.clone(), e)),
            CallError::Unreachable(st) => RPCError::Unreachable(Unreachable::new(&st)),
            CallError::Network(st) => RPCError::Network(NetworkError::new(&st)),
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl<C> RaftNetwork<C> for RaftClient<C>
where
    C: RaftTypeConfig,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C::NodeId>, RPCError<C::NodeId, C::Node, RaftError<C::NodeId>>> {
        self.call(Method::Append, &rpc, &option)
            .await
            .map_err(|e| self.rpc_error(e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<C::NodeId>,
        RPCError<C::NodeId, C::Node, RaftError<C::NodeId, InstallSnapshotError>>,
    > {
        self.call(Method::Snapshot, &rpc, &option)
            .await
            .map_err(|e| self.rpc_error(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C::NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<C::NodeId>, RPCError<C::NodeId, C::Node, RaftError<C::NodeId>>> {
        self.call(Method::Vote, &rpc, &option)
            .await
            .map_err(|e| self.rpc_error(e))
    }
}

/// The receiving side: the replication service in front of a local Raft.
pub struct RaftRpc<C: RaftTypeConfig> {
    raft: Raft<C>,
    /// Require a node certificate (off only for plaintext loopback tests).
    require_node_cert: bool,
}

impl<C: RaftTypeConfig> RaftRpc<C> {
    pub fn new(raft: Raft<C>, require_node_cert: bool) -> Self {
        RaftRpc {
            raft,
            require_node_cert,
        }
    }

    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self.require_node_cert {
            return Ok(());
        }
        let leaf = req
            .peer_certs()
            .and_then(|c| c.first().cloned())
            .ok_or_else(|| Status::unauthenticated("replication requires a node certificate"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|_| Status::unauthenticated("unreadable client certificate"))?;
        let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok());
        if cn != Some(NODE_CN) {
            return Err(Status::permission_denied("replication is for node certificates only"));
        }
        Ok(())
    }
}

/// A Raft result as a reply: the response, or the Raft error for the sender.
fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(match r {
        Ok(v) => RaftReply {
            body: encode(&v)?,
            error: Vec::new(),
        },
        Err(e) => RaftReply {
            body: Vec::new(),
            error: encode(&e)?,
        },
    }))
}

#[tonic::async_trait]
impl<C: RaftTypeConfig> RaftService for RaftRpc<C> {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.admit(&req)?;
        let rpc: AppendEntriesRequest<C> = decode(&req.into_inner().body)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.admit(&req)?;
        let rpc: VoteRequest<C::NodeId> = decode(&req.into_inner().body)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.admit(&req)?;
        let rpc: InstallSnapshotRequest<C> = decode(&req.into_inner().body)?;
        reply(self.raft.install_snapshot(rpc).await)
    }
}
