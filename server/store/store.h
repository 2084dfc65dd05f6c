// Durable storage of requests, behind an interface so that the node logic
// can be tested against a fake and run on SQLite (here) or, later,
// PostgreSQL. The SQLite schema is specified in docs/storage.md.
#ifndef COMITY_SERVER_STORE_STORE_H_
#define COMITY_SERVER_STORE_STORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/record.pb.h"

namespace comity {

// The identifying fields of a stored record, copied out of its request
// envelope when it is stored.
struct RecordKey {
  std::string request_id;
  std::string requesting_party;
  std::string requested_party;
};

// Implementations are thread-safe. Every mutating call is durable (fsync'd)
// when it returns OK.
class Store {
 public:
  virtual ~Store() = default;

  // Stores a new outgoing request. AlreadyExists if the id is known.
  virtual absl::Status InsertOutgoing(const RecordKey& key,
                                      const v1::RequestRecord& record) = 0;

  // Stores an incoming request with the receipt it will be answered with,
  // in one transaction, unless a request with the same id was already
  // received: then nothing is written and the stored record is returned
  // with `*inserted` false.
  virtual absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key, const v1::RequestRecord& record, bool* inserted) = 0;

  // Outgoing request acknowledged: state DELIVERED with its receipt.
  virtual absl::Status MarkDelivered(const std::string& request_id,
                                     const v1::SignedEnvelope& receipt,
                                     absl::Time now) = 0;

  // A delivery attempt failed: counts it and schedules the next.
  virtual absl::Status MarkDeliveryFailed(const std::string& request_id,
                                          const std::string& error, absl::Time now,
                                          absl::Time next_attempt_at) = 0;

  // The peer refused the request for good: state DELIVERY_REJECTED, no
  // further attempts.
  virtual absl::Status MarkRejected(const std::string& request_id,
                                    const std::string& error, absl::Time now) = 0;

  // Every record with this id (at most one per direction). Empty if none.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> Get(
      const std::string& request_id) = 0;

  // Newest first; `direction` DIRECTION_UNSPECIFIED for both.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                              int limit) = 0;

  // Outgoing requests still PENDING_DELIVERY whose next attempt is due at
  // `now`, oldest first.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> DueForDelivery(absl::Time now,
                                                                        int limit) = 0;
};

}  // namespace comity

#endif  // COMITY_SERVER_STORE_STORE_H_
