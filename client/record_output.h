// How the `comity` verbs show a request record (submit, approve, list,
// show and the case verbs): what the client checks of it on its own (the
// request's signature and the receipt, with the keys the node returned), a
// JSON summary, and the text blocks of `comity show`. Output only: no gRPC.
//
//   RecordVerification v = VerifyRecord(record, body, response.signer_keys());
//   if (json) {
//     JsonValue s = RecordSummaryJson(record, body);
//     s.Set("verification", VerificationJson(record, v));
//   } else {
//     PrintVerification(out, record, v, body.requested_party());
//     PrintAssessments(out, body, v);
//   }
#ifndef COMITY_CLIENT_RECORD_OUTPUT_H_
#define COMITY_CLIENT_RECORD_OUTPUT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "client/case_view.h"
#include "client/output.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace comity {

// RFC 3339 in UTC ("2024-05-01T12:00:00Z"), as protobuf's TimeUtil writes it.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);

// What a client can check of a record on its own.
struct RecordVerification {
  absl::Status signature;
  bool has_receipt = false;
  absl::Status receipt;
  v1::Receipt parsed_receipt;
};

// Checks the request's signature and, when the record has one, the receipt
// (signed by body.requested_party()), with `keys` (those the node returned).
// A failed check is in the result, never an error of the call.
RecordVerification VerifyRecord(
    const v1::RequestRecord& r, const v1::RequestBody& body,
    const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys);

// The requester's assessment (in the signed body) and the receiver's (in
// the signed receipt, if verified), and whether they agree.
void PrintAssessments(std::ostream& out, const v1::RequestBody& body,
                      const RecordVerification& v);

// The case's state and its signed steps, each verified, with the use
// conditions each response attaches. Nothing before the case starts.
void PrintCase(std::ostream& out, const v1::RequestRecord& r, const CaseView& view);

// The conditions no one accepted yet, and what they hold back: first, so
// that the operator sees what blocks the release (ETS185 Art 28(2)).
// Nothing when none is pending.
void PrintPendingConditions(std::ostream& out, const v1::RequestRecord& r,
                            const v1::RequestBody& body, const CaseView& view);

// The evidence files of the case's responses, and their state here.
void PrintEvidence(std::ostream& out, const CaseView& view);

// The record in one JSON object: id, direction, parties, states, times
// (docs/cli.md).
JsonValue RecordSummaryJson(const v1::RequestRecord& r, const v1::RequestBody& body);

// `v` as JSON: the signature, and the receipt (null when there is none yet).
JsonValue VerificationJson(const v1::RequestRecord& r, const RecordVerification& v);

// The signature and receipt lines of `comity show` and `submit`; `peer` is
// the requested party (who signs the receipt).
void PrintVerification(std::ostream& out, const v1::RequestRecord& r,
                       const RecordVerification& v, const std::string& peer);

}  // namespace comity

#endif  // COMITY_CLIENT_RECORD_OUTPUT_H_
