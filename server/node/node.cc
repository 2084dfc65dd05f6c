#include "server/node/node.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

// How often the periodic duties run when nothing wakes them.
constexpr absl::Duration kDeadlineInterval = absl::Seconds(30);
constexpr absl::Duration kEvidenceInterval = absl::Seconds(2);
constexpr absl::Duration kKeysInterval = absl::Seconds(1);
constexpr absl::Duration kRateLimitAuditInterval = absl::Seconds(1);
constexpr int kMaxChain = 1000;
// Before the first round: peers starting at the same time get to listen
// first (a call that finds no listener makes gRPC back the channel off).
constexpr absl::Duration kFirstWait = absl::Milliseconds(500);

}  // namespace

Node::Node(const NodeSetup* setup, std::unique_ptr<Store> store, PeerTransport* transport,
           const Clock* clock)
    : store_(std::move(store)),
      ctx_(std::make_unique<NodeContext>(setup, store_.get(), transport, clock,
                                         &metrics_)),
      peer_api_(this),
      operator_api_(this) {}

absl::StatusOr<std::unique_ptr<Node>> Node::Create(const NodeSetup* setup,
                                                   std::unique_ptr<Store> store,
                                                   PeerTransport* transport,
                                                   const Clock* clock) {
  if (setup == nullptr || store == nullptr || transport == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("Node::Create: null dependency");
  }
  std::unique_ptr<Node> node(new Node(setup, std::move(store), transport, clock));
  COMITY_RETURN_IF_ERROR(node->Init());
  return node;
}

absl::Status Node::Init() {
  const NodeContext* ctx = ctx_.get();
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<EvidenceStore> files,
                          EvidenceStore::Open(ctx->config().data_dir() + "/evidence",
                                              ctx->config().evidence().max_file_bytes()));
  intake_ = std::make_unique<RequestIntake>(ctx);
  submission_ = std::make_unique<Submission>(ctx);
  evidence_ = std::make_unique<EvidenceExchange>(ctx, std::move(files));
  evidence_intake_ = std::make_unique<EvidenceIntake>(ctx, &evidence_->files());
  witness_ = std::make_unique<LogWitness>(ctx, [this](const std::string& peer) {
    DeliveryLane* lane = outbox_->lane(peer);
    return lane == nullptr || lane->reachable();
  });
  cases_ = std::make_unique<CaseBook>(
      ctx, evidence_intake_.get(), [this](const std::string& peer) { outbox_->Kick(peer); },
      [this](const std::string& peer) {
        auto it = evidence_workers_.find(peer);
        if (it != evidence_workers_.end()) it->second->Wake();
      });
  outbox_ = std::make_unique<Outbox>(ctx, cases_.get(), witness_.get());
  deadlines_ = std::make_unique<DeadlineWatch>(ctx);
  COMITY_ASSIGN_OR_RETURN(keys_, Keys::Create(ctx));
  backup_ = std::make_unique<Backup>(ctx);
  custody_ = std::make_unique<CustodyExport>(ctx, witness_.get(), evidence_.get());
  recovery_ = std::make_unique<Recovery>(ctx, intake_.get(), cases_.get());

  // Every series at 0 from the start, for each peer (docs/metrics.md).
  std::vector<std::string> peers;
  for (const auto& [peer, unused] : ctx->setup().peers) peers.push_back(peer);
  metrics_.InitialiseSeries(peers);
  Store* store = store_.get();
  metrics_.SetScrapeSource([store]() -> absl::StatusOr<MetricsSnapshot> {
    MetricsSnapshot snap;  // Aggregate queries only: a scrape stays cheap.
    COMITY_ASSIGN_OR_RETURN(snap.requests, store->requests().Count());
    COMITY_ASSIGN_OR_RETURN(snap.queue_depths, store->outbox().Depths());
    COMITY_ASSIGN_OR_RETURN(snap.audit_entries, store->audit().Size());
    return snap;
  });

  // No peer's work shares a thread with another peer's: a partner that
  // takes a call and then says nothing delays only its own lane, fetches,
  // gossip and key announcements.
  const absl::Duration gossip =
      absl::Seconds(ctx->config().audit().head_interval_seconds());
  EvidenceExchange* exchange = evidence_.get();
  LogWitness* witness = witness_.get();
  Keys* keys = keys_.get();
  for (const auto& [peer_ref, unused] : ctx->setup().peers) {
    const std::string peer = peer_ref;
    DeliveryLane* lane = outbox_->lane(peer);
    Worker* w = AddWorker(absl::StrCat("lane ", peer), [lane](const Worker& self) {
      return lane->RunRound([&self] { return self.stopping(); });
    });
    outbox_->SetWaker(peer, [w] { w->Wake(); });
    lane_workers_[peer] = w;
    evidence_workers_[peer] =
        AddWorker(absl::StrCat("evidence ", peer), [exchange, peer](const Worker& self) {
          exchange->FetchRound(peer, [&self] { return self.stopping(); });
          return kEvidenceInterval;
        });
    AddWorker(absl::StrCat("gossip ", peer), [witness, gossip, peer](const Worker&) {
      witness->GossipWith(peer);
      return gossip;
    });
    AddWorker(absl::StrCat("keys ", peer), [keys, peer](const Worker&) {
      keys->AnnounceTo(peer);  // Until it acknowledged them; backs off.
      return kKeysInterval;
    });
  }
  DeadlineWatch* deadlines = deadlines_.get();
  AddWorker("deadlines", [deadlines](const Worker&) {
    deadlines->Check();
    return kDeadlineInterval;
  });
  RequestIntake* intake = intake_.get();
  AddWorker("rate limits", [intake](const Worker&) {
    intake->AuditRateLimited();
    return kRateLimitAuditInterval;
  });
  evidence_->SetWaker([this](const std::string& peer) {
    auto it = evidence_workers_.find(peer);
    if (it != evidence_workers_.end()) it->second->Wake();
  });
  return absl::OkStatus();
}

Worker* Node::AddWorker(std::string name, Worker::Round round) {
  workers_.push_back(
      std::make_unique<Worker>(std::move(name), std::move(round), kFirstWait));
  return workers_.back().get();
}

Node::~Node() { Stop(); }

void Node::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopped_) return;
    started_ = true;
  }
  absl::Status logged = witness_->RecordStart();
  if (!logged.ok())
    LogEvent(LogLevel::kError, "audit_error", {{"error", logged.ToString()}});
  absl::StatusOr<int> reindexed = deadlines_->Reindex();
  if (!reindexed.ok()) {
    LogEvent(LogLevel::kError, "store_error", {{"error", reindexed.status().ToString()}});
  } else if (*reindexed > 0) {
    LogEvent(LogLevel::kInfo, "deadlines_reindexed",
             {{"cases", absl::StrCat(*reindexed)}});
  }
  outbox_->Start();
  for (auto& w : workers_) w->Start();
}

void Node::Stop() {
  // Held to the end: a second caller returns only once the node stopped.
  absl::MutexLock stopping(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // All asked at once, then joined: the stop takes the longest round, not
  // the sum of them.
  for (auto& w : workers_) w->RequestStop();
  // A round waiting on a peer (a stalled evidence stream, a delivery) ends
  // now, not at its deadline.
  ctx_->transport().CancelAll();
  for (auto& w : workers_) w->Join();
  outbox_->Stop();
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::Get(
    const std::string& request_id) const {
  return LoadRecords(*store_, request_id);
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::Chain(
    const std::string& request_id) const {
  COMITY_RETURN_IF_ERROR(Get(request_id).status());
  // Links both ways, from the store's index, up to a bounded number.
  std::set<std::string> seen = {request_id};
  std::vector<std::string> todo = {request_id};
  while (!todo.empty() && seen.size() < static_cast<size_t>(kMaxChain)) {
    std::string id = todo.back();
    todo.pop_back();
    COMITY_ASSIGN_OR_RETURN(std::vector<std::string> linked,
                            store_->requests().Linked(id));
    for (const std::string& next : linked) {
      if (seen.insert(next).second) todo.push_back(next);
    }
  }
  // Oldest first, by the time each request was signed.
  std::vector<std::pair<int64_t, v1::RequestRecord>> dated;
  for (const std::string& id : seen) {
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, store_->requests().Get(id));
    for (auto& r : records) {
      COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(r));
      dated.emplace_back(absl::ToUnixMicros(FromProto(body.created_at())), std::move(r));
    }
  }
  std::stable_sort(dated.begin(), dated.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<v1::RequestRecord> out;
  for (auto& [when, r] : dated) out.push_back(std::move(r));
  return out;
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::List(v1::Direction direction,
                                                          int limit) const {
  ListQuery q;
  q.direction = direction;
  q.limit = limit;
  COMITY_ASSIGN_OR_RETURN(RecordPage page, store_->requests().List(q));
  return std::move(page.records);
}

absl::StatusOr<std::vector<v1::PeerStatus>> Node::Peers() {
  COMITY_ASSIGN_OR_RETURN(auto depths, store_->outbox().Depths());
  COMITY_ASSIGN_OR_RETURN(auto evidence, store_->cases().PendingEvidenceCounts(
                                             ctx_->config().evidence().max_fetch_attempts()));
  std::vector<v1::PeerStatus> out;
  for (const auto& [code, peer] : ctx_->setup().peers) {
    v1::PeerStatus s;
    s.set_party(code);
    s.set_address(peer.address);
    const PeerContacts::Contact c = ctx_->contacts().Get(code);
    if (c.last_attempt != absl::InfinitePast()) {
      s.set_reachable(c.reachable);
      if (c.last_ok != absl::InfinitePast()) {
        s.set_last_contact_unix_micros(absl::ToUnixMicros(c.last_ok));
      }
      s.set_last_attempt_unix_micros(absl::ToUnixMicros(c.last_attempt));
      s.set_last_error(c.last_error);
    }
    if (DeliveryLane* lane = outbox_->lane(code); lane != nullptr) {
      if (absl::Time retry = lane->retry_at(); retry != absl::InfinitePast()) {
        s.set_next_attempt_unix_micros(absl::ToUnixMicros(retry));
      }
      s.set_consecutive_failures(lane->failures());
    }
    auto d = depths.find(code);
    if (d != depths.end()) {
      s.set_requests_queued(d->second.first);
      s.set_transitions_queued(d->second.second);
    }
    if (auto e = evidence.find(code); e != evidence.end()) {
      s.set_evidence_pending(static_cast<uint32_t>(e->second.first));
      s.set_evidence_given_up(static_cast<uint32_t>(e->second.second));
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<v1::PublicKey> Node::OwnKeys() const {
  std::vector<v1::PublicKey> keys;
  for (const auto& [key_id, raw] : key_ring().KeysOf(party())) {
    v1::PublicKey pk;
    pk.set_party(party());
    pk.set_key_id(key_id);
    pk.set_ed25519_public_key(raw);
    keys.push_back(std::move(pk));
  }
  return keys;
}

}  // namespace comity
