#include "server/core/request_fields.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace comity {
namespace {

constexpr std::pair<const char*, const char*> kFlags[] = {
    {"particulars.requesting_authority", "--authority"},
    {"particulars.facts_summary", "--facts"},
    {"particulars.data_sought", "--data-sought"},
    {"particulars.relation_to_offence", "--relation"},
    {"particulars.custodian_or_location", "--custodian"},
    {"particulars.necessity", "--necessity"},
    {"particulars.intends_mutual_assistance_request", "--intent-mla"},
    {"offence.description", "--offence-description"},
    {"offence.max_penalty_months", "--penalty-months"},
    {"urgency", "--urgency"},
    {"handling.tlp", "--tlp"},
};

}  // namespace

absl::string_view SubmitFlagOf(absl::string_view field) {
  for (const auto& [f, flag] : kFlags) {
    if (field == f) return flag;
  }
  return {};
}

std::string DescribeMissing(const v1::Assessment& assessment) {
  std::vector<std::string> lines;
  std::set<std::string> seen;
  for (const v1::MissingContent& m : assessment.missing()) {
    if (!seen.insert(m.field()).second) continue;
    const absl::string_view flag = SubmitFlagOf(m.field());
    lines.push_back(absl::StrCat(flag.empty() ? m.field() : absl::StrCat(flag, " (", m.field(), ")"),
                                 ": ", m.basis(),
                                 m.description().empty() ? "" : ", " + m.description()));
  }
  return absl::StrJoin(lines, "; ");
}

}  // namespace comity
