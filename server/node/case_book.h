// The cases (docs/lifecycle.md): the requested party decides on a request
// it received and numbers every step of its case, its own and the
// requesting party's proposals, as signed transitions chained by hash; the
// requesting party proposes its steps (withdraw, answer, accept conditions,
// close) and applies the transitions it receives, each checked (signature,
// sequence, chain, legality) before it is stored.
//
//   CaseBook book(&ctx, &staged, /*step_queued=*/[&](auto& peer) { outbox.Kick(peer);
//   },
//                 /*evidence_listed=*/[&](auto& peer) { fetchers.Wake(peer); });
//   COMITY_ASSIGN_OR_RETURN(CaseBook::Acted acted, book.Act(operator_id, request_id,
//   decision));
#ifndef COMITY_SERVER_NODE_CASE_BOOK_H_
#define COMITY_SERVER_NODE_CASE_BOOK_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/record.pb.h"
#include "server/crypto/x509_identity.h"
#include "server/node/evidence_intake.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe (the store orders concurrent steps of one case).
class CaseBook {
 public:
  struct Decision {
    v1::CaseAction action = v1::CASE_ACTION_UNSPECIFIED;
    std::vector<v1::RefusalGround> refusal_grounds;
    std::string reasons;
    std::string consultation;
    std::string text;
    bool final_response = false;
    // RESPOND: files staged for the request (EvidenceIntake), by SHA-256,
    // and conditions on their use (ETS185 Art 28(2)).
    std::vector<std::string> evidence_sha256;
    std::vector<std::string> release_conditions;
    // ACCEPT_CONDITIONS (filled by the node): the conditions accepted.
    std::vector<std::string> accepted_conditions;
  };
  // What an operator's step did: the record after it, and for a proposal
  // the requested party whose outbox lane carries it (the caller may wait
  // for its first delivery attempt).
  struct Acted {
    v1::RequestRecord record;
    std::string proposal_to;
  };

  // `step_queued(peer)`: a step for `peer` waits in the outbox.
  // `evidence_listed(peer)`: a step from `peer` listed evidence to fetch.
  // `staged`: where a response's evidence files come from.
  CaseBook(const NodeContext* ctx, EvidenceIntake* staged,
           std::function<void(const std::string&)> step_queued,
           std::function<void(const std::string&)> evidence_listed)
      : ctx_(ctx),
        staged_(staged),
        step_queued_(std::move(step_queued)),
        evidence_listed_(std::move(evidence_listed)) {}

  // An operator's step on a case: a decision on a received request
  // (reviewer role), a proposal on a sent one (submitter role).
  // PermissionDenied for the wrong role; the errors of Decide / Propose.
  absl::StatusOr<Acted> Act(const CertIdentity& op, const std::string& request_id,
                            const Decision& decision);
  // A step of the case of a request this node received, taken by
  // `operator_name`: checked (legal from the current state; a refusal only
  // on grounds the governing instrument leaves open), signed, stored,
  // audited and queued for delivery to the requesting party.
  absl::StatusOr<v1::RequestRecord> Decide(const std::string& operator_name,
                                           const std::string& request_id,
                                           const Decision& decision);
  // A step of the case of a request this node sent (WITHDRAW, PROVIDE_INFO,
  // CLOSE, ACCEPT_CONDITIONS): signed as a proposal and queued durably for
  // the requested party, which numbers it into the case; applied here from
  // the transition it returns (ReceiveTransition). Returns the record with
  // the proposal in queued_proposals. FailedPrecondition while another
  // proposal of the case is queued.
  absl::StatusOr<v1::RequestRecord> Propose(const std::string& operator_name,
                                            const std::string& request_id,
                                            const Decision& decision);

  // Peer API: numbers the requesting party's signed proposal into the case.
  absl::StatusOr<v1::SignedEnvelope> SequenceProposal(const std::string& peer_party,
                                                      const v1::SignedEnvelope& proposal);
  // The requested party's signed step of a case this node requested;
  // returns this node's signed Acknowledgement (also for a step it already
  // holds, so that a retried delivery is acknowledged again).
  // FailedPrecondition for a step that does not follow the case as held
  // here (earlier steps still on their way).
  // `note`, if any, ends the CASE_UPDATED entry's detail.
  absl::StatusOr<v1::SignedEnvelope> ReceiveTransition(const std::string& peer_party,
                                                       const v1::SignedEnvelope& envelope,
                                                       absl::string_view note = {});
  // A step of the case of a request `peer_party` sent, signed by this node
  // and then lost here (a restore), as the peer still holds it
  // (docs/backup.md): checked like a step this node receives (its
  // signature, sequence, chain and legality; a requesting party's step
  // must carry the peer's signed proposal), stored and audited, and queued
  // again for the peer, which acknowledges the same bytes again. OK and
  // false if this node holds the step already; AlreadyExists if it holds
  // another step of that sequence; FailedPrecondition if it does not
  // follow the case as held here.
  absl::StatusOr<bool> RestoreStep(const std::string& peer_party,
                                   const v1::SignedEnvelope& envelope, absl::string_view note);

 private:
  // Signs, numbers and stores the next step of a received request's case,
  // decided by `decided_by` (this party, or the requesting party through
  // `proposal`), and queues it for delivery.
  absl::StatusOr<v1::SignedEnvelope> AppendStep(
      const v1::RequestRecord& row, const v1::RequestBody& body,
      const v1::Receipt& receipt, const Decision& d, const std::string& decided_by,
      const std::string& operator_name, const std::vector<std::string>& duties,
      const v1::SignedEnvelope* proposal, const std::vector<v1::EvidenceFile>& evidence);

  const NodeContext* const ctx_;
  EvidenceIntake* const staged_;
  const std::function<void(const std::string&)> step_queued_;
  const std::function<void(const std::string&)> evidence_listed_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_CASE_BOOK_H_
