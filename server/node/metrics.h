// Prometheus metrics of a node (docs/metrics.md): counters and a latency
// histogram the node updates as things happen, and gauges read from the
// store when a scrape comes (one aggregate query each, so a scrape stays
// cheap however many requests the node holds). No gRPC here; the HTTP
// endpoint is prometheus-cpp's (civetweb), started by Serve().
//
//   Metrics metrics;
//   metrics.SetScrapeSource([&] { return TakeSnapshot(store); });
//   metrics.RequestAssessed("sent", "JP", v1::BINDING);
//   COMITY_ASSIGN_OR_RETURN(int port, metrics.Serve("127.0.0.1:9464"));
//   // GET http://127.0.0.1:9464/metrics
#ifndef COMITY_SERVER_NODE_METRICS_H_
#define COMITY_SERVER_NODE_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "comity/v1/assessment.pb.h"
#include "server/store/store.h"

namespace prometheus {
class Exposer;
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace comity {

// What a scrape reads from the store.
struct MetricsSnapshot {
  std::vector<RequestCount> requests;
  // Per peer: (requests, case steps and proposals) waiting for it.
  std::map<std::string, std::pair<uint32_t, uint32_t>> queue_depths;
  uint64_t audit_entries = 0;
};

// Thread-safe. Serve() at most once.
class Metrics {
 public:
  using ScrapeSource = std::function<absl::StatusOr<MetricsSnapshot>()>;

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Where the gauges come from at scrape time. Until set, or when it
  // fails, comity_store_up is 0 and those gauges are absent.
  void SetScrapeSource(ScrapeSource source);

  // Creates every series of `peers` (the parties the node exchanges with)
  // and of the fixed label values at 0, so that a scrape shows them before
  // their first event (docs/metrics.md: an alert sees 0, not "no data").
  // Idempotent; call before serving.
  void InitialiseSeries(const std::vector<std::string>& peers);

  // A request assessed by this node: `direction` "sent" or "received",
  // `partner` the other party.
  void RequestAssessed(const std::string& direction, const std::string& partner,
                       v1::Obligation obligation);
  // A sent request became DELIVERED `latency` after it was dated and signed.
  void RequestDelivered(const std::string& partner, absl::Duration latency);
  // An operator's or an unknown TLS client's call refused (`source`
  // "operator" or "tls"), or a peer's message refused with `code`.
  void AuthFailure(const std::string& source);
  void PeerRefusal(const std::string& peer, const std::string& code);
  // `refused` calls of `peer` refused over its rate limit.
  void PeerRateLimited(const std::string& peer, uint64_t refused);

  // The Prometheus text exposition of everything, as a scrape sees it.
  std::string Render() const;

  // Serves Render() at http://`address`/metrics (plain HTTP, civetweb's
  // threads) until StopServing() or destruction. Returns the bound port.
  // Unavailable if `address` cannot be bound.
  absl::StatusOr<int> Serve(const std::string& address);
  void StopServing();

 private:
  class StoreCollector;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StoreCollector> collector_;
  prometheus::Family<prometheus::Counter>* assessed_;
  prometheus::Family<prometheus::Histogram>* delivery_latency_;
  prometheus::Family<prometheus::Counter>* auth_failures_;
  prometheus::Family<prometheus::Counter>* peer_refusals_;
  prometheus::Family<prometheus::Counter>* rate_limited_;
  absl::Mutex mu_;
  std::unique_ptr<prometheus::Exposer> exposer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_METRICS_H_
