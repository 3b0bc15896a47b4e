//! What every service shares: the ledger backend, the store, the commit feed,
//! metrics and the limits on what clients may ask for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ruble_ledger::codec::SignedOp;
use ruble_ledger::query::QueryGuard;
use ruble_ledger::state::{Controls, SealedBlock};
use ruble_ledger::store::{Store, StoreError};
use ruble_ledger::types::{AccountId, AccountKind};
use ruble_ledger::{Outcome, Reason};
use tokio::sync::broadcast;
use tonic::Status;

use crate::backend::{LedgerBackend, Refusal};
use crate::budget::{Caller, StreamBudget, StreamPermit};
use crate::convert::{coded_status_with, internal, reason_status};
use crate::metrics::Metrics;

/// Limits on what a client controls.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    pub max_message_bytes: usize,
    pub max_batch_len: usize,
    /// Streams open at once without a client certificate, node-wide.
    pub max_anonymous_streams: usize,
    /// Streams open at once without a client certificate from one IP address.
    pub max_streams_per_ip: usize,
    /// Streams open at once by one participant (a bank, the central bank),
    /// a budget no anonymous caller can touch.
    pub max_streams_per_participant: usize,
    /// A submission stream of a caller without a certificate that sends
    /// nothing for this long is ended (`DEADLINE_EXCEEDED`, `STREAM_IDLE`);
    /// so is any stream whose results the caller stops reading for this long
    /// (`STREAM_STALLED`).
    pub anonymous_stream_idle: Duration,
    /// The same for participants' streams.
    pub participant_stream_idle: Duration,
    /// TCP connections open at once, node-wide, and from one IP address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// HTTP/2 streams (calls) in flight on one connection.
    pub max_streams_per_connection: u32,
    /// Longest a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    pub max_stream_ops_per_sec: u64,
    /// Results a stream may have outstanding before it stops reading requests.
    pub max_stream_inflight: usize,
    /// Largest page of history or statement.
    pub max_page: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_message_bytes: 4 << 20,
            max_batch_len: 4096,
            max_anonymous_streams: 512,
            max_streams_per_ip: 32,
            max_streams_per_participant: 64,
            anonymous_stream_idle: Duration::from_secs(30),
            participant_stream_idle: Duration::from_secs(600),
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_streams_per_connection: 128,
            tls_handshake_timeout: Duration::from_secs(10),
            max_stream_ops_per_sec: 200_000,
            max_stream_inflight: 8192,
            max_page: 1000,
        }
    }
}

impl ClientLimits {
    /// How long a stream of `caller` may sit idle or stalled.
    pub fn stream_idle(&self, caller: &Caller) -> Duration {
        match caller {
            Caller::Participant(_) => self.participant_stream_idle,
            Caller::Anonymous(_) => self.anonymous_stream_idle,
        }
    }
}

/// The reason of a write sent to a replica that does not lead.
pub const NOT_LEADER: &str = "NOT_LEADER";

/// `UNAVAILABLE`/`NOT_LEADER`, with the leader's client endpoint in the
/// ErrorInfo metadata (`leader`) when known.
pub fn not_leader_status(leader: Option<&str>) -> Status {
    match leader {
        Some(l) => coded_status_with(
            tonic::Code::Unavailable,
            NOT_LEADER,
            format!("this replica does not lead; send writes to {l}"),
            &[("leader", l)],
        ),
        None => coded_status_with(
            tonic::Code::Unavailable,
            NOT_LEADER,
            "this replica does not lead and knows no leader yet (an election is under way); retry shortly",
            &[],
        ),
    }
}

/// Shared state of the gRPC services.
pub struct Ctx {
    /// The ledger: submissions and the committed head.
    pub ledger: Arc<dyn LedgerBackend>,
    pub store: Arc<Store>,
    pub commits: broadcast::Sender<Arc<SealedBlock>>,
    pub metrics: Metrics,
    pub limits: ClientLimits,
    pub streams: StreamBudget,
    pub queries: parking_lot::Mutex<QueryGuard>,
    /// Which bank serves an account, for the per-operation "is this your
    /// client" check of bank submissions.
    pub servicing: ServicingCache,
    /// The control records (holds, purposes, lots, keys, registry) as of
    /// the committed head, rebuilt from the store when the head moves.
    pub controls: ControlsCache,
    /// Flips to true when the node begins shutting down; long-lived streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Account → (servicing bank, kind), cached: an account's bank and kind are
/// set when it is opened and never change, so a cached answer cannot go
/// stale. Only accounts that exist are cached (an unknown one may be opened
/// later). Bounded: cleared wholesale when full.
pub struct ServicingCache {
    map: parking_lot::RwLock<HashMap<AccountId, (AccountId, AccountKind), foldhash::fast::RandomState>>,
    capacity: usize,
}

impl ServicingCache {
    pub fn new(capacity: usize) -> Self {
        ServicingCache {
            map: parking_lot::RwLock::new(HashMap::default()),
            capacity: capacity.max(1),
        }
    }

    /// The account's bank and kind, or `None` if it does not exist.
    pub fn get(&self, store: &Store, account: &AccountId) -> Result<Option<(AccountId, AccountKind)>, StoreError> {
        if let Some(hit) = self.map.read().get(account) {
            return Ok(Some(*hit));
        }
        let Some(a) = store.account(account)? else {
            return Ok(None);
        };
        let mut map = self.map.write();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(*account, (a.bank, a.kind));
        Ok(Some((a.bank, a.kind)))
    }
}

/// The control records of the committed head, read from the store
/// ([`Store::control_records`]: the checkpoint's family with the pending
/// changes over it, so a receipt's effect is visible as soon as the receipt
/// is) and kept until a commit changes them.
///
/// The copy is tagged with [`Store::controls_version`] as read before the
/// scan: the store bumps it after the changes are readable, so the copy is
/// at least that recent, and it serves every read while the version stays
/// (blocks that change no control record do not rebuild it).
#[derive(Default)]
pub struct ControlsCache {
    cached: parking_lot::Mutex<Option<(u64, Arc<Controls>)>>,
}

impl ControlsCache {
    pub fn new() -> Self {
        ControlsCache::default()
    }

    /// The controls as of (at least) the last commit that changed them.
    pub fn get(&self, store: &Store) -> Result<Arc<Controls>, Status> {
        let version = store.controls_version();
        if let Some((v, c)) = &*self.cached.lock() {
            if *v == version {
                return Ok(c.clone());
            }
        }
        let records = store.control_records().map_err(internal)?;
        let controls = Arc::new(Controls::from_records(records).map_err(internal)?);
        let mut cached = self.cached.lock();
        if cached.as_ref().is_none_or(|(v, _)| *v <= version) {
            *cached = Some((version, controls.clone()));
        }
        Ok(controls)
    }
}

impl Ctx {
    /// A stream slot charged to `caller`, or RESOURCE_EXHAUSTED.
    pub fn stream_permit(&self, caller: Caller) -> Result<StreamPermit, Status> {
        self.streams
            .acquire(caller)
            .inspect_err(|_| self.metrics.inc_refused("TOO_MANY_STREAMS"))
    }

    /// The control records as of the committed head (see [`ControlsCache`]).
    pub fn controls(&self) -> Result<Arc<Controls>, Status> {
        self.controls.get(&self.store)
    }

    /// Resolves when shutdown begins.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Submits decoded operations and waits for their durable outcome.
    /// Overload is a status (`RESOURCE_EXHAUSTED`), not a queue.
    pub async fn submit(&self, ops: Vec<SignedOp>) -> Result<Vec<Outcome>, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let n = ops.len();
        let (admitted, metrics) = (std::time::Instant::now(), self.metrics.clone());
        self.ledger
            .submit(
                ops,
                Box::new(move |outs| {
                    metrics.observe_submit(admitted.elapsed().as_secs_f64());
                    let _ = tx.send(outs);
                }),
            )
            .map_err(|refusal| match refusal {
                Refusal::Ledger(r) => {
                    for _ in 0..n {
                        self.metrics.inc_rejected(r.code());
                    }
                    // Say why the node cannot commit (e.g. the disk is full).
                    match (r, self.ledger.storage_error()) {
                        (Reason::Unavailable, Some(e)) => reason_status(r, format!("{}: {e}", r.describe())),
                        _ => reason_status(r, r.describe()),
                    }
                }
                Refusal::NotLeader { leader } => {
                    self.metrics.inc_refused(NOT_LEADER);
                    not_leader_status(leader.as_deref())
                }
            })?;
        let outs = rx
            .await
            .map_err(|_| reason_status(Reason::Unavailable, "the node is shutting down"))?;
        for o in &outs {
            match o {
                Outcome::Committed(_) => self.metrics.inc_accepted(1),
                Outcome::Duplicate(_) => {}
                Outcome::Rejected(r) => self.metrics.inc_rejected(r.code()),
            }
        }
        Ok(outs)
    }

    /// A batch RPC: refuses an over-long batch, decodes each operation, vets
    /// it with `check` (service rules), and answers one result per operation.
    pub async fn submit_batch(
        &self,
        ops: &[ruble_proto::v1::SignedOperation],
        check: impl Fn(&SignedOp) -> Result<(), Reason>,
    ) -> Result<ruble_proto::v1::SubmitBatchResponse, Status> {
        use crate::convert::{coded_status, decode_op, outcome_pb};
        if ops.len() > self.limits.max_batch_len {
            return Err(coded_status(
                tonic::Code::InvalidArgument,
                "BATCH_TOO_LARGE",
                format!("a batch holds at most {} operations", self.limits.max_batch_len),
            ));
        }
        let decoded: Vec<_> = ops.iter().map(|o| decode_op(Some(o))).collect();
        // Every operation that decoded is answered with its id, refused or not.
        let ids: Vec<Vec<u8>> = decoded
            .iter()
            .map(|d| d.as_ref().map(|op| op.tx_id.0.to_vec()).unwrap_or_default())
            .collect();
        let items: Vec<_> = decoded
            .into_iter()
            .map(|d| d.and_then(|op| check(&op).map(|_| op)))
            .collect();
        let outs = self.submit_checked(items).await?;
        Ok(ruble_proto::v1::SubmitBatchResponse {
            results: ids.iter().zip(&outs).map(|(id, o)| outcome_pb(id, o)).collect(),
            request_id: 0,
        })
    }

    /// Submits a mix of pre-checked items: `Err` items are already rejected
    /// (malformed, not allowed on this service) and never reach the ledger.
    pub async fn submit_checked(&self, items: Vec<Result<SignedOp, Reason>>) -> Result<Vec<Outcome>, Status> {
        let mut out: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
        let mut ops = Vec::new();
        let mut slots = Vec::new();
        for (i, it) in items.into_iter().enumerate() {
            match it {
                Ok(op) => {
                    out.push(None);
                    slots.push(i);
                    ops.push(op);
                }
                Err(r) => {
                    self.metrics.inc_rejected(r.code());
                    out.push(Some(Outcome::Rejected(r)));
                }
            }
        }
        if !ops.is_empty() {
            for (slot, o) in slots.into_iter().zip(self.submit(ops).await?) {
                out[slot] = Some(o);
            }
        }
        Ok(out.into_iter().map(|o| o.expect("every slot filled")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Refusal;
    use crate::budget::StreamCaps;
    use ruble_ledger::pipeline::{CommittedView, PipelineStats, Reply};
    use ruble_ledger::query::{Query, QueryError};

    /// A replica that does not lead, knowing (or not) who does.
    struct Follower {
        leader: Option<String>,
        view: CommittedView,
        stats: PipelineStats,
    }

    impl LedgerBackend for Follower {
        fn submit(&self, _: Vec<SignedOp>, _: Reply) -> Result<(), Refusal> {
            Err(Refusal::NotLeader {
                leader: self.leader.clone(),
            })
        }
        fn view(&self) -> CommittedView {
            self.view.clone()
        }
        fn storage_error(&self) -> Option<String> {
            None
        }
        fn stats(&self) -> &PipelineStats {
            &self.stats
        }
    }

    fn ctx(dir: &std::path::Path, leader: Option<&str>) -> Ctx {
        let ledger = ruble_ledger::Ledger::open(dir, Some(&genesis())).unwrap();
        let view = CommittedView {
            height: 0,
            head_hash: ledger.state().head_hash(),
            state_hash: ledger.state().state_hash(),
            timestamp_ms: ledger.state().timestamp_ms(),
            params: ledger.state().params().clone(),
            totals: ledger.state().totals(),
        };
        Ctx {
            ledger: Arc::new(Follower {
                leader: leader.map(str::to_string),
                view,
                stats: PipelineStats::default(),
            }),
            store: ledger.store().clone(),
            commits: broadcast::channel(4).0,
            metrics: Metrics::new(),
            limits: ClientLimits::default(),
            streams: StreamBudget::new(StreamCaps {
                anonymous: 1,
                per_ip: 1,
                per_participant: 1,
            }),
            queries: parking_lot::Mutex::new(QueryGuard::new(30_000, 16)),
            servicing: ServicingCache::new(16),
            controls: ControlsCache::new(),
            shutdown: tokio::sync::watch::channel(false).1,
        }
    }

    fn genesis() -> ruble_ledger::Genesis {
        use ed25519_dalek::SigningKey;
        let cb = SigningKey::from_bytes(&[7; 32]);
        ruble_ledger::Genesis {
            chain_id: "ruble-test".into(),
            central_bank: AccountId(cb.verifying_key().to_bytes()),
            timestamp_ms: 1_800_000_000_000,
            max_validity_ms: 60_000,
            phase: ruble_ledger::Phase::Business,
            reporting_threshold: 0,
            settlement_limits: Default::default(),
            business_limits: Default::default(),
            retail_limits: Default::default(),
            banks: Vec::new(),
        }
    }

    fn op() -> SignedOp {
        use ed25519_dalek::SigningKey;
        let k = SigningKey::from_bytes(&[9; 32]);
        let body = ruble_ledger::OpBody {
            chain_id: "ruble-test".into(),
            signer: AccountId(k.verifying_key().to_bytes()),
            nonce: 1,
            valid_until_ms: 1_800_000_030_000,
            op: ruble_ledger::Op::Transfer {
                payee: AccountId([3; 32]),
                amount: 1,
                purpose: String::new(),
            },
        };
        SignedOp::sign(body, &k)
    }

    /// A write to a replica that does not lead is UNAVAILABLE/NOT_LEADER with
    /// the leader's client endpoint in the ErrorInfo metadata, so a client can
    /// go there; without a known leader the metadata is absent.
    #[tokio::test]
    async fn a_follower_answers_writes_with_the_leaders_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let st = ctx(dir.path(), Some("https://127.0.0.1:50472"))
            .submit(vec![op()])
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unavailable);
        let info = tonic_types::StatusExt::get_details_error_info(&st).expect("ErrorInfo");
        assert_eq!(info.reason, NOT_LEADER);
        assert_eq!(
            info.metadata.get("leader").map(String::as_str),
            Some("https://127.0.0.1:50472")
        );

        let dir = tempfile::tempdir().unwrap();
        let st = ctx(dir.path(), None).submit(vec![op()]).await.unwrap_err();
        let info = tonic_types::StatusExt::get_details_error_info(&st).expect("ErrorInfo");
        assert_eq!(
            (st.code(), info.reason.as_str()),
            (tonic::Code::Unavailable, NOT_LEADER)
        );
        assert!(info.metadata.is_empty());
    }

    /// A query is checked against the key given (the account's controlling
    /// key), not the id it names; each `(account, nonce)` passes once.
    #[test]
    fn queries_are_checked_against_the_controlling_key() {
        use ed25519_dalek::SigningKey;
        let (old, new) = (SigningKey::from_bytes(&[3; 32]), SigningKey::from_bytes(&[4; 32]));
        let account = AccountId(old.verifying_key().to_bytes());
        let controller = AccountId(new.verifying_key().to_bytes());
        let q = |nonce| Query {
            chain_id: "ruble-test".into(),
            method: "GetAccount".into(),
            account,
            issued_at_ms: 1_000_000,
            nonce,
            params: Vec::new(),
        };
        let mut g = QueryGuard::new(30_000, 16);
        let by_new = q(1).sign(&new);
        assert_eq!(
            g.check_by(1_000_000, &q(1), &account, &by_new),
            Err(QueryError::BadSignature)
        );
        assert_eq!(g.check_by(1_000_000, &q(1), &controller, &by_new), Ok(()));
        assert_eq!(
            g.check_by(1_000_000, &q(1), &controller, &by_new),
            Err(QueryError::Reused)
        );
        let by_old = q(2).sign(&old);
        assert_eq!(
            g.check_by(1_000_000, &q(2), &controller, &by_old),
            Err(QueryError::BadSignature)
        );
        assert!(q(2).verify_by(&account, &by_old));
        assert_eq!(
            g.check_by(1_100_000, &q(3), &controller, &q(3).sign(&new)),
            Err(QueryError::Stale)
        );
    }

    /// Without control records every account shows its plain form: its
    /// id as controller, everything free, its kind's limits.
    #[test]
    fn accounts_show_their_controls() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), None);
        let controls = ctx.controls().unwrap();
        assert!(controls.is_empty());
        let cb = ctx.ledger.view().params.central_bank;
        let a = ctx.store.account(&cb).unwrap().unwrap();
        let pb = crate::convert::account_pb(&a, &ctx.ledger.view().params, &controls, 0);
        assert_eq!(pb.controller, cb.0.to_vec());
        assert_eq!((pb.free, pb.tagged, pb.reserved), (a.balance, 0, 0));
        assert_eq!(pb.tier, "");
        assert!(pb.fraud_flagged_by.is_empty() && pb.lots.is_empty() && pb.signatories.is_none());
        // The copy is reused while the head stays.
        assert!(Arc::ptr_eq(&controls, &ctx.controls().unwrap()));
    }
}
