// Structural checks of a RequestBody: what every request must hold whatever
// the treaty that governs it. (Treaty-specific conditions, such as the Art
// 29(2) contents of a preservation request, are the rules engine's.)
#ifndef COMITY_SERVER_CORE_REQUEST_VALIDATION_H_
#define COMITY_SERVER_CORE_REQUEST_VALIDATION_H_

#include "absl/status/status.h"
#include "comity/v1/request.pb.h"

namespace comity {

// Checks a complete, signed-to-be body: id, parties, created_at, type,
// offence, particulars, related ids, field sizes. InvalidArgument naming the
// field otherwise.
absl::Status ValidateRequestBody(const v1::RequestBody& body);

// Checks an operator's draft before the node completes it: id, created_at
// and requesting_party must be unset; the rest as ValidateRequestBody.
absl::Status ValidateDraft(const v1::RequestBody& draft);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_REQUEST_VALIDATION_H_
