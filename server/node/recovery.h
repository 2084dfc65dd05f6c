// Partners as each other's backup (docs/backup.md): a node that restarted
// behind what its partners hold (restored from a backup, a database rolled
// back or replaced) fetches back, before it signs anything, every request,
// receipt and case step they hold signed by either side that it lost, and
// re-applies each after the same checks as when it first came; what cannot
// be recovered is audited and logged for the operator. The other side of
// the same exchange answers a partner that recovers.
//
//   Recovery recovery(&ctx, &intake, &cases);
//   // At start, when Backup::CheckLogAgainstPeers says the node is behind:
//   COMITY_ASSIGN_OR_RETURN(std::vector<Recovery::Outcome> outcomes,
//                           recovery.RecoverFromPeers(since));
//   // Peer API:
//   COMITY_ASSIGN_OR_RETURN(v1::GetSharedRecordsResponse page,
//                           recovery.Share(peer, request));
#ifndef COMITY_SERVER_NODE_RECOVERY_H_
#define COMITY_SERVER_NODE_RECOVERY_H_

#include <string>
#include <vector>

#include "comity/v1/record.pb.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/peer.pb.h"
#include "server/node/case_book.h"
#include "server/node/node_context.h"
#include "server/node/request_intake.h"

namespace comity {

// Thread-safe.
class Recovery {
 public:
  // What was recovered from one peer.
  struct Outcome {
    std::string peer;
    absl::Status reached;        // Not OK: the peer could not be asked (to the end).
    int records_seen = 0;        // Shared records the peer returned.
    int requests_recovered = 0;  // Requests this node did not hold.
    int receipts_recovered = 0;  // Receipts of sent requests it held as pending.
    int steps_recovered = 0;     // Case steps it did not hold.
    // What could not be recovered, one line each (the first 50).
    std::vector<std::string> not_recovered;
    int not_recovered_count = 0;
  };

  // The margin below the time asked for: the partners' clocks may differ
  // from this node's (docs/backup.md).
  static constexpr absl::Duration kClockMargin = absl::Hours(24);
  // Records a partner sends in one answer.
  static constexpr int kPageRecords = 100;
  static constexpr size_t kPageBytes = 1 << 20;

  Recovery(const NodeContext* ctx, RequestIntake* intake, CaseBook* cases)
      : ctx_(ctx), intake_(intake), cases_(cases) {}

  // Asks every peer at once for what it shares with this node changed at
  // or after `since` (less kClockMargin), page by page, and applies what
  // this node does not hold: a request it sent (with the peer's receipt)
  // or received (stored again, with a new receipt), a receipt of a request
  // it held as pending, and the case steps after the last it holds (its
  // own, queued again for the peer; the peer's, as if delivered now).
  // Audits RECORDS_RECOVERED per peer that answered or held something.
  // Errors only for a failure of this node's store.
  absl::StatusOr<std::vector<Outcome>> RecoverFromPeers(absl::Time since);

  // Peer API (GetSharedRecords): a page of what this node shares with
  // `peer`. InvalidArgument for a bad page token.
  absl::StatusOr<v1::GetSharedRecordsResponse> Share(const std::string& peer,
                                                      const v1::GetSharedRecordsRequest& request);

 private:
  void RecoverFrom(const std::string& peer, absl::Time since, Outcome* out);
  // Applies one shared record; adds to `out`.
  void Apply(const std::string& peer, const v1::SharedRecord& record, Outcome* out);
  // `records`: what this node holds under the request's id.
  absl::Status ApplySent(const std::string& peer, const v1::RequestBody& body,
                         const v1::SharedRecord& record,
                         std::vector<v1::RequestRecord> records, Outcome* out);
  absl::Status ApplyReceived(const std::string& peer, const v1::RequestBody& body,
                             const v1::SharedRecord& record,
                             std::vector<v1::RequestRecord> records, Outcome* out);
  absl::Status Audit(const Outcome& out);

  const NodeContext* const ctx_;
  RequestIntake* const intake_;
  CaseBook* const cases_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_RECOVERY_H_
