//! `ClusterService`: a replicated node's membership, for the central bank's
//! certificate (`GetCluster`, `AddReplica`, `RemoveReplica`).
//!
//! `GetCluster` is this replica's local view (openraft's metrics and the
//! state machine's applied head), answered by any replica. The two changes
//! run on the leader only and go through openraft: `AddReplica` adds a
//! learner (`ChangeMembers::AddNodes`), waits until the leader's replication
//! to it reaches the membership entry that added it (from the log, or a
//! snapshot when that part of the log is purged), then, with `promote`,
//! makes it a voter (`AddVoterIds`); `RemoveReplica` replaces the voters
//! with the remaining ones (`ReplaceAllVoters`, not retained as a learner)
//! or drops a learner (`RemoveNodes`).
//!
//! Each openraft call runs in a task of its own: a call that outlives the
//! request's deadline (a slow catch-up, no quorum) is answered
//! `DEADLINE_EXCEEDED` while the change goes on, and a two-step change
//! (joint, then uniform configuration) is never cut in the middle. One
//! change at a time per leader; openraft refuses a change while the last one
//! is not committed (`MEMBERSHIP_CHANGE_IN_PROGRESS` both ways).
//!
//! A change of the voters (a removal, a promotion) is made only if a
//! majority of the new voter set is live (`QUORUM_AT_RISK` otherwise, see
//! [`Replicated::ensure_live_quorum`]): the joint configuration needs a
//! majority of the new voters as well as of the old ones, so a change to
//! voters that cannot form one would stall every write, and every later
//! change, until they come back.
//!
//! A single node serves the service too and answers every RPC
//! `FAILED_PRECONDITION`/`NOT_REPLICATED` (after the role check): it has no
//! membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, RaftError};
use openraft::{ChangeMembers, ServerState};
use ruble_ledger::raft::{LedgerRaft, LedgerStateMachine, NodeId, ReplicaNode, TypeConfig};
use ruble_proto::v1 as pb;
use ruble_proto::v1::cluster_service_server::ClusterService;
use tonic::{Code, Request, Response, Status};

use crate::auth::{participant_from_request, require_central_bank};
use crate::convert::{coded_status, coded_status_with, internal};
use crate::ctx::not_leader_status;
use crate::replica::client_endpoint_of;

/// A single node: no membership to show or change.
pub const NOT_REPLICATED: &str = "NOT_REPLICATED";
/// A node id of 0 (openraft's ids here start at 1).
pub const INVALID_REPLICA_ID: &str = "INVALID_REPLICA_ID";
/// A replication address that is not `host:port`.
pub const INVALID_RAFT_ADDRESS: &str = "INVALID_RAFT_ADDRESS";
/// A client endpoint that is not `https://host:port`.
pub const INVALID_CLIENT_ENDPOINT: &str = "INVALID_CLIENT_ENDPOINT";
/// The id is a member already, with other addresses or another role.
pub const REPLICA_EXISTS: &str = "REPLICA_EXISTS";
/// Another member has this replication address or client endpoint.
pub const REPLICA_ADDRESS_IN_USE: &str = "REPLICA_ADDRESS_IN_USE";
/// No member has this id.
pub const UNKNOWN_REPLICA: &str = "UNKNOWN_REPLICA";
/// Removing the only voter would leave no one to commit.
pub const LAST_VOTER: &str = "LAST_VOTER";
/// A membership change is not committed yet (or another is being handled).
pub const MEMBERSHIP_CHANGE_IN_PROGRESS: &str = "MEMBERSHIP_CHANGE_IN_PROGRESS";
/// The new learner did not catch up within the deadline (it stays a learner).
pub const REPLICA_CATCH_UP_TIMEOUT: &str = "REPLICA_CATCH_UP_TIMEOUT";
/// A membership change was not committed within the deadline (no quorum?).
pub const MEMBERSHIP_CHANGE_TIMEOUT: &str = "MEMBERSHIP_CHANGE_TIMEOUT";
/// The new voter set would have no live majority (the leader counted).
pub const QUORUM_AT_RISK: &str = "QUORUM_AT_RISK";

/// How long a change may take without a deadline on the request.
pub const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a change is waited for, whatever the request's deadline.
pub const MAX_CHANGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Answer this long before the request's own deadline, so that the caller
/// gets our precise status rather than its transport's.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Longest wait for the metrics to show a committed change.
const METRICS_SETTLE: Duration = Duration::from_secs(2);
/// How long the voters of a new voter set are given to acknowledge the
/// liveness probe once it is committed (forty heartbeats: a live replica,
/// even on a loaded machine, answers within a few).
const LIVENESS_GRACE: Duration = Duration::from_secs(2);

/// What the service needs of a replica.
pub struct Replicated {
    pub raft: LedgerRaft,
    pub sm: LedgerStateMachine,
    /// The configured client endpoints, when the membership names none.
    pub endpoints: BTreeMap<NodeId, String>,
}

pub struct ClusterSvc {
    replica: Option<Replicated>,
    /// One membership change at a time on this node.
    changing: tokio::sync::Mutex<()>,
}

type Metrics = openraft::RaftMetrics<NodeId, ReplicaNode>;
type WriteError = RaftError<NodeId, ClientWriteError<NodeId, ReplicaNode>>;

impl ClusterSvc {
    /// The service of a single (not replicated) node.
    pub fn single() -> ClusterSvc {
        ClusterSvc {
            replica: None,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The service of a replica.
    pub fn replicated(r: Replicated) -> ClusterSvc {
        ClusterSvc {
            replica: Some(r),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The central bank only, and only on a replica.
    fn admit<T>(&self, req: &Request<T>) -> Result<&Replicated, Status> {
        let p = participant_from_request(req)?;
        require_central_bank(&p)?;
        self.replica.as_ref().ok_or_else(|| {
            coded_status(
                Code::FailedPrecondition,
                NOT_REPLICATED,
                "this node is not replicated: it has no cluster membership",
            )
        })
    }
}

impl Replicated {
    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    /// `NOT_LEADER` naming the leader, unless this replica leads.
    fn require_leader(&self) -> Result<Metrics, Status> {
        let m = self.metrics();
        if m.state == ServerState::Leader && m.current_leader == Some(m.id) {
            return Ok(m);
        }
        let leader = m
            .current_leader
            .filter(|l| *l != m.id)
            .and_then(|l| client_endpoint_of(&self.raft, &self.endpoints, l));
        Err(not_leader_status(leader.as_deref()))
    }

    fn status(&self) -> pb::ClusterStatus {
        status_of(&self.metrics(), &self.sm)
    }

    /// Refuses (`FAILED_PRECONDITION`/`QUORUM_AT_RISK`) a change whose
    /// voter set would be `new`, unless a majority of `new` is live, the
    /// leader itself counted (when it is in `new`). `change` names the
    /// change for the message, `id` the replica it is about.
    ///
    /// Which voter is live: openraft 0.9 exposes no per-follower
    /// acknowledgement time (`RaftMetrics::millis_since_quorum_ack` is for a
    /// quorum as a whole), only `RaftMetrics::replication`, the last log id
    /// the leader knows each member holds. That alone says nothing on an
    /// idle cluster: a voter that stopped after the last write still shows
    /// the leader's last index. So the leader first writes a probe, a
    /// membership entry that changes nothing (`AddNodes` of no node: the
    /// same voters and nodes, at a new log index P; it commits with a
    /// quorum of the current voters, like any write), then gives the new
    /// voters up to [`LIVENESS_GRACE`] to hold it: a voter is live if its
    /// matched index reached P, i.e. it acknowledged an append sent after
    /// this request came, whatever the load (under load its index may pass
    /// P, which proves the same). A replica down, partitioned, or too far
    /// behind to reach P in time is not live. No probe is needed when the
    /// leader alone is a majority of `new` (the only voter left).
    async fn ensure_live_quorum(
        &self,
        m: &Metrics,
        new: &BTreeSet<NodeId>,
        deadline: Instant,
        change: &str,
        id: NodeId,
    ) -> Result<(), Status> {
        let need = new.len() / 2 + 1;
        if usize::from(new.contains(&m.id)) >= need {
            return Ok(());
        }
        let raft = self.raft.clone();
        let probe = run_change(
            self,
            deadline,
            "the liveness probe (a membership entry that changes nothing)",
            async move {
                raft.change_membership(ChangeMembers::AddNodes(BTreeMap::new()), true)
                    .await
            },
        )
        .await?;
        let p = probe.log_id.index;
        let live = |m: &Metrics| new.iter().filter(|v| holds(m, **v, p)).count();
        let grace = LIVENESS_GRACE.min(deadline.saturating_duration_since(Instant::now()));
        let waited = self
            .raft
            .wait(Some(grace))
            .metrics(
                |m| m.current_leader != Some(m.id) || live(m) >= need,
                "a live majority of the new voters",
            )
            .await;
        if let Err(openraft::metrics::WaitError::ShuttingDown) = waited {
            return Err(shutting_down());
        }
        let m = self.require_leader()?;
        let have = live(&m);
        if have >= need {
            return Ok(());
        }
        let down: Vec<NodeId> = new.iter().copied().filter(|v| !holds(&m, *v, p)).collect();
        let matched: Vec<String> = down
            .iter()
            .map(|v| match matched_index(&m, *v) {
                Some(i) => format!("{v} at {i}"),
                None => format!("{v} at none"),
            })
            .collect();
        let list = |s: &[NodeId]| s.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let new_ids: Vec<NodeId> = new.iter().copied().collect();
        tracing::warn!(id, voters = ?new, unreachable = ?down, probe = p, "refused a change: its voters would have no live majority");
        Err(coded_status_with(
            Code::FailedPrecondition,
            QUORUM_AT_RISK,
            format!(
                "{change} would leave voters {{{}}} without a live majority ({need} needed, {have} live, the leader counted): \
                 replica(s) {} look unreachable (their log is not matched up to the leader's probe at index {p} \
                 within {} ms: {}); nothing was changed. Restart them, or remove an unreachable voter first",
                list(&new_ids).join(", "),
                list(&down).join(", "),
                grace.as_millis(),
                matched.join(", "),
            ),
            &[("id", &id.to_string()), ("unreachable", &list(&down).join(","))],
        ))
    }

    /// The status once the metrics show the membership at `log_index` (or
    /// later): a change's answer shows the change.
    async fn status_after(&self, log_index: u64) -> pb::ClusterStatus {
        let _ = self
            .raft
            .wait(Some(METRICS_SETTLE))
            .metrics(
                |m| m.membership_config.log_id().is_some_and(|l| l.index >= log_index),
                "the membership change in the metrics",
            )
            .await;
        self.status()
    }
}

/// How far the leader knows `id`'s log to match its own (the leader's own:
/// its last log index).
fn matched_index(m: &Metrics, id: NodeId) -> Option<u64> {
    if id == m.id {
        return m.last_log_index;
    }
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|l| l.as_ref().map(|l| l.index))
}

/// `id` holds the leader's log up to `index` (the leader always does).
fn holds(m: &Metrics, id: NodeId, index: u64) -> bool {
    id == m.id || matched_index(m, id).is_some_and(|i| i >= index)
}

fn shutting_down() -> Status {
    coded_status(
        Code::Unavailable,
        "UNAVAILABLE",
        "this replica is shutting down; retry on another",
    )
}

fn status_of(m: &Metrics, sm: &LedgerStateMachine) -> pb::ClusterStatus {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let is_leader = m.state == ServerState::Leader && m.current_leader == Some(m.id);
    let members = membership
        .nodes()
        .map(|(id, n)| {
            let role = if voters.contains(id) {
                pb::ReplicaRole::Voter
            } else {
                pb::ReplicaRole::Learner
            };
            let matched_index = if is_leader { matched_index(m, *id) } else { None };
            pb::ClusterMember {
                id: *id,
                raft_addr: n.raft_addr.clone(),
                client_endpoint: n.client_endpoint.clone(),
                role: role as i32,
                matched_index,
            }
        })
        .collect();
    let (applied_height, head_hash, state_hash) = sm.with_state_ref(|s| (s.height(), s.head_hash(), s.state_hash()));
    let index = |l: &Option<openraft::LogId<NodeId>>| l.as_ref().map_or(0, |l| l.index);
    pb::ClusterStatus {
        node_id: m.id,
        leader_id: m.current_leader.unwrap_or(0),
        term: m.current_term,
        is_leader,
        millis_since_quorum_ack: if is_leader { m.millis_since_quorum_ack } else { None },
        applied_height,
        head_hash: head_hash.to_vec(),
        state_hash: state_hash.to_vec(),
        members,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_log_index: index(&m.last_applied),
        snapshot_log_index: index(&m.snapshot),
        purged_log_index: index(&m.purged),
        membership_log_index: index(m.membership_config.log_id()),
        joint: membership.get_joint_config().len() > 1,
    }
}

/// The request's own deadline (`grpc-timeout`), if it has one.
fn request_deadline<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When a change must be answered by: the request's deadline less a
/// margin, or [`DEFAULT_CHANGE_TIMEOUT`]; at most [`MAX_CHANGE_TIMEOUT`].
fn change_deadline<T>(req: &Request<T>) -> Instant {
    let budget = request_deadline(req).map_or(DEFAULT_CHANGE_TIMEOUT, |d| d.saturating_sub(DEADLINE_MARGIN));
    Instant::now() + budget.min(MAX_CHANGE_TIMEOUT)
}

/// `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address,
/// and a port from 1 to 65535.
fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) || port.starts_with('+') {
        return false;
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    // What the transport will dial must parse as a URI authority too.
    host_ok && format!("https://{s}").parse::<tonic::transport::Uri>().is_ok()
}

fn invalid(reason: &str, message: impl Into<String>) -> Status {
    coded_status(Code::InvalidArgument, reason, message)
}

fn check_add(r: &pb::AddReplicaRequest) -> Result<ReplicaNode, Status> {
    if r.id == 0 {
        return Err(invalid(INVALID_REPLICA_ID, "the replica id must not be 0"));
    }
    if !valid_host_port(&r.raft_addr) {
        return Err(invalid(
            INVALID_RAFT_ADDRESS,
            "raft_addr must be HOST:PORT (a DNS name, an IPv4 address or [IPv6], and a port 1-65535)",
        ));
    }
    let ok_endpoint = r.client_endpoint.strip_prefix("https://").is_some_and(valid_host_port);
    if !ok_endpoint {
        return Err(invalid(
            INVALID_CLIENT_ENDPOINT,
            "client_endpoint must be https://HOST:PORT, without a path",
        ));
    }
    Ok(ReplicaNode::new(r.raft_addr.clone(), r.client_endpoint.clone()))
}

fn role_name(voter: bool) -> &'static str {
    if voter {
        "voter"
    } else {
        "learner"
    }
}

/// A refused or failed openraft membership call as a status.
fn write_error(r: &Replicated, e: WriteError) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            let leader = f
                .leader_node
                .map(|n| n.client_endpoint)
                .filter(|e| !e.is_empty())
                .or_else(|| f.leader_id.and_then(|l| client_endpoint_of(&r.raft, &r.endpoints, l)));
            not_leader_status(leader.as_deref())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(p) => coded_status(
                Code::FailedPrecondition,
                MEMBERSHIP_CHANGE_IN_PROGRESS,
                format!(
                    "the previous membership change (log index {}) is not committed yet; retry shortly",
                    p.membership_log_id.map_or(0, |l| l.index)
                ),
            ),
            ChangeMembershipError::EmptyMembership(_) => {
                coded_status(Code::FailedPrecondition, LAST_VOTER, "the change would leave no voter")
            }
            ChangeMembershipError::LearnerNotFound(l) => coded_status(
                Code::NotFound,
                UNKNOWN_REPLICA,
                format!(
                    "replica {} is not a learner of the cluster (removed meanwhile?)",
                    l.node_id
                ),
            ),
        },
        RaftError::Fatal(Fatal::Stopped) => shutting_down(),
        RaftError::Fatal(f) => internal(format!("membership change: {f}")),
    }
}

/// Runs an openraft membership call in a task of its own (so it is never
/// cut in the middle) and waits for it until `deadline`.
async fn run_change<F>(
    r: &Replicated,
    deadline: Instant,
    what: &str,
    call: F,
) -> Result<openraft::raft::ClientWriteResponse<TypeConfig>, Status>
where
    F: std::future::Future<Output = Result<openraft::raft::ClientWriteResponse<TypeConfig>, WriteError>>
        + Send
        + 'static,
{
    let task = tokio::spawn(call);
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), task).await {
        Ok(Ok(Ok(resp))) => Ok(resp),
        Ok(Ok(Err(e))) => Err(write_error(r, e)),
        Ok(Err(join)) => Err(internal(format!("membership change task: {join}"))),
        Err(_) => Err(coded_status(
            Code::DeadlineExceeded,
            MEMBERSHIP_CHANGE_TIMEOUT,
            format!("{what} was not committed in time (is a quorum of voters up?); it may still be: see GetCluster"),
        )),
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterSvc {
    async fn get_cluster(&self, req: Request<pb::GetClusterRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let r = self.admit(&req)?;
        Ok(Response::new(r.status()))
    }

    async fn add_replica(&self, req: Request<pb::AddReplicaRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let r = self.admit(&req)?;
        let deadline = change_deadline(&req);
        let a = req.into_inner();
        let node = check_add(&a)?;
        r.require_leader()?;
        let _one = self.changing.try_lock().map_err(|_| {
            coded_status(
                Code::FailedPrecondition,
                MEMBERSHIP_CHANGE_IN_PROGRESS,
                "another membership change is being made on this leader; retry once it is done",
            )
        })?;
        let m = r.require_leader()?;
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let is_voter = voters.contains(&a.id);
        let already = match membership.get_node(&a.id) {
            None => false,
            // Exactly what is asked for is there already: a retry.
            Some(n) if *n == node && (is_voter == a.promote || !is_voter) => true,
            Some(_) => {
                return Err(coded_status_with(
                    Code::AlreadyExists,
                    REPLICA_EXISTS,
                    format!(
                        "replica {} is already a {} of the cluster, with other addresses or role; remove it first",
                        a.id,
                        role_name(is_voter)
                    ),
                    &[("id", &a.id.to_string()), ("role", role_name(is_voter))],
                ));
            }
        };
        if let Some((other, _)) = membership.nodes().find(|(id, n)| {
            **id != a.id && (n.raft_addr == node.raft_addr || n.client_endpoint == node.client_endpoint)
        }) {
            return Err(coded_status_with(
                Code::AlreadyExists,
                REPLICA_ADDRESS_IN_USE,
                format!("replica {other} already has this replication address or client endpoint"),
                &[("id", &other.to_string())],
            ));
        }
        if already && (is_voter || !a.promote) {
            return Ok(Response::new(r.status()));
        }
        let mut last_index = m.membership_config.log_id().map_or(0, |l| l.index);
        if !already {
            tracing::info!(id = a.id, raft = %node.raft_addr, client = %node.client_endpoint, "adding a learner");
            let raft = r.raft.clone();
            let (id, n) = (a.id, node.clone());
            let resp = run_change(r, deadline, "adding the learner", async move {
                raft.add_learner(id, n, false).await
            })
            .await?;
            last_index = resp.log_id.index;
        }
        // Caught up: the leader's replication holds the membership entry
        // that added it (from the log or a snapshot).
        let caught_up = r
            .raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(
                |m| {
                    m.current_leader != Some(m.id)
                        || m.replication
                            .as_ref()
                            .and_then(|rep| rep.get(&a.id))
                            .and_then(|l| l.as_ref())
                            .is_some_and(|l| l.index >= last_index)
                },
                "the new learner caught up",
            )
            .await;
        match caught_up {
            Ok(m) if m.current_leader != Some(m.id) => {
                r.require_leader()?;
            }
            Ok(_) => {}
            Err(openraft::metrics::WaitError::ShuttingDown) => return Err(shutting_down()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                return Err(coded_status_with(
                    Code::DeadlineExceeded,
                    REPLICA_CATCH_UP_TIMEOUT,
                    format!(
                        "replica {} is a learner now but has not caught up yet (is it running, reachable at {}, started with the same genesis?); it goes on catching up: send the same request again to promote it",
                        a.id, node.raft_addr
                    ),
                    &[("id", &a.id.to_string())],
                ));
            }
        }
        tracing::info!(id = a.id, "the learner caught up");
        if a.promote {
            // The learner as a voter too: refused unless a majority of
            // that voter set is live (see `ensure_live_quorum`).
            let m = r.require_leader()?;
            let mut new = voters.clone();
            new.insert(a.id);
            r.ensure_live_quorum(&m, &new, deadline, &format!("promoting replica {}", a.id), a.id)
                .await?;
            let raft = r.raft.clone();
            let id = a.id;
            let resp = run_change(r, deadline, "promoting the learner", async move {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                    .await
            })
            .await?;
            last_index = resp.log_id.index;
            tracing::info!(id = a.id, "the learner is a voter");
        }
        Ok(Response::new(r.status_after(last_index).await))
    }

    async fn remove_replica(
        &self,
        req: Request<pb::RemoveReplicaRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let r = self.admit(&req)?;
        let deadline = change_deadline(&req);
        let id = req.get_ref().id;
        if id == 0 {
            return Err(invalid(INVALID_REPLICA_ID, "the replica id must not be 0"));
        }
        r.require_leader()?;
        let _one = self.changing.try_lock().map_err(|_| {
            coded_status(
                Code::FailedPrecondition,
                MEMBERSHIP_CHANGE_IN_PROGRESS,
                "another membership change is being made on this leader; retry once it is done",
            )
        })?;
        let m = r.require_leader()?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(coded_status_with(
                Code::NotFound,
                UNKNOWN_REPLICA,
                format!("no member of the cluster has id {id}"),
                &[("id", &id.to_string())],
            ));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let raft = r.raft.clone();
        let resp = if voters.contains(&id) {
            let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            if rest.is_empty() {
                return Err(coded_status_with(
                    Code::FailedPrecondition,
                    LAST_VOTER,
                    format!("replica {id} is the only voter: the cluster cannot go on without one"),
                    &[("id", &id.to_string())],
                ));
            }
            // The remaining voters must have a live majority: removing a
            // live voter while another is down would stall the cluster,
            // removing the down one is what gets rid of it.
            r.ensure_live_quorum(&m, &rest, deadline, &format!("removing replica {id}"), id)
                .await?;
            tracing::info!(id, voters = ?rest, "removing a voter");
            run_change(r, deadline, "removing the voter", async move {
                raft.change_membership(ChangeMembers::ReplaceAllVoters(rest), false)
                    .await
            })
            .await?
        } else {
            tracing::info!(id, "removing a learner");
            run_change(r, deadline, "removing the learner", async move {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
            })
            .await?
        };
        Ok(Response::new(r.status_after(resp.log_id.index).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_addresses_are_host_and_port() {
        for good in [
            "127.0.0.1:50061",
            "node-4.example.org:7000",
            "[::1]:50061",
            "localhost:1",
        ] {
            assert!(valid_host_port(good), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            ":50061",
            "https://127.0.0.1:50061",
            "host/path:80",
            "bad host:80",
            "-x.example:80",
            "[::1:80",
            "[zz]:80",
            "a..b:80",
        ] {
            assert!(!valid_host_port(bad), "{bad}");
        }
        let req = |raft: &str, client: &str| pb::AddReplicaRequest {
            id: 4,
            raft_addr: raft.into(),
            client_endpoint: client.into(),
            promote: true,
        };
        let reason = |st: Status| tonic_types::StatusExt::get_details_error_info(&st).unwrap().reason;
        assert!(check_add(&req("127.0.0.1:1", "https://127.0.0.1:2")).is_ok());
        for (r, want) in [
            (
                pb::AddReplicaRequest {
                    id: 0,
                    ..req("127.0.0.1:1", "https://127.0.0.1:2")
                },
                INVALID_REPLICA_ID,
            ),
            (req("127.0.0.1", "https://127.0.0.1:2"), INVALID_RAFT_ADDRESS),
            (req("127.0.0.1:1", "http://127.0.0.1:2"), INVALID_CLIENT_ENDPOINT),
            (req("127.0.0.1:1", "https://127.0.0.1:2/"), INVALID_CLIENT_ENDPOINT),
            (req("127.0.0.1:1", "127.0.0.1:2"), INVALID_CLIENT_ENDPOINT),
        ] {
            let st = check_add(&r).unwrap_err();
            assert_eq!((st.code(), reason(st)), (Code::InvalidArgument, want.to_string()));
        }
    }

    #[test]
    fn the_requests_deadline_bounds_a_change() {
        let with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("grpc-timeout", v.parse().unwrap());
            r
        };
        assert_eq!(request_deadline(&with("90S")), Some(Duration::from_secs(90)));
        assert_eq!(request_deadline(&with("1500m")), Some(Duration::from_millis(1500)));
        assert_eq!(request_deadline(&with("2M")), Some(Duration::from_secs(120)));
        assert_eq!(request_deadline(&with("S")), None);
        assert_eq!(request_deadline(&with("12x")), None);
        assert_eq!(request_deadline(&Request::new(())), None);
        let left = |r: &Request<()>| change_deadline(r).saturating_duration_since(Instant::now());
        assert!(left(&with("10S")) <= Duration::from_millis(9_500));
        assert!(left(&with("10S")) > Duration::from_secs(9));
        assert!(left(&Request::new(())) > Duration::from_secs(59));
        assert!(left(&with("5H")) <= MAX_CHANGE_TIMEOUT);
    }
}
