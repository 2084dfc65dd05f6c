// Checks the data a node stores against the hashes its audit log holds for
// it: every stored request, receipt, case step (with its acknowledgement)
// and staged evidence file has the entry that logged it, with the same
// SHA-256, and its signature still verifies; every entry that logged such
// an item finds it stored. Run by VerifyStoredLog (server/store/store.h) on
// the same snapshot as the LogVerifier, after it.
//
//   CoverageChecker c(&key_ring);
//   for (each entry in order) c.AddEntry(position, bytes);
//   for (each stored request, by id) c.CheckRequest(row);
//   for (each stored step, by request and sequence) c.CheckStep(row);
//   for (each staged file) c.CheckStagedEvidence(request_id, sha256);
//   c.Finish(&report);
#ifndef COMITY_SERVER_AUDIT_COVERAGE_H_
#define COMITY_SERVER_AUDIT_COVERAGE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/audit/verifier.h"
#include "server/core/envelope.h"

namespace comity {

// A row of `requests` as stored (docs/storage.md).
struct StoredRequestRow {
  std::string request_id;
  int direction = 0;  // v1::Direction.
  int state = 0;      // v1::RequestState.
  int64_t stored_at_us = 0;
  std::string request_envelope;  // Serialized SignedEnvelope.
  std::string payload_sha256;
  std::string receipt_envelope;  // Empty: none.
};

// A row of `transitions` as stored.
struct StoredStepRow {
  std::string request_id;
  int64_t sequence = 0;
  std::string envelope;  // Serialized SignedEnvelope of a Transition.
  std::string ack;       // Serialized SignedEnvelope of an Acknowledgement; empty: none.
};

// Thread-compatible. Keeps, per request the log names, the hashes its
// entries hold (about 100 bytes and 40 per step); the stored rows are
// streamed through it.
class CoverageChecker {
 public:
  // Signatures are checked with `keys` (this node's and its peers').
  explicit CoverageChecker(const KeyRing* keys) : keys_(keys) {}

  // The entry at `position`, in log order (a LogVerifier reports entries
  // that do not parse).
  void AddEntry(uint64_t position, absl::string_view bytes);
  void CheckRequest(const StoredRequestRow& row);
  // Steps of one request in sequence order, after its request was checked.
  void CheckStep(const StoredStepRow& row);
  void CheckStagedEvidence(const std::string& request_id, const std::string& sha256);
  // Reports entries whose item is not stored; adds the counts to `report`
  // and, if it is still ok, the first problem found.
  void Finish(VerifyReport* report);

 private:
  struct Step {
    uint64_t entry;
    std::string hash;
  };
  struct Expected {
    // The entry that logged the request (REQUEST_RECEIVED, or the last of
    // REQUEST_SUBMITTED / REQUEST_APPROVED), its type and payload hash.
    int64_t request_entry = -1;
    int request_type = 0;
    std::string payload_hash;
    std::string received_entry_hash;  // SHA-256 of the REQUEST_RECEIVED entry's bytes.
    int64_t receipt_entry = -1;       // DELIVERY_ACKNOWLEDGED.
    std::string receipt_hash;
    std::vector<Step> steps;                                // CASE_DECIDED / CASE_UPDATED.
    std::vector<std::pair<std::string, std::string>> acks;  // TRANSITION_DELIVERED.
    std::vector<std::string> staged;                        // EVIDENCE_IMPORTED.
    bool request_seen = false;
    size_t steps_seen = 0;
  };
  void Fail(std::string message);
  // The expectations for `request_id`, or null if the log names none.
  Expected* Find(const std::string& request_id);

  const KeyRing* keys_;
  std::map<std::string, Expected> expected_;
  int64_t log_start_us_ = -1;  // Time of entry 0: older rows predate the log.
  uint64_t items_ = 0;
  uint64_t uncovered_ = 0;
  std::string error_;
};

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_COVERAGE_H_
