// Requests this node's operators make (docs/lifecycle.md, "Submission"):
// a draft is completed (id, requesting party, date, urgency), validated,
// assessed under the treaty library (an INVALID request is refused and not
// stored), signed and stored for the outbox; a type that needs two-person
// approval waits, unsigned, for a second operator.
//
//   Submission submission(&ctx);
//   COMITY_ASSIGN_OR_RETURN(v1::RequestRecord stored, submission.Submit("alice", draft));
//   // stored.state(): PENDING_DELIVERY (the outbox delivers it) or AWAITING_APPROVAL.
//   COMITY_ASSIGN_OR_RETURN(stored, submission.Approve("bob", id));
#ifndef COMITY_SERVER_NODE_SUBMISSION_H_
#define COMITY_SERVER_NODE_SUBMISSION_H_

#include <string>

#include "absl/status/statusor.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/node/node_context.h"
#include "server/store/store.h"

namespace comity {

// Thread-safe.
class Submission {
 public:
  explicit Submission(const NodeContext* ctx) : ctx_(ctx) {}

  // Completes, signs and stores `draft` by `operator_name`; returns the
  // stored record. InvalidArgument for a bad draft; FailedPrecondition for
  // an unconfigured requested party, an unknown related request, or a
  // request the treaty library finds INVALID (nothing is stored). With
  // `key`, also sets the stored request's key (id and parties), so that a
  // caller need not parse the signed body again.
  absl::StatusOr<v1::RequestRecord> Submit(const std::string& operator_name,
                                           v1::RequestBody draft, RecordKey* key = nullptr);
  // Two-person approval: `approver` (who must not be the submitter)
  // approves a draft AWAITING_APPROVAL; it is dated, assessed again and
  // signed. FailedPrecondition if the request is not awaiting approval,
  // PermissionDenied for the submitter. `key` as for Submit.
  absl::StatusOr<v1::RequestRecord> Approve(const std::string& approver,
                                            const std::string& request_id,
                                            RecordKey* key = nullptr);

 private:
  // Sets created_at, assesses (FailedPrecondition if the request is
  // INVALID) and signs `body`.
  absl::StatusOr<v1::SignedEnvelope> DateAssessAndSign(v1::RequestBody* body) const;
  bool NeedsApproval(v1::AssistanceType type) const;

  const NodeContext* const ctx_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_SUBMISSION_H_
