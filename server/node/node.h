// A party's node, without any transport: receives signed requests from
// peers, takes drafts from operators, signs, stores and delivers them. The
// gRPC services in server/grpc/ are thin adapters over this class.
//
//   COMITY_ASSIGN_OR_RETURN(auto node, Node::Create(setup.get(), std::move(store),
//                                                   transport.get(), SystemClock::Get()));
//   node->Start();  // Background delivery and retries.
//   ...
//   node->Stop();
#ifndef COMITY_SERVER_NODE_NODE_H_
#define COMITY_SERVER_NODE_NODE_H_

#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/peer.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/config/node_config.h"
#include "server/node/metrics.h"
#include "server/node/peer_transport.h"
#include "server/node/rate_limiter.h"
#include "server/audit/verifier.h"
#include "server/evidence/evidence_store.h"
#include "server/store/store.h"
#include "server/util/clock.h"

namespace comity {

// Thread-safe. Call Stop() (or destroy) before destroying the transport.
class Node {
 public:
  using SubmitDone = std::function<void(absl::StatusOr<v1::RequestRecord>)>;

  // `setup`, `transport` and `clock` must outlive the node.
  static absl::StatusOr<std::unique_ptr<Node>> Create(const NodeSetup* setup,
                                                      std::unique_ptr<Store> store,
                                                      PeerTransport* transport,
                                                      const Clock* clock);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts the outbox (one delivery lane per peer, see docs/delivery.md),
  // which delivers submitted requests, case steps and proposals and retries
  // undelivered ones (also those left from before a restart), and the
  // housekeeping worker (gossip, deadlines, evidence).
  void Start();
  // Stops the workers; waiting Submit callbacks get Unavailable (what they
  // submitted is stored and delivered after restart). Idempotent.
  void Stop();

  const std::string& party() const { return setup_->config.party(); }

  // --- Authentication (the adapters pass the TLS peer's PEM certificate). ---

  // The party a peer node's certificate speaks for. PermissionDenied unless
  // it names a configured peer party and was issued by that party's CA.
  absl::StatusOr<std::string> AuthenticatePeer(const std::string& cert_pem,
                                               const std::string& chain_pem) const;
  // The operator an operator certificate speaks for (name and roles).
  // PermissionDenied unless it names this node's party and was issued by the
  // operator CA.
  absl::StatusOr<CertIdentity> AuthenticateOperator(const std::string& cert_pem,
                                                    const std::string& chain_pem) const;

  // Admission of one call of peer party `peer_party` (already
  // authenticated) under its rate limit (limits.peer_rate_per_second):
  // Unavailable over it. Refusals are audited as one PEER_RATE_LIMITED entry
  // per peer and interval, not one per call, so a flood cannot turn into a
  // flood of audit commits.
  absl::Status AdmitPeer(const std::string& peer_party) { return peer_limiter_.Admit(peer_party); }

  // Records in the audit log that a caller was refused: an operator's
  // authentication or authorisation failure, or a peer's request refused.
  // Errors are logged, not returned: the refusal stands either way.
  void RecordAuthFailure(const std::string& actor, const std::string& detail);
  void RecordPeerRefusal(const std::string& actor, const std::string& payload_sha256,
                         const absl::Status& why);

  // --- Peer API. ---

  // Checks and durably stores a request from `peer_party` (already
  // authenticated), then returns the signed receipt. Errors as documented
  // on PeerService.DeliverRequest in proto/comity/v1/peer.proto. Nothing is
  // stored unless OK.
  absl::StatusOr<v1::SignedEnvelope> ReceiveRequest(const std::string& peer_party,
                                                    const v1::SignedEnvelope& envelope);

  // --- Operator API. ---

  // Completes, signs and stores `draft`, then calls `done` (on the delivery
  // worker, or inline on an early error) with the record after the first
  // delivery attempt. InvalidArgument for a bad draft, FailedPrecondition
  // for an unconfigured requested party.
  void Submit(const std::string& operator_name, v1::RequestBody draft, SubmitDone done);

  // Two-person approval: `approver` (who must not be the submitter) approves
  // a draft AWAITING_APPROVAL; it is dated, assessed, signed and delivered,
  // and `done` gets the record as for Submit. FailedPrecondition if the
  // request is not awaiting approval, PermissionDenied for the submitter.
  void Approve(const std::string& approver, const std::string& request_id, SubmitDone done);

  absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                      int limit) const;

  // --- Cases (docs/lifecycle.md). ---

  struct Decision {
    v1::CaseAction action = v1::CASE_ACTION_UNSPECIFIED;
    std::vector<v1::RefusalGround> refusal_grounds;
    std::string reasons;
    std::string consultation;
    std::string text;
    bool final_response = false;
    // RESPOND: files on this node's machine, added to its evidence store,
    // and conditions on their use (ETS185 Art 28(2)).
    std::vector<std::string> evidence_paths;
    std::vector<std::string> release_conditions;
    // ACCEPT_CONDITIONS (filled by the node): the conditions accepted.
    std::vector<std::string> accepted_conditions;
  };
  // A step of the case of a request this node received, taken by
  // `operator_name`: checked (legal from the current state; a refusal only on
  // grounds the governing instrument leaves open), signed, stored, audited and
  // queued for delivery to the requesting party. Returns the updated record.
  absl::StatusOr<v1::RequestRecord> Decide(const std::string& operator_name,
                                           const std::string& request_id,
                                           const Decision& decision);
  // A step of the case of a request this node sent (WITHDRAW, PROVIDE_INFO,
  // CLOSE, ACCEPT_CONDITIONS): signed as a proposal and queued durably for
  // the requested party, which numbers it into the case; applied here from
  // the transition it returns. Waits for the first delivery attempt: the
  // returned record lists the proposal in queued_proposals while that party
  // is unreachable (it is delivered when it returns). FailedPrecondition if
  // the party refuses the proposal for good.
  absl::StatusOr<v1::RequestRecord> Propose(const std::string& operator_name,
                                            const std::string& request_id,
                                            const Decision& decision);
  // Decide on a received request (reviewer role) or Propose on a sent one
  // (submitter role), as the request is.
  absl::StatusOr<v1::RequestRecord> Act(const CertIdentity& op, const std::string& request_id,
                                        const Decision& decision);
  // Evidence (docs/lifecycle.md). OK if `peer_party` may fetch evidence
  // file `sha256` of `request_id`: listed in a response to its request, with
  // every release condition accepted. PermissionDenied / FailedPrecondition
  // otherwise. The bytes are then read from evidence().
  absl::Status CheckEvidenceAccess(const std::string& peer_party, const std::string& request_id,
                                   const std::string& sha256);
  // Fetches every evidence file listed in responses to this node's requests
  // that it does not hold yet, resuming partial transfers. Run by the
  // worker; public for tests.
  void FetchPendingEvidence();
  // An operator is about to save evidence file `sha256` of `request_id`
  // outside the node (the bytes are then read from evidence()).
  // FailedPrecondition for TLP:RED material unless `allow_tlp_red`; NotFound
  // if not held here; audited (EVIDENCE_EXPORTED) when it starts (offset 0).
  absl::Status BeginEvidenceExport(const std::string& operator_name,
                                   const std::string& request_id, const std::string& sha256,
                                   uint64_t offset, bool allow_tlp_red);
  EvidenceStore* evidence() { return evidence_.get(); }

  // Each configured peer's reachability, queue depth and last error.
  absl::StatusOr<std::vector<v1::PeerStatus>> Peers();

  // Late and expiring deadlines of open cases on this node (both
  // directions), at the node's clock.
  absl::StatusOr<std::vector<v1::CaseDeadline>> Overdue();
  // Escalates (audit entry CASE_ESCALATED, error log) each BINDING request
  // that missed its acknowledge or decide deadline, once per deadline. Run
  // by the worker; public for tests.
  void CheckDeadlines();

  // Peer API: numbers the requesting party's signed proposal into the case.
  absl::StatusOr<v1::SignedEnvelope> SequenceProposal(const std::string& peer_party,
                                                      const v1::SignedEnvelope& proposal);
  // The requested party's signed step of a case this node requested;
  // returns this node's signed Acknowledgement (also for a step it already
  // holds, so that a retried delivery is acknowledged again).
  absl::StatusOr<v1::SignedEnvelope> ReceiveTransition(const std::string& peer_party,
                                                       const v1::SignedEnvelope& envelope);

  // --- Audit log (docs/audit_log.md). ---

  // Peer gossip: checks `their_head` (from the TLS peer `peer_party`) and
  // returns this node's latest head.
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const std::string& peer_party,
                                                       const v1::SignedEnvelope& their_head);
  absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t old_size,
                                                            uint64_t new_size);
  // A peer reports two heads this node signed that contradict each other.
  // InvalidArgument unless the evidence holds; if it does, the alert is
  // raised here too.
  absl::Status HandleSplitViewReport(const std::string& peer_party,
                                     const v1::SignedEnvelope& first,
                                     const v1::SignedEnvelope& second);
  // Checks a head of `party`'s log against the last one seen, asking the
  // peer for a consistency proof; a contradiction is a split view: logged,
  // audited and reported to the peer. Returns the verdict.
  absl::Status CheckPeerHead(const std::string& party, const v1::SignedEnvelope& head);

  // Peer API: the latest head of `peer_party`'s own log this node holds
  // (nullopt if none), so that a peer restored from a backup can check it
  // never signed more than it now holds (docs/backup.md).
  absl::StatusOr<std::optional<v1::SignedEnvelope>> HeldHeadOf(const std::string& peer_party);

  // --- Operations (server/node/node_backup.cc; docs/backup.md, docs/metrics.md). ---

  // Counters, histograms and scrape-time gauges of this node.
  Metrics& metrics() { return metrics_; }
  // A consistent copy of the database, written to a new file in data_dir
  // (mode 0600) while the node runs, after a BACKUP_TAKEN entry by
  // `operator_name`; the caller deletes the file when done.
  // Unimplemented for a PostgreSQL store.
  struct BackupCopy {
    std::string path;
    BackupOrigin origin;
  };
  absl::StatusOr<BackupCopy> WriteBackup(const std::string& operator_name);
  // Before the node signs anything: if its database was restored from a
  // backup (Store::RestoredBackupOrigin), asks every peer for the latest
  // head of this node's log it holds. FailedPrecondition if a peer holds a
  // head this log does not contain (the node signed more after the backup:
  // going on would sign a second, different log of those sizes, a split
  // view), or if a peer cannot be asked; unless the operator acknowledged
  // the restore (file data_dir/accept-restored-log, consumed), which is
  // then audited (LOG_RESTORED). Called by NodeServer::Start.
  absl::Status CheckRestoredLog();

  // For auditors.
  absl::StatusOr<v1::SignedEnvelope> SignTreeHead();
  Store* store() { return store_.get(); }
  const KeyRing& key_ring() const { return setup_->key_ring; }
  // This node's own signing public keys.
  std::vector<v1::PublicKey> OwnKeys() const;

  // --- Keys over time (docs/keys.md; server/node/node_keys.cc). ---

  // A peer's signed announcement of a new key of its own, or of the
  // revocation of one: checked, added to the key ring, kept in
  // data_dir/peer_keys.pb (replayed at start) and audited. Returns whether
  // it taught this node anything. Errors as documented on
  // PeerService.AnnounceKey in proto/comity/v1/peer.proto.
  absl::StatusOr<bool> ReceiveKeyAnnouncement(const std::string& peer_party,
                                              const v1::AnnounceKeyRequest& request);
  // Sends this node's key announcements (its current key vouched for by
  // its last previous key, its revocations) to each peer that has not
  // acknowledged them since the node started, with backoff. Run by the
  // worker; public for tests.
  void AnnounceKeys();
  // Every key in the key ring with its window and state at the node's
  // clock, and for this node's own keys, which peers acknowledged them.
  std::vector<v1::KeyStatus> Keys();
  // Verifies this node's whole log: entries, stored hashes, signed heads.
  absl::StatusOr<VerifyReport> VerifyAuditLog();
  void RecordAuditExport(const std::string& actor);
  // NotFound if this node knows no request with that id.
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(const std::string& request_id) const;
  // `request_id` and every request linked to it through
  // related_request_ids, both ways, as this node knows them; oldest first.
  absl::StatusOr<std::vector<v1::RequestRecord>> Chain(const std::string& request_id) const;
  // The public keys that signed the envelopes of `records`.
  std::vector<v1::PublicKey> SignerKeys(const std::vector<v1::RequestRecord>& records) const;

 private:
  // Delivery to one peer: a thread that takes what is due to that peer
  // from the store, oldest first, and delivers up to max_in_flight items at
  // once; while the peer is unreachable the lane backs off as a whole, so a
  // dead peer costs one probe per backoff interval and never delays others.
  struct Lane {
    explicit Lane(std::string p) : peer(std::move(p)) {}
    const std::string peer;
    std::thread thread;
    // Guarded by Node::mu_.
    bool kick = false;
    uint32_t failures = 0;  // Consecutive attempts that could not reach the peer.
    absl::Time retry_at = absl::InfinitePast();
    // Callers waiting for the first attempt of an item: "r:<request id>" or
    // "p:<proposal id>", with the time after which they get the stored
    // state anyway.
    struct Waiter {
      SubmitDone done;
      absl::Time give_up_at;
    };
    std::multimap<std::string, Waiter> waiters;
  };
  struct LaneResult {
    bool unreachable = false;  // The peer could not be reached: back off.
  };

  Node(const NodeSetup* setup, std::unique_ptr<Store> store,
       std::unique_ptr<EvidenceStore> evidence, PeerTransport* transport, const Clock* clock)
      : setup_(setup),
        store_(std::move(store)),
        evidence_(std::move(evidence)),
        transport_(transport),
        clock_(clock),
        peer_limiter_(setup->config.limits().peer_rate_per_second(),
                      setup->config.limits().peer_burst(), SystemClock::Get()) {}

  // Certificates that authenticated recently, by the hash of their PEM and
  // chain.
  std::optional<CertIdentity> CachedIdentity(const std::string& key) const;
  void CacheIdentity(const std::string& key, const CertIdentity& id) const;
  void WorkerLoop();
  void LaneLoop(Lane* lane);
  // One round of a lane: everything due to its peer. Returns whether the
  // peer was unreachable.
  bool RunLane(Lane* lane);
  Lane* LaneFor(const std::string& peer) const;
  void Kick(const std::string& peer);
  // Registers `done` for the first attempt of `key` on `peer`'s lane and
  // kicks it; `fallback` gives the stored state if the attempt is not made
  // in time (peer backing off, node stopping).
  void AwaitAttempt(const std::string& peer, const std::string& key, SubmitDone done);
  // Calls the waiters of `key` with `result`.
  void Resolve(Lane* lane, const std::string& key, const absl::StatusOr<v1::RequestRecord>& result);
  // Calls waiters that cannot expect an attempt soon with the stored state.
  void ResolveStale(Lane* lane, bool all);
  absl::StatusOr<v1::RequestRecord> StoredOutgoing(const std::string& request_id) const;
  // One delivery attempt of a queued proposal; false if the peer was
  // unreachable.
  absl::StatusOr<bool> DeliverProposal(const PendingProposal& p);
  // One delivery attempt of a case step; false if the peer was unreachable.
  bool DeliverTransition(const std::string& peer, const PendingTransition& p);
  // Notes the outcome of a call to `party` for Peers().
  void NoteContact(const std::string& party, const absl::Status& status);
  // Sets created_at, assesses (InvalidArgument/FailedPrecondition if the
  // request is INVALID) and signs `body`.
  absl::StatusOr<v1::SignedEnvelope> DateAssessAndSign(v1::RequestBody* body) const;
  bool NeedsApproval(v1::AssistanceType type) const;
  // One round of signing a head (if the log grew) and exchanging heads
  // with every peer.
  void GossipHeads();
  // Signs, numbers and stores the next step of a received request's case,
  // decided by `decided_by` (this party, or the requesting party through
  // `proposal`), and queues it for delivery.
  absl::StatusOr<v1::SignedEnvelope> AppendStep(const v1::RequestRecord& row,
                                                const v1::RequestBody& body,
                                                const v1::Receipt& receipt, const Decision& d,
                                                const std::string& decided_by,
                                                const std::string& operator_name,
                                                const std::vector<std::string>& duties,
                                                const v1::SignedEnvelope* proposal,
                                                const std::vector<v1::EvidenceFile>& evidence);
  v1::AuditEntry Event(v1::AuditEventType type, std::string actor,
                       std::string request_id = "", std::string party = "") const;
  absl::StatusOr<v1::SignedEnvelope> SignHead(AuditWriter& writer) const;
  // Logs, audits and (when `reporter` is empty, i.e. this node found it)
  // reports to `party` a split view of `party`'s log. Returns DataLoss.
  absl::Status RaiseSplitView(const std::string& party, const v1::SignedEnvelope& first,
                              const v1::SignedEnvelope& second, const std::string& why,
                              const std::string& reporter);
  absl::Status LogStart();
  // Keys (node_keys.cc). Called by Create: signs this node's announcements
  // and replays the peers' announcements accepted before the restart.
  absl::Status PrepareKeyAnnouncements();
  absl::Status LoadAcceptedKeys();
  // Checks `request` from `peer_party` and applies it to the key ring;
  // `live` for one arriving now (time window, revocation grace), not for
  // one replayed from data_dir. Sets *changed if the ring changed.
  absl::StatusOr<v1::KeyAnnouncement> ApplyKeyAnnouncement(const std::string& peer_party,
                                                           const v1::AnnounceKeyRequest& request,
                                                           bool live, bool* changed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(keys_mu_);
  // One delivery attempt of a stored outgoing request; returns the updated
  // record.
  absl::StatusOr<v1::RequestRecord> Deliver(const v1::RequestRecord& record);
  absl::Duration Backoff(uint32_t attempts) const;

  const NodeSetup* const setup_;
  const std::unique_ptr<Store> store_;
  const std::unique_ptr<EvidenceStore> evidence_;
  PeerTransport* const transport_;
  const Clock* const clock_;
  RateLimiter peer_limiter_;
  // Writes one PEER_RATE_LIMITED entry per peer refused since the last call.
  void AuditRateLimited();

  struct Contact {
    absl::Time last_ok = absl::InfinitePast();
    absl::Time last_attempt = absl::InfinitePast();
    std::string last_error;
    bool reachable = false;
    absl::Time last_head_check = absl::InfinitePast();
  };
  static constexpr size_t kAuthCacheSize = 4096;
  static constexpr absl::Duration kAuthCacheTtl = absl::Minutes(1);
  struct AuthCacheEntry {
    CertIdentity identity;
    absl::Time expires;
  };
  mutable absl::Mutex auth_mu_;
  mutable std::map<std::string, AuthCacheEntry> auth_cache_ ABSL_GUARDED_BY(auth_mu_);
  absl::Mutex contacts_mu_;
  std::map<std::string, Contact> contacts_ ABSL_GUARDED_BY(contacts_mu_);
  // Keys over time. own_announcements_ is fixed after Create.
  std::vector<v1::AnnounceKeyRequest> own_announcements_;
  struct Announcing {
    size_t next = 0;  // Index into own_announcements_ of the next one to send.
    uint32_t failures = 0;
    absl::Time retry_at = absl::InfinitePast();
    std::string last_error;
  };
  absl::Mutex keys_mu_;
  std::map<std::string, Announcing> announcing_ ABSL_GUARDED_BY(keys_mu_);
  v1::AcceptedKeyAnnouncements accepted_keys_ ABSL_GUARDED_BY(keys_mu_);
  absl::Mutex fetch_mu_;     // Serializes FetchPendingEvidence.
  absl::Mutex deadline_mu_;  // Serializes CheckDeadlines.
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<Lane>> lanes_;  // One per peer; fixed at Create.
  std::thread worker_;
  absl::Time last_gossip_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_deadline_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_evidence_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Last member: destroyed first, so no scrape reaches a half-destroyed node.
  Metrics metrics_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_NODE_H_
