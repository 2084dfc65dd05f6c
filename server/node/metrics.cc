#include "server/node/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "comity/v1/record.pb.h"

namespace comity {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Gauge(std::string name, std::string help) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = MetricType::Gauge;
  return f;
}

void AddGauge(MetricFamily* f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f->metric.push_back(std::move(m));
}

std::string DirectionLabel(v1::Direction d) {
  switch (d) {
    case v1::OUTGOING:
      return "sent";
    case v1::INCOMING:
      return "received";
    default:
      return "unknown";
  }
}

// Seconds from submission to a verified receipt: a peer on the same
// network answers in milliseconds; one that was down for a while, in
// minutes or hours (retries with backoff).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,    2.5,
      5,     10,   30,    60,   300, 900,  3600, 21600};
  return *buckets;
}

// The delivery states of a sent request (a received one is RECEIVED).
constexpr v1::RequestState kSentStates[] = {v1::PENDING_DELIVERY, v1::DELIVERED,
                                            v1::DELIVERY_REJECTED, v1::AWAITING_APPROVAL};

// The status codes a peer's message is refused with
// (RequestIntake::RecordRefusal, docs/metrics.md).
constexpr absl::StatusCode kRefusalCodes[] = {
    absl::StatusCode::kUnauthenticated,    absl::StatusCode::kPermissionDenied,
    absl::StatusCode::kInvalidArgument,    absl::StatusCode::kAlreadyExists,
    absl::StatusCode::kFailedPrecondition, absl::StatusCode::kResourceExhausted};

}  // namespace

// The gauges read from the store on each scrape.
class Metrics::StoreCollector final : public prometheus::Collectable {
 public:
  void Set(ScrapeSource source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }
  void SetPeers(const std::vector<std::string>& peers) {
    absl::MutexLock lock(&mu_);
    peers_ = peers;
  }

  std::vector<MetricFamily> Collect() const override {
    ScrapeSource source;
    std::vector<std::string> peers;
    {
      absl::MutexLock lock(&mu_);
      source = source_;
      peers = peers_;
    }
    MetricFamily up = Gauge("comity_store_up",
                            "1 if the last scrape could read the node's store, else 0.");
    absl::StatusOr<MetricsSnapshot> snap =
        source ? source()
               : absl::StatusOr<MetricsSnapshot>(absl::UnavailableError("no source"));
    AddGauge(&up, {}, snap.ok() ? 1 : 0);
    std::vector<MetricFamily> out;
    out.push_back(std::move(up));
    if (!snap.ok()) return out;

    MetricFamily requests = Gauge("comity_requests",
                                  "Requests held by this node, by direction (sent, "
                                  "received), delivery state and the "
                                  "other party.");
    // Every (direction, partner, state) a known peer can have, at 0 until
    // the store counts some; then whatever else the store holds.
    std::map<std::tuple<std::string, std::string, std::string>, double> counts;
    for (const std::string& peer : peers) {
      for (v1::RequestState st : kSentStates) counts[{"sent", peer, v1::RequestState_Name(st)}] = 0;
      counts[{"received", peer, v1::RequestState_Name(v1::RECEIVED)}] = 0;
    }
    for (const RequestCount& c : snap->requests) {
      counts[{DirectionLabel(c.direction), c.partner, v1::RequestState_Name(c.state)}] +=
          static_cast<double>(c.count);
    }
    for (const auto& [key, count] : counts) {
      AddGauge(&requests,
               {{"direction", std::get<0>(key)},
                {"partner", std::get<1>(key)},
                {"state", std::get<2>(key)}},
               count);
    }
    out.push_back(std::move(requests));

    MetricFamily outbox_requests =
        Gauge("comity_outbox_requests",
              "Signed requests waiting for the peer's receipt, per peer.");
    MetricFamily outbox_steps = Gauge(
        "comity_outbox_steps",
        "Case steps and proposals waiting for the peer's acknowledgement, per peer.");
    std::map<std::string, std::pair<uint32_t, uint32_t>> depths = snap->queue_depths;
    for (const std::string& peer : peers) depths.emplace(peer, std::make_pair(0u, 0u));
    for (const auto& [peer, depth] : depths) {
      AddGauge(&outbox_requests, {{"peer", peer}}, depth.first);
      AddGauge(&outbox_steps, {{"peer", peer}}, depth.second);
    }
    out.push_back(std::move(outbox_requests));
    out.push_back(std::move(outbox_steps));

    MetricFamily audit = Gauge("comity_audit_log_entries",
                               "Entries in this node's tamper-evident audit log.");
    AddGauge(&audit, {}, static_cast<double>(snap->audit_entries));
    out.push_back(std::move(audit));
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  ScrapeSource source_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> peers_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      collector_(std::make_shared<StoreCollector>()),
      assessed_(
          &prometheus::BuildCounter()
               .Name("comity_requests_assessed_total")
               .Help("Requests this node assessed under its treaty library, by direction "
                     "(sent, received), the other party and the obligation found.")
               .Register(*registry_)),
      delivery_latency_(&prometheus::BuildHistogram()
                             .Name("comity_delivery_latency_seconds")
                             .Help("From a sent request's signing to the peer's verified "
                                   "receipt (DELIVERED), per peer; retries included.")
                             .Register(*registry_)),
      auth_failures_(&prometheus::BuildCounter()
                          .Name("comity_auth_failures_total")
                          .Help("Calls refused for who made them: source \"operator\" (a "
                                "missing role) or \"tls\" (a certificate not accepted).")
                          .Register(*registry_)),
      peer_refusals_(
          &prometheus::BuildCounter()
               .Name("comity_peer_refusals_total")
               .Help("Messages of an authenticated peer refused (bad signature, "
                     "replay, invalid), by peer and status code.")
               .Register(*registry_)),
      rate_limited_(&prometheus::BuildCounter()
                         .Name("comity_peer_rate_limited_total")
                         .Help("Calls of a peer refused over its rate limit "
                               "(limits.peer_rate_per_second).")
                         .Register(*registry_)) {}

Metrics::~Metrics() { StopServing(); }

void Metrics::SetScrapeSource(ScrapeSource source) { collector_->Set(std::move(source)); }

void Metrics::InitialiseSeries(const std::vector<std::string>& peers) {
  collector_->SetPeers(peers);
  // Family::Add returns the existing series for labels it has: adding
  // them again changes nothing.
  for (const char* source : {"operator", "tls"}) auth_failures_->Add({{"source", source}});
  for (const std::string& peer : peers) {
    for (int o = 1; o <= v1::Obligation_MAX; ++o) {
      if (!v1::Obligation_IsValid(o)) continue;
      const auto obligation = static_cast<v1::Obligation>(o);
      assessed_->Add({{"direction", "received"},
                      {"partner", peer},
                      {"obligation", v1::Obligation_Name(obligation)}});
      if (obligation == v1::INVALID) continue;  // A node never sends one.
      assessed_->Add({{"direction", "sent"},
                      {"partner", peer},
                      {"obligation", v1::Obligation_Name(obligation)}});
    }
    delivery_latency_->Add({{"partner", peer}}, LatencyBuckets());
    for (absl::StatusCode code : kRefusalCodes) {
      peer_refusals_->Add({{"peer", peer}, {"code", absl::StatusCodeToString(code)}});
    }
    rate_limited_->Add({{"peer", peer}});
  }
}

void Metrics::RequestAssessed(const std::string& direction, const std::string& partner,
                              v1::Obligation obligation) {
  assessed_
      ->Add({{"direction", direction},
             {"partner", partner},
             {"obligation", v1::Obligation_Name(obligation)}})
      .Increment();
}

void Metrics::RequestDelivered(const std::string& partner, absl::Duration latency) {
  delivery_latency_->Add({{"partner", partner}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::AuthFailure(const std::string& source) {
  auth_failures_->Add({{"source", source}}).Increment();
}

void Metrics::PeerRefusal(const std::string& peer, const std::string& code) {
  peer_refusals_->Add({{"peer", peer}, {"code", code}}).Increment();
}

void Metrics::PeerRateLimited(const std::string& peer, uint64_t refused) {
  rate_limited_->Add({{"peer", peer}}).Increment(static_cast<double>(refused));
}

std::string Metrics::Render() const {
  std::vector<MetricFamily> families = collector_->Collect();
  for (MetricFamily& f : registry_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

absl::StatusOr<int> Metrics::Serve(const std::string& address) {
  absl::MutexLock lock(&mu_);
  if (exposer_ != nullptr)
    return absl::FailedPreconditionError("metrics are already served");
  // civetweb reports a port it cannot bind by throwing; nothing else of
  // prometheus-cpp crosses this boundary.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on metrics_listen_address ", address, ": ",
                     e.what(), " (in use, or not a local address?)"));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(collector_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::StopServing() {
  std::unique_ptr<prometheus::Exposer> exposer;
  {
    absl::MutexLock lock(&mu_);
    exposer = std::move(exposer_);
  }
  exposer.reset();  // Joins civetweb's threads, outside mu_.
}

}  // namespace comity
