// Reading the records of a case as the store returns them: which row is
// which side, the parsed body, the chain a next step links to, the release
// conditions still to accept (docs/lifecycle.md).
#ifndef COMITY_SERVER_NODE_CASE_RECORDS_H_
#define COMITY_SERVER_NODE_CASE_RECORDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/config.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/store/store.h"

namespace comity {

// Every record with this id as an operator sees it: the store's Get, with
// this node's queued proposals on a sent request. NotFound if none.
absl::StatusOr<std::vector<v1::RequestRecord>> LoadRecords(Store& store,
                                                           const std::string& request_id);
// The record of one direction, loaded as LoadRecords does. NotFound if
// this node holds none of that direction.
absl::StatusOr<v1::RequestRecord> LoadRecord(Store& store, const std::string& request_id,
                                             v1::Direction direction);

// The record of `direction` among `records` (the store's Get), or null.
const v1::RequestRecord* RowOf(const std::vector<v1::RequestRecord>& records,
                               v1::Direction direction);

// The body of a stored record. DataLoss if it does not parse (the store
// holds what it verified: damage, not bad input).
absl::StatusOr<v1::RequestBody> BodyOf(const v1::RequestRecord& record);

// A request whose material an operator takes out of the node (an evidence
// file, a custody package): its first record and body. NotFound if the node
// holds none.
struct ExportableRecord {
  v1::RequestRecord record;
  v1::RequestBody body;
  bool red = false;  // TLP:RED: leaves only with the operator's explicit consent.
  // FailedPrecondition for TLP:RED material without `allow_tlp_red`.
  absl::Status MayLeave(bool allow_tlp_red) const;
};
absl::StatusOr<ExportableRecord> LoadForExport(Store& store, const std::string& request_id);

// The fields of a request the store indexes.
RecordKey KeyOf(const v1::RequestBody& body);

// SHA-256 of the payload the next transition must chain to.
std::string ChainHead(const v1::RequestRecord& record);

// The time of the case's last step: its last transition's, else its
// receipt's, else the request's creation (InfinitePast if none parses).
// A new step may not claim an earlier time (core/peer_limits.h).
absl::Time LastStepTime(const v1::RequestRecord& record);

// The release conditions of the case's responses not yet accepted, in the
// order given, each once.
std::vector<std::string> PendingConditions(
    const google::protobuf::RepeatedPtrField<v1::SignedEnvelope>& transitions);

// The next deadline of `row`'s case once `env` (transition `t`) is appended.
absl::Time NextDeadlineAfter(const v1::RequestRecord& row, const v1::Transition& t,
                             const v1::SignedEnvelope& env,
                             const v1::ServiceLevels& levels);

}  // namespace comity

#endif  // COMITY_SERVER_NODE_CASE_RECORDS_H_
