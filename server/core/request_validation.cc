#include "server/core/request_validation.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/core/parties.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr size_t kMaxShortField = 1024;    // Names, authorities, locations.
constexpr size_t kMaxLongField = 32 * 1024;  // Summaries and descriptions.
constexpr int kMaxRepeated = 64;

absl::Status CheckLength(absl::string_view field, const std::string& value,
                         size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", value.size(), " bytes; at most ", max, " are allowed"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCommon(const v1::RequestBody& body) {
  COMITY_RETURN_IF_ERROR(CheckPartyCode("requested_party", body.requested_party()));
  if (body.assistance_type() == v1::ASSISTANCE_TYPE_UNSPECIFIED ||
      !v1::AssistanceType_IsValid(body.assistance_type())) {
    return absl::InvalidArgumentError(
        "assistance_type is missing or unknown (e.g. PRESERVATION, MUTUAL_ASSISTANCE)");
  }
  const v1::Offence& offence = body.offence();
  if (offence.category() == v1::OFFENCE_CATEGORY_UNSPECIFIED ||
      !v1::OffenceCategory_IsValid(offence.category())) {
    return absl::InvalidArgumentError(
        "offence.category is missing or unknown (a Budapest Art 2-11 category such as "
        "DATA_INTERFERENCE, or OTHER with offence.description)");
  }
  if (offence.category() == v1::OTHER && offence.description().empty()) {
    return absl::InvalidArgumentError(
        "offence.description is required when offence.category is OTHER");
  }
  COMITY_RETURN_IF_ERROR(
      CheckLength("offence.description", offence.description(), kMaxLongField));
  if (!v1::DualCriminality_IsValid(offence.dual_criminality())) {
    return absl::InvalidArgumentError("offence.dual_criminality is unknown");
  }
  if (!v1::Urgency_IsValid(body.urgency())) {
    return absl::InvalidArgumentError("urgency is unknown");
  }
  const v1::Particulars& p = body.particulars();
  if (p.requesting_authority().empty()) {
    return absl::InvalidArgumentError(
        "particulars.requesting_authority is required (who asks, Art 29(2)(a))");
  }
  if (p.facts_summary().empty()) {
    return absl::InvalidArgumentError(
        "particulars.facts_summary is required (the offence and a short summary of "
        "the facts, Art 29(2)(b))");
  }
  COMITY_RETURN_IF_ERROR(CheckLength("particulars.requesting_authority",
                                     p.requesting_authority(), kMaxShortField));
  COMITY_RETURN_IF_ERROR(
      CheckLength("particulars.facts_summary", p.facts_summary(), kMaxLongField));
  COMITY_RETURN_IF_ERROR(
      CheckLength("particulars.data_sought", p.data_sought(), kMaxLongField));
  COMITY_RETURN_IF_ERROR(CheckLength("particulars.relation_to_offence",
                                     p.relation_to_offence(), kMaxLongField));
  COMITY_RETURN_IF_ERROR(CheckLength("particulars.custodian_or_location",
                                     p.custodian_or_location(), kMaxShortField));
  COMITY_RETURN_IF_ERROR(
      CheckLength("particulars.necessity", p.necessity(), kMaxLongField));
  const v1::HandlingConditions& h = body.handling();
  if (!v1::Tlp_IsValid(h.tlp())) return absl::InvalidArgumentError("handling.tlp is unknown");
  if (h.use_limits_size() > kMaxRepeated) {
    return absl::InvalidArgumentError(
        absl::StrCat("handling.use_limits has more than ", kMaxRepeated, " entries"));
  }
  for (const std::string& limit : h.use_limits()) {
    COMITY_RETURN_IF_ERROR(CheckLength("handling.use_limits[]", limit, kMaxShortField));
  }
  if (body.related_request_ids_size() > kMaxRepeated) {
    return absl::InvalidArgumentError(
        absl::StrCat("related_request_ids has more than ", kMaxRepeated, " entries"));
  }
  std::set<std::string> seen;
  for (const std::string& id : body.related_request_ids()) {
    if (!IsCanonicalUuid(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "related_request_ids entry '", id.substr(0, 64),
          "' is not a lower-case UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)"));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("related_request_ids lists ", id, " twice"));
    }
    if (id == body.id()) {
      return absl::InvalidArgumentError("a request cannot be related to itself");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestBody(const v1::RequestBody& body) {
  if (!IsCanonicalUuid(body.id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("id '", body.id().substr(0, 64), "' is not a lower-case UUID"));
  }
  COMITY_RETURN_IF_ERROR(CheckPartyCode("requesting_party", body.requesting_party()));
  if (body.requesting_party() == body.requested_party()) {
    return absl::InvalidArgumentError(
        "requesting_party and requested_party are the same party");
  }
  if (!body.has_created_at() || body.created_at().seconds() <= 0 ||
      body.created_at().nanos() < 0 || body.created_at().nanos() > 999999999) {
    return absl::InvalidArgumentError("created_at is missing or invalid");
  }
  return ValidateCommon(body);
}

absl::Status ValidateDraft(const v1::RequestBody& draft) {
  if (!draft.id().empty() || draft.has_created_at() ||
      !draft.requesting_party().empty() || draft.has_requester_assessment()) {
    return absl::InvalidArgumentError(
        "a draft must leave id, created_at, requesting_party and requester_assessment "
        "empty: the node fills them in");
  }
  return ValidateCommon(draft);
}

}  // namespace comity
