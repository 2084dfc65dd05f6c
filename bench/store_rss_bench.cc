// Peak memory of a node holding many stored requests: fills FR's SQLite
// store with N realistic request records through the Store API, then starts
// real comityd processes (FR on that database, JP fresh) and runs what an
// operator typically does (a submit delivered to JP, the latest 100, one
// request by id, the overdue list, the peers), and reports FR's peak RSS
// (VmHWM) with the fill and start times.
//
// The records are what a node stores: half sent to JP (signed request,
// REQUEST_SUBMITTED and ASSESSMENT_MADE, then DELIVERED with JP's signed
// receipt, DELIVERY_ATTEMPTED and DELIVERY_ACKNOWLEDGED), half received
// from JP (signed by JP; REQUEST_RECEIVED, ASSESSMENT_MADE, a signed tree
// head and a signed receipt with its inclusion proof, as Node does), all
// Ed25519-signed with the network's real keys. JP's receipts on the sent
// half carry a head and proof of the right size that prove nothing (JP's
// log is not filled). Each Store call is its own fsync'd transaction, so the
// fill runs on tmpfs (/dev/shm) by default and the file is then copied to
// FR's data directory on disk; --fill-dir changes that.
//
//   build/bin/store_rss_bench [--requests 100000] [--fill-dir /dev/shm] [--keep]
//   build/bin/store_rss_bench --requests 1000000      # the figure in docs/performance.md
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "bench/bench_support.h"
#include "comity/v1/operator.grpc.pb.h"
#include "google/protobuf/util/time_util.h"
#include "server/config/node_config.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/treaty/engine.h"
#include "server/util/status_macros.h"

namespace comity::bench {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

v1::AuditEntry Event(v1::AuditEventType type, const std::string& actor, const std::string& id,
                     const std::string& party, absl::Time at) {
  v1::AuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(at));
  e.set_type(type);
  e.set_actor(actor);
  e.set_request_id(id);
  e.set_party(party);
  return e;
}

v1::AuditEntry Assessed(const v1::Assessment& a, const std::string& id,
                        const std::string& party, absl::Time at) {
  v1::AuditEntry e = Event(v1::ASSESSMENT_MADE, "node", id, party, at);
  e.set_assistance_type(v1::PRESERVATION);
  e.set_instrument(a.instrument());
  e.set_obligation(a.obligation());
  for (int g : a.refusal_grounds()) e.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
  e.set_detail(absl::StrCat("library ", a.library_version()));
  return e;
}

// One record ready to store, signed on a producer thread.
struct Item {
  bool outgoing = false;
  RecordKey key;
  v1::RequestRecord record;       // Outgoing: PENDING_DELIVERY; incoming: the request.
  v1::SignedEnvelope receipt;     // Outgoing: JP's receipt.
  v1::Assessment assessment;      // Requester's (outgoing) / FR's (incoming).
  absl::Time at;
};

class Queue {
 public:
  explicit Queue(size_t cap) : cap_(cap) {}
  void Push(Item item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return items_.size() < cap_; });
    items_.push_back(std::move(item));
    not_empty_.notify_one();
  }
  Item Pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !items_.empty(); });
    Item item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

 private:
  size_t cap_;
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Item> items_;
};

struct Filler {
  const NodeSetup* fr;
  const NodeSetup* jp;
  absl::Time first;       // created_at of request 0; the rest spread to now.
  absl::Duration step;
  v1::Assessment fr_to_jp_fr, fr_to_jp_jp, jp_to_fr_jp, jp_to_fr_fr;

  // Request i: even ones FR -> JP, odd ones JP -> FR.
  absl::StatusOr<Item> Make(int64_t i, std::mt19937_64& rng) const {
    Item item;
    item.outgoing = i % 2 == 0;
    item.at = first + step * i;
    const NodeSetup& from = item.outgoing ? *fr : *jp;
    const std::string to = item.outgoing ? "JP" : "FR";
    v1::RequestBody body = PreservationDraft(to, i);
    body.set_id(RandomUuid());
    body.set_requesting_party(from.config.party());
    *body.mutable_created_at() = Ts(item.at);
    *body.mutable_requester_assessment() = item.outgoing ? fr_to_jp_fr : jp_to_fr_jp;
    const std::string payload = SerializeDeterministic(body);
    COMITY_ASSIGN_OR_RETURN(
        v1::SignedEnvelope request,
        SignEnvelope(kRequestPayloadType, payload, from.config.party(),
                     from.config.signing_key().key_id(), *from.signing_key));
    item.key = RecordKey{body.id(), body.requesting_party(), body.requested_party()};
    item.assessment = item.outgoing ? fr_to_jp_fr : jp_to_fr_fr;
    if (!item.outgoing) {
      *item.record.mutable_request() = std::move(request);
      return item;
    }
    item.record.set_direction(v1::OUTGOING);
    item.record.set_submitted_by("alice");
    item.record.set_state(v1::PENDING_DELIVERY);
    *item.record.mutable_stored_at() = Ts(item.at);
    *item.record.mutable_updated_at() = Ts(item.at);
    *item.record.mutable_next_attempt_at() = Ts(item.at);
    *item.record.mutable_request() = std::move(request);

    // JP's receipt: its head over a log of ~3 entries per request so far,
    // and an inclusion proof of that depth.
    const uint64_t jp_size = static_cast<uint64_t>(i) * 3 / 2 + 3;
    auto random_hash = [&rng] {
      std::string h(32, '\0');
      for (char& c : h) c = static_cast<char>(rng());
      return h;
    };
    v1::TreeHead head;
    head.set_party("JP");
    head.set_tree_size(jp_size);
    head.set_root_hash(random_hash());
    head.set_timestamp_unix_micros(absl::ToUnixMicros(item.at));
    COMITY_ASSIGN_OR_RETURN(
        v1::SignedEnvelope signed_head,
        SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), "JP",
                     jp->config.signing_key().key_id(), *jp->signing_key));
    v1::AuditEntry received = Event(v1::REQUEST_RECEIVED, "peer:FR", body.id(), "FR", item.at);
    received.set_index(jp_size - 2);
    received.add_hashes(Sha256(payload));
    received.set_assistance_type(v1::PRESERVATION);
    v1::Receipt receipt;
    *receipt.mutable_receiver_assessment() = fr_to_jp_jp;
    receipt.set_request_id(body.id());
    receipt.set_requesting_party("FR");
    receipt.set_receiving_party("JP");
    receipt.set_request_payload_sha256(Sha256(payload));
    *receipt.mutable_received_at() = Ts(item.at);
    *receipt.mutable_tree_head() = std::move(signed_head);
    receipt.set_received_entry(SerializeDeterministic(received));
    receipt.mutable_received_entry_proof()->set_leaf_index(received.index());
    receipt.mutable_received_entry_proof()->set_tree_size(jp_size);
    for (uint64_t s = jp_size; s > 1; s = (s + 1) / 2) {
      receipt.mutable_received_entry_proof()->add_hashes(random_hash());
    }
    COMITY_ASSIGN_OR_RETURN(
        item.receipt,
        SignEnvelope(kReceiptPayloadType, SerializeDeterministic(receipt), "JP",
                     jp->config.signing_key().key_id(), *jp->signing_key));
    return item;
  }

  // Stores one item the way Node does, one transaction per Store call.
  absl::Status Put(Store& store, const Item& item) const {
    const std::string& id = item.key.request_id;
    if (item.outgoing) {
      COMITY_RETURN_IF_ERROR(store.requests().InsertOutgoing(
          item.key, item.record, [&](AuditWriter& w) -> absl::Status {
            v1::AuditEntry submitted =
                Event(v1::REQUEST_SUBMITTED, "operator:alice", id, "JP", item.at);
            submitted.add_hashes(Sha256(item.record.request().payload()));
            submitted.set_assistance_type(v1::PRESERVATION);
            COMITY_RETURN_IF_ERROR(w.Append(&submitted).status());
            v1::AuditEntry a = Assessed(item.assessment, id, "JP", item.at);
            return w.Append(&a).status();
          }));
      return store.outbox().MarkDelivered(id, item.receipt, item.at, absl::InfiniteFuture(), [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry tried = Event(v1::DELIVERY_ATTEMPTED, "node", id, "JP", item.at);
        tried.set_detail("attempt 1");
        COMITY_RETURN_IF_ERROR(w.Append(&tried).status());
        v1::AuditEntry ack = Event(v1::DELIVERY_ACKNOWLEDGED, "node", id, "JP", item.at);
        ack.set_detail("JP log entry 123456 of 123458");
        ack.add_hashes(Sha256(item.receipt.payload()));
        return w.Append(&ack).status();
      });
    }
    bool inserted = false;
    auto stored = store.requests().InsertIncomingIfAbsent(
        item.key,
        [&](AuditWriter& w) -> absl::StatusOr<v1::RequestRecord> {
          const std::string payload_hash = Sha256(item.record.request().payload());
          v1::AuditEntry received = Event(v1::REQUEST_RECEIVED, "peer:JP", id, "JP", item.at);
          received.add_hashes(payload_hash);
          received.set_assistance_type(v1::PRESERVATION);
          COMITY_ASSIGN_OR_RETURN(std::string received_bytes, w.Append(&received));
          v1::AuditEntry a = Assessed(item.assessment, id, "JP", item.at);
          COMITY_RETURN_IF_ERROR(w.Append(&a).status());
          v1::TreeHead head;
          head.set_party("FR");
          head.set_tree_size(w.size());
          head.set_root_hash(w.Root());
          head.set_timestamp_unix_micros(absl::ToUnixMicros(item.at));
          COMITY_ASSIGN_OR_RETURN(
              v1::SignedEnvelope signed_head,
              SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), "FR",
                           fr->config.signing_key().key_id(), *fr->signing_key));
          COMITY_RETURN_IF_ERROR(w.PutTreeHead(head, signed_head));
          COMITY_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                                  w.InclusionProof(received.index(), w.size()));
          v1::Receipt receipt;
          *receipt.mutable_receiver_assessment() = item.assessment;
          receipt.set_request_id(id);
          receipt.set_requesting_party("JP");
          receipt.set_receiving_party("FR");
          receipt.set_request_payload_sha256(payload_hash);
          *receipt.mutable_received_at() = Ts(item.at);
          *receipt.mutable_tree_head() = std::move(signed_head);
          receipt.set_received_entry(received_bytes);
          receipt.mutable_received_entry_proof()->set_leaf_index(received.index());
          receipt.mutable_received_entry_proof()->set_tree_size(w.size());
          for (auto& h : proof) receipt.mutable_received_entry_proof()->add_hashes(std::move(h));
          v1::RequestRecord record;
          record.set_direction(v1::INCOMING);
          record.set_state(v1::RECEIVED);
          record.set_case_state(v1::CASE_DELIVERED);
          *record.mutable_request() = item.record.request();
          COMITY_ASSIGN_OR_RETURN(
              *record.mutable_receipt(),
              SignEnvelope(kReceiptPayloadType, SerializeDeterministic(receipt), "FR",
                           fr->config.signing_key().key_id(), *fr->signing_key));
          *record.mutable_stored_at() = Ts(item.at);
          *record.mutable_updated_at() = Ts(item.at);
          return record;
        },
        &inserted);
    return stored.status();
  }
};

absl::StatusOr<v1::Assessment> AssessAs(const NodeSetup& setup, const std::string& from,
                                        const std::string& to) {
  v1::RequestBody body = PreservationDraft(to, 0);
  body.set_requesting_party(from);
  return Assess(*setup.treaties,
                QueryForRequest(body, absl::ToCivilDay(absl::Now(), absl::UTCTimeZone())));
}

std::string Mb(int64_t kb) { return absl::StrFormat("%.0f", static_cast<double>(kb) / 1024); }

int64_t FileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

template <typename F>
double TimedMs(F&& f) {
  const auto start = Steady::now();
  f();
  return SecondsSince(start) * 1e3;
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "store_rss_bench: %s\n", st.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::vector<std::string> known = {"requests", "fill-dir", "dir", "keep", "comityd",
                                          "settle-s", "threads", "help"};
  if (!flags.Unknown(known).empty() || flags.Has("help")) {
    std::fprintf(stderr,
                 "usage: store_rss_bench [--requests 100000] [--fill-dir /dev/shm] "
                 "[--dir DIR] [--threads N] [--settle-s 3] [--keep] [--comityd PATH]\n");
    return 2;
  }
  const int64_t n = flags.GetInt("requests", 100000, 1, 1000000000);
  std::string fill_base = flags.Get("fill-dir", ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "");
  const int threads =
      static_cast<int>(flags.GetInt("threads", std::max(1u, std::thread::hardware_concurrency()), 1, 256));

  auto dir = MakeTempDir("comity-rss-bench", flags.Get("dir", ""));
  if (!dir.ok()) return Fail(dir.status());
  auto fill_dir = MakeTempDir("comity-rss-fill", fill_base);
  if (!fill_dir.ok()) return Fail(fill_dir.status());
  auto net = MakeNetwork(*dir, {"FR", "JP"});
  if (!net.ok()) return Fail(net.status());
  pid_t fr_pid = 0, jp_pid = 0;
  auto cleanup = [&]() {
    StopChild(fr_pid);
    StopChild(jp_pid);
    RunShell(absl::StrCat("rm -rf '", *fill_dir, "'"));
    if (!flags.Has("keep")) RunShell(absl::StrCat("rm -rf '", *dir, "'"));
  };
  auto fr = LoadNodeConfig(net->ConfigPath("FR"));
  auto jp = LoadNodeConfig(net->ConfigPath("JP"));
  if (!fr.ok() || !jp.ok()) {
    cleanup();
    return Fail(!fr.ok() ? fr.status() : jp.status());
  }
  Filler filler;
  filler.fr = fr->get();
  filler.jp = jp->get();
  filler.step = absl::Seconds(30 * 86400) / std::max<int64_t>(n, 1);  // 30 days of traffic.
  filler.first = absl::Now() - absl::Hours(30 * 24);
  for (auto [out, from, to, setup] :
       {std::tuple{&filler.fr_to_jp_fr, "FR", "JP", filler.fr},
        std::tuple{&filler.fr_to_jp_jp, "FR", "JP", filler.jp},
        std::tuple{&filler.jp_to_fr_jp, "JP", "FR", filler.jp},
        std::tuple{&filler.jp_to_fr_fr, "JP", "FR", filler.fr}}) {
    auto a = AssessAs(*setup, from, to);
    if (!a.ok()) {
      cleanup();
      return Fail(a.status());
    }
    *out = *a;
  }

  // --- Fill: producers sign, this thread stores. ---
  const std::string fill_db = *fill_dir + "/comity.db";
  double fill_s = 0;
  {
    auto store = OpenSqliteStore(fill_db);
    if (!store.ok()) {
      cleanup();
      return Fail(store.status());
    }
    std::fprintf(stderr, "filling %lld requests into %s with %d signing threads...\n",
                 static_cast<long long>(n), fill_db.c_str(), threads);
    Queue queue(4096);
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> producers;
    const auto start = Steady::now();
    for (int t = 0; t < threads; ++t) {
      producers.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
        while (true) {
          const int64_t i = next++;
          if (i >= n) return;
          auto item = filler.Make(i, rng);
          if (!item.ok()) {
            std::fprintf(stderr, "%s\n", item.status().ToString().c_str());
            failed = true;
            item = Item{};  // Still pushed, so the consumer's count completes.
          }
          queue.Push(*std::move(item));
        }
      });
    }
    absl::Status st;
    for (int64_t done = 0; done < n; ++done) {
      Item item = queue.Pop();
      if (!st.ok() || failed || item.key.request_id.empty()) continue;
      st = filler.Put(**store, item);
      if ((done + 1) % 100000 == 0) {
        std::fprintf(stderr, "  %lld stored, %.0f/s\n", static_cast<long long>(done + 1),
                     static_cast<double>(done + 1) / SecondsSince(start));
      }
    }
    for (auto& p : producers) p.join();
    fill_s = SecondsSince(start);
    if (!st.ok() || failed) {
      cleanup();
      return Fail(st.ok() ? absl::InternalError("signing failed") : st);
    }
  }
  const int64_t db_bytes = FileBytes(fill_db) + FileBytes(fill_db + "-wal");
  const std::string data = net->PartyDir("FR") + "/data";
  double copy_s = 0;
  if (*fill_dir != data) {
    const auto start = Steady::now();
    if (RunShell(absl::StrCat("mkdir -p -m 700 '", data, "' && cp '", *fill_dir,
                              "'/comity.db* '", data, "/' && sync")) != 0) {
      cleanup();
      return Fail(absl::InternalError("copying the filled database failed"));
    }
    copy_s = SecondsSince(start);
    RunShell(absl::StrCat("rm -rf '", *fill_dir, "'"));
  }

  // --- A real node on it. ---
  const auto start_node = Steady::now();
  for (const char* p : {"FR", "JP"}) {
    auto pid = SpawnNode(*net, p, flags.Get("comityd", ""));
    if (!pid.ok()) {
      cleanup();
      return Fail(pid.status());
    }
    (std::string(p) == "FR" ? fr_pid : jp_pid) = *pid;
  }
  absl::Status up = WaitForStarted(*net, "FR", fr_pid, absl::Seconds(600));
  const double start_s = SecondsSince(start_node);
  auto channel = OperatorChannel(*net, "FR", "alice", 0);
  if (up.ok()) up = WaitForNode(channel, absl::Seconds(60));
  if (up.ok()) up = WaitForNode(OperatorChannel(*net, "JP", "alice", 0), absl::Seconds(60));
  if (!up.ok()) {
    cleanup();
    return Fail(up);
  }
  const int64_t hwm_started = ProcStatusKb(fr_pid, "VmHWM");
  const int64_t rss_started = ProcStatusKb(fr_pid, "VmRSS");

  auto stub = v1::OperatorService::NewStub(channel);
  std::vector<std::pair<std::string, std::string>> ops;  // (operation, result)
  {
    grpc::ClientContext ctx;
    v1::SubmitRequestRequest req;
    *req.mutable_draft() = PreservationDraft("JP", n);
    v1::SubmitRequestResponse resp;
    grpc::Status s;
    double ms = TimedMs([&] { s = stub->SubmitRequest(&ctx, req, &resp); });
    ops.push_back({"submit to JP",
                   s.ok() ? absl::StrFormat("%s, %.0f ms",
                                            v1::RequestState_Name(resp.record().state()), ms)
                          : s.error_message()});
  }
  std::string some_id;
  {
    grpc::ClientContext ctx;
    v1::ListRequestsRequest req;
    req.set_limit(100);
    v1::ListRequestsResponse resp;
    grpc::Status s;
    double ms = TimedMs([&] { s = stub->ListRequests(&ctx, req, &resp); });
    ops.push_back({"list, latest 100",
                   s.ok() ? absl::StrFormat("%d records, %.0f ms", resp.records_size(), ms)
                          : s.error_message()});
    if (s.ok() && resp.records_size() > 50) {
      v1::RequestBody body;
      body.ParseFromString(resp.records(50).request().payload());
      some_id = body.id();
    }
  }
  {
    grpc::ClientContext ctx;
    v1::GetRequestRequest req;
    req.set_id(some_id);
    v1::GetRequestResponse resp;
    grpc::Status s;
    double ms = TimedMs([&] { s = stub->GetRequest(&ctx, req, &resp); });
    ops.push_back({"get by id",
                   s.ok() ? absl::StrFormat("%d records, %.1f ms", resp.records_size(), ms)
                          : s.error_message()});
  }
  {
    grpc::ClientContext ctx;
    v1::ListOverdueResponse resp;
    grpc::Status s;
    double ms = TimedMs([&] { s = stub->ListOverdue(&ctx, v1::ListOverdueRequest(), &resp); });
    ops.push_back(
        {"overdue (first page)",
         s.ok() ? absl::StrFormat("%d deadlines, %.0f ms", resp.deadlines_size(), ms)
                : s.error_message()});
  }
  {
    grpc::ClientContext ctx;
    v1::ListPeersResponse resp;
    grpc::Status s;
    double ms = TimedMs([&] { s = stub->ListPeers(&ctx, v1::ListPeersRequest(), &resp); });
    ops.push_back({"peers", s.ok() ? absl::StrFormat("%d peers, %.0f ms", resp.peers_size(), ms)
                                   : s.error_message()});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(
      static_cast<int64_t>(flags.GetDouble("settle-s", 3, 0, 3600) * 1000)));
  const int64_t hwm = ProcStatusKb(fr_pid, "VmHWM");
  const int64_t rss = ProcStatusKb(fr_pid, "VmRSS");
  const int64_t jp_hwm = ProcStatusKb(jp_pid, "VmHWM");
  const double fr_cpu = ProcCpuSeconds(fr_pid);
  cleanup();

  std::printf("## Memory at %lld stored requests (`store_rss_bench`)\n\n",
              static_cast<long long>(n));
  std::printf("%s, %u cores. FR holds %lld requests (half sent to JP and delivered, half "
              "received from JP), database %.0f MB.\n\n",
              CpuModel().c_str(), std::thread::hardware_concurrency(),
              static_cast<long long>(n), static_cast<double>(db_bytes) / 1e6);
  std::printf("| figure | target | measured |\n|---|---|---|\n");
  std::printf("| fill through the Store API (%s, %d signing threads) | | %.1f s (%.0f "
              "requests/s) |\n",
              fill_base.empty() ? "TMPDIR" : fill_base.c_str(), threads, fill_s,
              static_cast<double>(n) / fill_s);
  if (copy_s > 0) std::printf("| copy to FR's data directory on disk | | %.1f s |\n", copy_s);
  std::printf("| comityd start until it answers (open, migrate, frontier) | | %.2f s |\n",
              start_s);
  std::printf("| FR peak RSS after start | | %s MB (VmRSS %s MB) |\n", Mb(hwm_started).c_str(),
              Mb(rss_started).c_str());
  for (const auto& [op, result] : ops) std::printf("| %s | | %s |\n", op.c_str(), result.c_str());
  std::printf("| **FR peak RSS (VmHWM) after the operations** | < 300 MB at 1,000,000 | **%s MB** "
              "(VmRSS %s MB) |\n",
              Mb(hwm).c_str(), Mb(rss).c_str());
  std::printf("| FR CPU from start to end | | %.2f s |\n", fr_cpu);
  std::printf("| JP peak RSS (fresh database) | | %s MB |\n", Mb(jp_hwm).c_str());
  return 0;
}

}  // namespace
}  // namespace comity::bench

int main(int argc, char** argv) { return comity::bench::Main(argc, argv); }
