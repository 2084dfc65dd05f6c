#include "server/treaty/library.h"

#include <dirent.h>

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "server/core/parties.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::TextFormat;

// One step of a path to a field in a parsed file: field name and index
// (-1 for a singular field).
struct PathStep {
  const char* field;
  int index;
};

class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (line_ < 0) {
      line_ = line;
      message_ = message;
    }
  }
  int line_ = -1;
  std::string message_;
};

// Builds "<file>:<line>: <path>: <problem>" errors from a parsed file.
class Locator {
 public:
  Locator(const std::string& file, const TextFormat::ParseInfoTree* tree)
      : file_(file), tree_(tree) {}

  absl::Status Error(std::initializer_list<PathStep> path, absl::string_view problem) const {
    int line = Line(path);
    return absl::InvalidArgumentError(absl::StrCat(
        file_, line > 0 ? absl::StrCat(":", line) : "", ": ", PathString(path), ": ", problem));
  }

 private:
  int Line(std::initializer_list<PathStep> path) const {
    const Descriptor* desc = v1::Instrument::descriptor();
    const TextFormat::ParseInfoTree* tree = tree_;
    int line = 0;
    size_t i = 0;
    for (const PathStep& step : path) {
      const FieldDescriptor* field = desc ? desc->FindFieldByName(step.field) : nullptr;
      if (field == nullptr || tree == nullptr) break;
      // The tree wants -1 for singular fields and a real index for repeated.
      int index = field->is_repeated() ? std::max(step.index, 0) : -1;
      auto loc = tree->GetLocation(field, index);
      if (loc.line >= 0) line = loc.line + 1;
      if (++i < path.size()) {
        if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) break;
        tree = tree->GetTreeForNested(field, index);
        desc = field->message_type();
      }
    }
    return line;
  }
  static std::string PathString(std::initializer_list<PathStep> path) {
    std::string out;
    for (const PathStep& step : path) {
      if (!out.empty()) out += ".";
      out += step.field;
      if (step.index >= 0) absl::StrAppend(&out, "[", step.index, "]");
    }
    return out;
  }
  std::string file_;
  const TextFormat::ParseInfoTree* tree_;
};

// "Art 29(4)(b)" -> "29". Empty if not of that form.
std::string ArticleNumber(absl::string_view ref) {
  if (!absl::ConsumePrefix(&ref, "Art ")) return "";
  size_t end = 0;
  while (end < ref.size() && (absl::ascii_isalnum(ref[end]))) ++end;
  return std::string(ref.substr(0, end));
}

// Upper bounds of EntryIntoForceRule delays (treaties use a few months).
constexpr uint32_t kMaxEntryIntoForceDays = 36525;
constexpr uint32_t kMaxEntryIntoForceMonths = 1200;

Day AddMonthsThenFirstOfNext(Day day, int months) {
  absl::CivilDay d = absl::CivilDay(1970, 1, 1) + day;
  absl::CivilMonth m(d);
  return ToDay(absl::CivilDay(m + months + 1));
}

// When a consent on `consent` takes effect under `rule`; kNever if the rule
// says nothing.
Day EffectiveFrom(const v1::EntryIntoForceRule& rule, Day consent) {
  if (consent == kNever) return kNever;
  if (rule.first_day_of_following_month()) {
    return AddMonthsThenFirstOfNext(consent, static_cast<int>(rule.months_after()));
  }
  if (rule.days_after() > 0) return consent + static_cast<Day>(rule.days_after());
  return kNever;
}

bool RuleComputes(const v1::EntryIntoForceRule& rule) {
  return rule.first_day_of_following_month() || rule.days_after() > 0;
}

absl::StatusOr<Day> DateField(const Locator& loc, std::initializer_list<PathStep> path,
                              const std::string& value) {
  if (value.empty()) return kNever;
  auto day = ParseDay(value);
  if (!day.ok()) {
    return loc.Error(path, absl::StrCat("'", value, "' is not a date; write YYYY-MM-DD"));
  }
  return day;
}

// Resolves "particulars.necessity" against RequestBody.
absl::StatusOr<std::vector<const FieldDescriptor*>> ResolveRequestField(
    const std::string& path) {
  std::vector<const FieldDescriptor*> fields;
  const Descriptor* desc = v1::RequestBody::descriptor();
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (desc == nullptr) return absl::NotFoundError(path);
    const FieldDescriptor* f = desc->FindFieldByName(std::string(part));
    if (f == nullptr || f->is_repeated()) return absl::NotFoundError(path);
    fields.push_back(f);
    desc = f->message_type();
  }
  if (fields.empty()) return absl::NotFoundError(path);
  return fields;
}

absl::Status Validate(InstrumentRecord* rec, const Locator& loc) {
  v1::Instrument& in = rec->proto;
  if (in.id().empty()) return loc.Error({{"id", -1}}, "is required (e.g. \"ETS185\")");
  if (in.kind() == v1::INSTRUMENT_KIND_UNSPECIFIED) {
    return loc.Error({{"kind", -1}},
                     "is required: MULTILATERAL_TREATY, BILATERAL_TREATY, "
                     "POLITICAL_DECLARATION, ORGANISATION_MEMBERSHIP or ORGANISATION_ACT");
  }
  if (in.kind() == v1::ORGANISATION_ACT && in.organisation().empty()) {
    return loc.Error({{"organisation", -1}},
                     "an ORGANISATION_ACT binds the members of an organisation: name its "
                     "ORGANISATION_MEMBERSHIP instrument (e.g. \"EU\")");
  }
  if (in.kind() == v1::ORGANISATION_MEMBERSHIP &&
      (in.provisions_size() > 0 || !in.organisation().empty())) {
    return loc.Error({{"provisions", 0}},
                     "a membership list creates no obligation: no provisions, no organisation");
  }
  for (auto [field, value] : {std::pair<const char*, const std::string*>{"adopted", &in.adopted()},
                              {"opened_for_signature", &in.opened_for_signature()},
                              {"in_force", &in.in_force()}}) {
    COMITY_RETURN_IF_ERROR(DateField(loc, {{field, -1}}, *value).status());
  }
  std::set<std::string> articles;
  for (int i = 0; i < in.articles_size(); ++i) {
    const std::string& n = in.articles(i).number();
    if (n.empty() || !articles.insert(n).second) {
      return loc.Error({{"articles", i}, {"number", -1}},
                       n.empty() ? "is required" : absl::StrCat("article ", n, " is listed twice"));
    }
  }
  auto check_ref = [&](std::initializer_list<PathStep> path, const std::string& ref) {
    std::string n = ArticleNumber(ref);
    if (n.empty()) {
      return loc.Error(path, absl::StrCat("'", ref, "' is not an article reference; write "
                                          "\"Art 29(2)(f)\""));
    }
    if (articles.count(n) == 0) {
      return loc.Error(path, absl::StrCat("'", ref, "' cites article ", n, ", which ", in.id(),
                                          " does not list; add it to articles or fix the "
                                          "reference"));
    }
    return absl::OkStatus();
  };

  auto check_channels = [&](std::initializer_list<PathStep> at,
                            const google::protobuf::RepeatedPtrField<v1::ChannelRule>& rules)
      -> absl::Status {
    for (int c = 0; c < rules.size(); ++c) {
      if (rules[c].channel() == v1::CHANNEL_UNSPECIFIED) {
        return loc.Error(at, absl::StrCat("channels[", c, "].channel is required (CENTRAL_AUTHORITY, "
                                          "POINT_OF_CONTACT, DIRECT_JUDICIAL, DIPLOMATIC or "
                                          "SERVICE_PROVIDER)"));
      }
      if (!rules[c].basis().empty()) {
        COMITY_RETURN_IF_ERROR(check_ref(at, rules[c].basis()));
      }
    }
    return absl::OkStatus();
  };
  COMITY_RETURN_IF_ERROR(check_channels({{"channels", -1}}, in.channels()));
  COMITY_RETURN_IF_ERROR(
      check_channels({{"general_procedure", -1}, {"channels", -1}}, in.general_procedure().channels()));
  for (int i = 0; i < in.precedence_size(); ++i) {
    const v1::Precedence& pr = in.precedence(i);
    if (pr.instrument().empty() || pr.instrument() == in.id()) {
      return loc.Error({{"precedence", i}, {"instrument", -1}},
                       "name another instrument of the library");
    }
    if (pr.effect() == v1::PRECEDENCE_EFFECT_UNSPECIFIED) {
      return loc.Error({{"precedence", i}, {"effect", -1}}, "is required: REPLACES or SUPPLEMENTS");
    }
    if (pr.basis().empty()) {
      return loc.Error({{"precedence", i}, {"basis", -1}},
                       "name the article that sets the precedence (e.g. \"Art 34(1)\")");
    }
    COMITY_RETURN_IF_ERROR(check_ref({{"precedence", i}, {"basis", -1}}, pr.basis()));
  }

  if (in.kind() == v1::POLITICAL_DECLARATION && in.provisions_size() > 0) {
    return loc.Error({{"provisions", 0}},
                     "a political declaration binds no one and has no provisions; remove them");
  }
  rec->content_paths.resize(in.provisions_size());
  for (int i = 0; i < in.provisions_size(); ++i) {
    const v1::Provision& p = in.provisions(i);
    int type = p.assistance_type();
    if (type <= 0 || type >= static_cast<int>(rec->provisions.size()) ||
        !v1::AssistanceType_IsValid(type)) {
      return loc.Error({{"provisions", i}, {"assistance_type", -1}}, "is missing or unknown");
    }
    if (rec->provisions[type] != nullptr) {
      return loc.Error({{"provisions", i}, {"assistance_type", -1}},
                       absl::StrCat(v1::AssistanceType_Name(p.assistance_type()),
                                    " has two provisions; merge them"));
    }
    rec->provisions[type] = &p;
    rec->provision_index[type] = i;
    if (p.obligation() != v1::BINDING && p.obligation() != v1::DISCRETIONARY) {
      return loc.Error({{"provisions", i}, {"obligation", -1}},
                       "must be BINDING or DISCRETIONARY");
    }
    if (p.basis().empty()) {
      return loc.Error({{"provisions", i}, {"basis", -1}}, "name at least one article");
    }
    for (int b = 0; b < p.basis_size(); ++b) {
      COMITY_RETURN_IF_ERROR(check_ref({{"provisions", i}, {"basis", b}}, p.basis(b)));
    }
    for (int d = 0; d < p.duties_size(); ++d) {
      COMITY_RETURN_IF_ERROR(
          check_ref({{"provisions", i}, {"duties", d}, {"basis", -1}}, p.duties(d).basis()));
    }
    if (!p.deadline_basis().empty()) {
      COMITY_RETURN_IF_ERROR(
          check_ref({{"provisions", i}, {"deadline_basis", -1}}, p.deadline_basis()));
    }
    if (!p.excluded_basis().empty()) {
      COMITY_RETURN_IF_ERROR(
          check_ref({{"provisions", i}, {"excluded_basis", -1}}, p.excluded_basis()));
    }
    for (int c = 0; c < p.required_contents_size(); ++c) {
      const v1::RequiredContent& rc = p.required_contents(c);
      COMITY_RETURN_IF_ERROR(
          check_ref({{"provisions", i}, {"required_contents", c}, {"basis", -1}}, rc.basis()));
      auto path = ResolveRequestField(rc.field());
      if (!path.ok()) {
        return loc.Error({{"provisions", i}, {"required_contents", c}, {"field", -1}},
                         absl::StrCat("'", rc.field(),
                                      "' is not a field of comity.v1.RequestBody (e.g. "
                                      "\"particulars.necessity\")"));
      }
      rec->content_paths[i].push_back(*std::move(path));
    }
    for (const std::string* ref : {&p.postponement_basis(), &p.dual_criminality_waiver_basis(),
                                   &p.emergency_deadline_basis()}) {
      if (!ref->empty()) COMITY_RETURN_IF_ERROR(check_ref({{"provisions", i}}, *ref));
    }
    COMITY_RETURN_IF_ERROR(check_channels({{"provisions", i}, {"channels", -1}}, p.channels()));
    if (p.requires_prior_preservation() &&
        (p.otherwise() <= 0 || !v1::AssistanceType_IsValid(p.otherwise()) ||
         p.otherwise() == p.assistance_type())) {
      return loc.Error({{"provisions", i}, {"otherwise", -1}},
                       "a provision that requires a prior preservation names the type a "
                       "standalone request is assessed as (e.g. STORED_DATA_ACCESS)");
    }
    if ((p.scope() == v1::SERIOUS_OFFENCES || p.scope() == v1::CONVENTION_OR_SERIOUS_OFFENCES) &&
        p.min_penalty_months() == 0) {
      return loc.Error({{"provisions", i}, {"min_penalty_months", -1}},
                       "SERIOUS_OFFENCES needs the threshold in months");
    }
  }
  for (int i = 0; i < in.provisions_size(); ++i) {
    const v1::Provision& p = in.provisions(i);
    if (p.requires_prior_preservation() && rec->provisions[p.otherwise()] == nullptr) {
      return loc.Error({{"provisions", i}, {"otherwise", -1}},
                       absl::StrCat(v1::AssistanceType_Name(p.otherwise()),
                                    " has no provision in ", in.id(), "; add one or name another"));
    }
  }
  for (int b = 0; b < in.general_procedure().basis_size(); ++b) {
    COMITY_RETURN_IF_ERROR(
        check_ref({{"general_procedure", -1}, {"basis", b}}, in.general_procedure().basis(b)));
  }
  for (int d = 0; d < in.general_procedure().duties_size(); ++d) {
    COMITY_RETURN_IF_ERROR(check_ref({{"general_procedure", -1}, {"duties", d}, {"basis", -1}},
                                     in.general_procedure().duties(d).basis()));
  }
  std::map<std::string, const v1::AllowedReservation*> allowed_res, allowed_decl;
  for (int i = 0; i < in.allowed_reservations_size(); ++i) {
    COMITY_RETURN_IF_ERROR(check_ref({{"allowed_reservations", i}, {"id", -1}},
                                     in.allowed_reservations(i).id()));
    allowed_res[in.allowed_reservations(i).id()] = &in.allowed_reservations(i);
  }
  for (int i = 0; i < in.allowed_declarations_size(); ++i) {
    COMITY_RETURN_IF_ERROR(check_ref({{"allowed_declarations", i}, {"id", -1}},
                                     in.allowed_declarations(i).id()));
    allowed_decl[in.allowed_declarations(i).id()] = &in.allowed_declarations(i);
  }

  // Parties and dates.
  if (in.kind() == v1::BILATERAL_TREATY && in.parties_size() != 2) {
    return loc.Error({{"parties", -1}},
                     absl::StrCat("a bilateral treaty has exactly two parties, this lists ",
                                  in.parties_size()));
  }
  rec->party_slot.fill(-1);
  std::vector<Day> consents;
  for (int i = 0; i < in.parties_size(); ++i) {
    const v1::PartyStatus& ps = in.parties(i);
    const bool organisation_row = !in.organisation().empty() && ps.party() == in.organisation();
    if (!organisation_row && !IsPartyCode(ps.party())) {
      return loc.Error({{"parties", i}, {"party", -1}},
                       absl::StrCat("'", ps.party(),
                                    "' is not an ISO 3166-1 alpha-2 code (e.g. FR, JP, GB)"));
    }
    int slot = PartySlot(ps.party());
    if (rec->party_slot[slot] >= 0) {
      return loc.Error({{"parties", i}, {"party", -1}},
                       absl::StrCat(ps.party(), " is listed twice; merge the entries"));
    }
    rec->party_slot[slot] = static_cast<int16_t>(rec->parties.size());
    PartyRecord pr;
    pr.status = &ps;
    pr.side = i;
    pr.not_bound = ps.not_bound();
    if (ps.not_bound() && in.organisation().empty()) {
      return loc.Error({{"parties", i}, {"not_bound", -1}},
                       "only an organisation's act or agreement lists members it does not bind");
    }
    if (ps.not_bound() && (!ps.consent().empty() || !ps.entry_into_force().empty())) {
      return loc.Error({{"parties", i}, {"not_bound", -1}},
                       absl::StrCat(ps.party(), ": a member that is not bound has no consent or "
                                                "entry into force; remove one or the other"));
    }
    for (int t = 0; t < ps.territories_size(); ++t) {
      const v1::TerritorialScope& ts = ps.territories(t);
      if (!IsPartyCode(ts.territory())) {
        return loc.Error({{"parties", i}, {"territories", t}, {"territory", -1}},
                         absl::StrCat("'", ts.territory(), "' is not an ISO 3166-1 alpha-2 code"));
      }
      TerritoryRecord tr{&ts};
      COMITY_ASSIGN_OR_RETURN(tr.from, DateField(loc, {{"parties", i}, {"territories", t}, {"from", -1}},
                                                 ts.from()));
      COMITY_ASSIGN_OR_RETURN(tr.until, DateField(loc, {{"parties", i}, {"territories", t}, {"until", -1}},
                                                  ts.until()));
      if (tr.from != kNever && tr.until != kNever && tr.until <= tr.from) {
        return loc.Error({{"parties", i}, {"territories", t}, {"until", -1}},
                         "is not after from");
      }
      if (!ts.basis().empty()) {
        COMITY_RETURN_IF_ERROR(
            check_ref({{"parties", i}, {"territories", t}, {"basis", -1}}, ts.basis()));
      }
      pr.territories.push_back(tr);
    }
    COMITY_ASSIGN_OR_RETURN(pr.signed_on, DateField(loc, {{"parties", i}, {"signed", -1}}, ps.signed_()));
    COMITY_ASSIGN_OR_RETURN(pr.consent, DateField(loc, {{"parties", i}, {"consent", -1}}, ps.consent()));
    COMITY_ASSIGN_OR_RETURN(pr.in_force, DateField(loc, {{"parties", i}, {"entry_into_force", -1}},
                                                   ps.entry_into_force()));
    COMITY_ASSIGN_OR_RETURN(pr.bound_until,
                            DateField(loc, {{"parties", i}, {"denunciation_effective", -1}},
                                      ps.denunciation_effective()));
    COMITY_ASSIGN_OR_RETURN(pr.party_by,
                            DateField(loc, {{"parties", i}, {"party_by", -1}}, ps.party_by()));
    if (pr.party_by != kNever && (pr.consent != kNever || pr.in_force != kNever)) {
      return loc.Error({{"parties", i}, {"party_by", -1}},
                       absl::StrCat(ps.party(), ": party_by is only for a party whose consent and "
                                                "entry into force were not seen; remove it or "
                                                "the dates"));
    }
    if (pr.party_by != kNever && pr.signed_on != kNever && pr.party_by < pr.signed_on) {
      return loc.Error({{"parties", i}, {"party_by", -1}},
                       absl::StrCat(ps.party(), ": party_by ", ps.party_by(),
                                    " is before signature ", ps.signed_(), "; fix one of them"));
    }
    if (pr.signed_on != kNever && pr.consent != kNever && pr.consent < pr.signed_on) {
      return loc.Error({{"parties", i}, {"consent", -1}},
                       absl::StrCat(ps.party(), ": consent ", ps.consent(),
                                    " is before signature ", ps.signed_(), "; fix one of them"));
    }
    if (pr.in_force != kNever && in.kind() != v1::ORGANISATION_MEMBERSHIP) {
      Day earliest = pr.consent != kNever ? pr.consent : pr.signed_on;
      if (earliest == kNever || pr.in_force < earliest) {
        return loc.Error({{"parties", i}, {"entry_into_force", -1}},
                         absl::StrCat(ps.party(), ": entry into force ", ps.entry_into_force(),
                                      " needs an earlier consent (or, for a bilateral treaty, "
                                      "signature); add it or fix the date"));
      }
    }
    if (in.kind() == v1::POLITICAL_DECLARATION && pr.signed_on == kNever) {
      return loc.Error({{"parties", i}, {"signed", -1}},
                       "an endorser of a political declaration needs the date it endorsed it");
    }
    for (int kind = 0; kind < 2; ++kind) {
      const auto& list = kind == 0 ? ps.reservations() : ps.declarations();
      const auto& allowed = kind == 0 ? allowed_res : allowed_decl;
      const char* field = kind == 0 ? "reservations" : "declarations";
      for (int r = 0; r < list.size(); ++r) {
        const v1::PartyReservation& pres = list[r];
        auto it = allowed.find(pres.id());
        if (it == allowed.end()) {
          std::vector<std::string> ids;
          for (const auto& [id, a] : allowed) ids.push_back(id);
          return loc.Error(
              {{"parties", i}, {field, r}, {"id", -1}},
              absl::StrCat(ps.party(), ": '", pres.id(), "' is not among the ", field, " ",
                           in.id(), " allows (", ids.empty() ? "none" : absl::StrJoin(ids, ", "),
                           "); use one of them or remove it"));
        }
        HeldReservation held{&pres, it->second};
        COMITY_ASSIGN_OR_RETURN(held.from,
                                DateField(loc, {{"parties", i}, {field, r}, {"made", -1}}, pres.made()));
        COMITY_ASSIGN_OR_RETURN(held.until, DateField(loc, {{"parties", i}, {field, r}, {"withdrawn", -1}},
                                                      pres.withdrawn()));
        if (held.from == kNever) {
          return loc.Error({{"parties", i}, {field, r}, {"made", -1}},
                           "is required: from when it has effect");
        }
        if (held.until != kNever && held.until <= held.from) {
          return loc.Error({{"parties", i}, {field, r}, {"withdrawn", -1}},
                           absl::StrCat(ps.party(), ": withdrawn ", pres.withdrawn(),
                                        " is not after made ", pres.made()));
        }
        (kind == 0 ? pr.reservations : pr.declarations).push_back(held);
      }
    }
    if (pr.consent != kNever) consents.push_back(pr.consent);
    rec->parties.push_back(std::move(pr));
  }

  // Entry into force: general, then per party.
  COMITY_ASSIGN_OR_RETURN(rec->general_in_force, DateField(loc, {{"in_force", -1}}, in.in_force()));
  rec->consents = static_cast<int>(consents.size());
  const v1::EntryIntoForceRule& rule = in.entry_into_force_rule();
  // Bounded so that a consent date plus the delay stays a valid Day (the
  // sum is int32 arithmetic in EffectiveFrom; an unbounded uint32 overflowed).
  if (rule.days_after() > kMaxEntryIntoForceDays) {
    return loc.Error({{"entry_into_force_rule", -1}, {"days_after", -1}},
                     absl::StrCat(rule.days_after(), " is more than ", kMaxEntryIntoForceDays,
                                  " days (100 years); give the treaty's real delay"));
  }
  if (rule.months_after() > kMaxEntryIntoForceMonths) {
    return loc.Error({{"entry_into_force_rule", -1}, {"months_after", -1}},
                     absl::StrCat(rule.months_after(), " is more than ",
                                  kMaxEntryIntoForceMonths,
                                  " months (100 years); give the treaty's real delay"));
  }
  if (rec->general_in_force == kNever && rule.min_consents() > 0 &&
      consents.size() >= rule.min_consents()) {
    std::sort(consents.begin(), consents.end());
    rec->general_in_force = EffectiveFrom(rule, consents[rule.min_consents() - 1]);
  }
  if (rule.later_days_after() > kMaxEntryIntoForceDays) {
    return loc.Error({{"entry_into_force_rule", -1}, {"later_days_after", -1}},
                     absl::StrCat(rule.later_days_after(), " is more than ",
                                  kMaxEntryIntoForceDays, " days"));
  }
  // The consent that brought general entry into force, if the rule did.
  Day deciding_consent = kNever;
  if (rule.min_consents() > 0 && consents.size() >= rule.min_consents()) {
    std::sort(consents.begin(), consents.end());
    deciding_consent = consents[rule.min_consents() - 1];
  }
  for (size_t i = 0; i < rec->parties.size(); ++i) {
    PartyRecord& pr = rec->parties[i];
    if (in.kind() == v1::POLITICAL_DECLARATION) continue;
    if (!RuleComputes(rule) || pr.consent == kNever) continue;
    Day computed = kNever;
    if (rec->general_in_force != kNever) {
      Day own = EffectiveFrom(rule, pr.consent);
      if (rule.later_days_after() > 0 && deciding_consent != kNever &&
          pr.consent > deciding_consent) {
        own = pr.consent + static_cast<Day>(rule.later_days_after());
      }
      computed = std::max(rec->general_in_force, own);
    }
    if (pr.in_force == kNever) {
      pr.in_force = computed;
    } else if (pr.in_force != computed) {
      return loc.Error(
          {{"parties", static_cast<int>(i)}, {"entry_into_force", -1}},
          absl::StrCat(pr.status->party(), ": entry into force ", pr.status->entry_into_force(),
                       " does not follow from consent ", pr.status->consent(), " under ",
                       rule.basis().empty() ? "the instrument's rule" : rule.basis(),
                       computed == kNever ? " (the instrument is not in force)"
                                          : absl::StrCat(" (expected ", FormatDay(computed), ")"),
                       "; fix one of the dates"));
    }
  }
  for (size_t i = 0; i < rec->parties.size(); ++i) {
    const PartyRecord& pr = rec->parties[i];
    if (pr.bound_until != kNever && (pr.in_force == kNever || pr.bound_until <= pr.in_force)) {
      return loc.Error({{"parties", static_cast<int>(i)}, {"denunciation_effective", -1}},
                       absl::StrCat(pr.status->party(), ": a denunciation must take effect "
                                                        "after entry into force (",
                                    FormatDay(pr.in_force), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Day> ParseDay(absl::string_view text) {
  absl::CivilDay day;
  if (text.size() != 10 || !absl::ParseCivilTime(text, &day) ||
      absl::FormatCivilTime(day) != text) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a date in the form YYYY-MM-DD"));
  }
  return ToDay(day);
}

Day ToDay(absl::CivilDay day) {
  return static_cast<Day>(day - absl::CivilDay(1970, 1, 1));
}

std::string FormatDay(Day day) {
  if (day == kNever) return "never";
  return absl::FormatCivilTime(absl::CivilDay(1970, 1, 1) + day);
}

int PartySlot(absl::string_view code) {
  if (code.size() != 2 || !absl::ascii_isupper(code[0]) || !absl::ascii_isupper(code[1])) {
    return -1;
  }
  return (code[0] - 'A') * 26 + (code[1] - 'A');
}

bool PartyRecord::BoundOn(Day day, bool political) const {
  if (not_bound) return false;
  if (political) return signed_on != kNever && signed_on <= day;
  if (in_force == kNever && consent == kNever && party_by != kNever) {
    return party_by <= day && day < bound_until;
  }
  return in_force != kNever && in_force <= day && day < bound_until;
}

bool PartyRecord::StandingUnknownOn(Day day, Day general_in_force) const {
  if (not_bound) return false;
  if (in_force != kNever || consent != kNever) return false;
  if (general_in_force == kNever || day < general_in_force) return false;
  if (signed_on != kNever && day < signed_on) return false;
  if (party_by != kNever) return day < party_by;
  return signed_on == kNever;
}

const PartyRecord* InstrumentRecord::Party(absl::string_view code) const {
  int slot = PartySlot(code);
  if (slot < 0 || party_slot[slot] < 0) return nullptr;
  return &parties[party_slot[slot]];
}

absl::StatusOr<std::unique_ptr<TreatyLibrary>> TreatyLibrary::LoadDirectory(
    const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "treaty library ", dir, ": cannot open directory; pass the folder that holds the "
                                "*.textproto instrument files (e.g. deploy/treaties)"));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".textproto")) names.push_back(name);
  }
  ::closedir(d);
  if (names.empty()) {
    return absl::NotFoundError(
        absl::StrCat("treaty library ", dir, ": no *.textproto instrument files"));
  }
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir, "/", name);
    COMITY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    files.emplace_back(path, std::move(text));
  }
  return FromFiles(std::move(files));
}

absl::StatusOr<std::unique_ptr<TreatyLibrary>> TreatyLibrary::FromFiles(
    std::vector<std::pair<std::string, std::string>> files) {
  std::sort(files.begin(), files.end());
  std::unique_ptr<TreatyLibrary> lib(new TreatyLibrary());
  std::string hash_input;
  std::map<std::string, std::string> ids;  // id -> file
  for (const auto& [file, text] : files) {
    // The version covers names (without directories) and contents.
    size_t slash = file.rfind('/');
    std::string base = slash == std::string::npos ? file : file.substr(slash + 1);
    absl::StrAppend(&hash_input, base, std::string(1, '\0'), text.size(), std::string(1, '\0'),
                    text);
    auto rec = std::make_unique<InstrumentRecord>();
    rec->file = file;
    TextFormat::Parser parser;
    TextFormat::ParseInfoTree tree;
    FirstError errors;
    parser.RecordErrorsTo(&errors);
    parser.WriteLocationsTo(&tree);
    if (!parser.ParseFromString(text, &rec->proto)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ":", errors.line_ + 1, ": ", errors.message_,
                       " (each file holds one comity.v1.Instrument in protobuf text format; "
                       "see docs/treaties.md)"));
    }
    Locator loc(file, &tree);
    COMITY_RETURN_IF_ERROR(Validate(rec.get(), loc));
    auto [it, inserted] = ids.emplace(rec->proto.id(), file);
    if (!inserted) {
      return loc.Error({{"id", -1}}, absl::StrCat("instrument id ", rec->proto.id(),
                                                  " is already used by ", it->second,
                                                  "; ids must be unique"));
    }
    lib->instruments_.push_back(std::move(rec));
  }
  COMITY_RETURN_IF_ERROR(lib->ResolveOrganisations());
  for (const auto& rec : lib->instruments_) {
    for (const PartyRecord& p : rec->parties) {
      lib->by_party_[PartySlot(p.status->party())].push_back(rec.get());
    }
  }
  lib->version_ = HexEncode(Sha256(hash_input));
  return lib;
}

const InstrumentRecord* TreatyLibrary::Find(absl::string_view id) const {
  for (const auto& rec : instruments_) {
    if (rec->proto.id() == id) return rec.get();
  }
  return nullptr;
}

const std::vector<const InstrumentRecord*>& TreatyLibrary::InstrumentsOf(
    absl::string_view party) const {
  static const std::vector<const InstrumentRecord*> kEmpty;
  int slot = PartySlot(party);
  return slot < 0 ? kEmpty : by_party_[slot];
}

std::vector<std::string> TreatyLibrary::Parties() const {
  std::vector<std::string> out;
  for (int slot = 0; slot < 26 * 26; ++slot) {
    if (!by_party_[slot].empty()) {
      std::string code = {static_cast<char>('A' + slot / 26), static_cast<char>('A' + slot % 26)};
      if (!IsOrganisation(code)) out.push_back(std::move(code));
    }
  }
  return out;
}

bool TreatyLibrary::IsOrganisation(absl::string_view code) const {
  const InstrumentRecord* rec = Find(code);
  return rec != nullptr && rec->proto.kind() == v1::ORGANISATION_MEMBERSHIP;
}

}  // namespace comity
