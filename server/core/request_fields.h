// The operator-facing names of RequestBody fields: the `comity submit` flag
// that sets each field an instrument can require (docs/operator_api.md), so
// that a refusal names what to pass, whichever client made the request.
#ifndef COMITY_SERVER_CORE_REQUEST_FIELDS_H_
#define COMITY_SERVER_CORE_REQUEST_FIELDS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "comity/v1/assessment.pb.h"

namespace comity {

// "--data-sought" for "particulars.data_sought"; empty if no flag sets it.
absl::string_view SubmitFlagOf(absl::string_view field);

// "--data-sought (particulars.data_sought): ETS185 Art 29(2)(c), the stored
// computer data to be preserved", one line per missing content of an
// INVALID assessment, each field once.
std::string DescribeMissing(const v1::Assessment& assessment);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_REQUEST_FIELDS_H_
