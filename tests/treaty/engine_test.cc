// Every rule of the engine, on a small library written here so that each
// test says exactly which facts it relies on.
#include "server/treaty/engine.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A Budapest-like convention: Art 24 extradition, 25 MA (general procedure
// Art 27), 29 preservation (specific, 29(4) reservation), 34 interception.
constexpr char kConvention[] = R"pb(
id: "CONV"
title: "Test convention"
kind: MULTILATERAL_TREATY
in_force: "2004-07-01"
entry_into_force_rule { min_consents: 2 months_after: 3 first_day_of_following_month: true basis: "Art 36(3)" }
articles { number: "24" title: "Extradition" }
articles { number: "25" title: "Mutual assistance" }
articles { number: "27" title: "Procedure absent an MLAT" }
articles { number: "29" title: "Preservation" }
articles { number: "34" title: "Interception" }
articles { number: "36" title: "Entry into force" }
articles { number: "42" title: "Reservations" }
general_procedure {
  basis: "Art 27(1)"
  refusal_grounds: [POLITICAL_OFFENCE, ESSENTIAL_INTERESTS]
  duties { basis: "Art 27(7)" text: "give reasons" }
}
provisions {
  assistance_type: EXTRADITION obligation: BINDING basis: "Art 24(1)(a)"
  scope: CONVENTION_OFFENCES dual_criminality_required: true dual_criminality_mandatory: true
  min_penalty_months: 12 min_penalty_both_parties: true
  refusal_grounds: [DOMESTIC_LAW, NATIONALITY]
  duties { basis: "Art 24(6)" text: "prosecute if refused on nationality" }
}
provisions {
  assistance_type: MUTUAL_ASSISTANCE obligation: BINDING basis: "Art 25(1)"
  refusal_grounds: [DOMESTIC_LAW, FISCAL_OFFENCE, DUAL_CRIMINALITY] dual_criminality_required: true
  excluded_for_convention_offences: FISCAL_OFFENCE excluded_basis: "Art 25(4)"
  uses_general_procedure: true
}
provisions {
  assistance_type: PRESERVATION obligation: BINDING basis: ["Art 29(1)", "Art 29(3)"] specific: true
  refusal_grounds: [POLITICAL_OFFENCE, ESSENTIAL_INTERESTS]
  deadline_days: 60 deadline_basis: "Art 29(7)"
  required_contents { field: "particulars.requesting_authority" basis: "Art 29(2)(a)" }
  required_contents { field: "particulars.intends_mutual_assistance_request" basis: "Art 29(2)(f)" }
}
provisions { assistance_type: INTERCEPTION obligation: DISCRETIONARY basis: "Art 34" uses_general_procedure: true }
allowed_reservations {
  id: "Art 29(4)"
  effect { assistance_types: PRESERVATION adds_refusal_grounds: DUAL_CRIMINALITY only_for_non_convention_offences: true }
}
allowed_reservations { id: "Art 24(1)" }
parties { party: "FR" signed: "2001-11-23" consent: "2006-01-10" entry_into_force: "2006-05-01" }
parties { party: "JP" consent: "2012-07-03"
  reservations { id: "Art 29(4)" made: "2012-11-01" } }
parties { party: "CZ" consent: "2013-08-22"
  reservations { id: "Art 29(4)" made: "2013-12-01" withdrawn: "2019-07-05" } }
parties { party: "US" consent: "2006-09-29" }
parties { party: "UA" consent: "2006-03-10" denunciation_effective: "2020-01-01" }
parties { party: "BR" signed: "2021-01-01" }
)pb";

constexpr char kMlat[] = R"pb(
id: "FR-US-MLAT"
kind: BILATERAL_TREATY
governs_procedure: true
articles { number: "1" } articles { number: "6" }
provisions { assistance_type: MUTUAL_ASSISTANCE obligation: BINDING basis: "Art 1" refusal_grounds: [ESSENTIAL_INTERESTS] }
provisions { assistance_type: PRESERVATION obligation: DISCRETIONARY basis: "Art 6" }
provisions { assistance_type: INTERCEPTION obligation: DISCRETIONARY basis: "Art 6" }
parties { party: "FR" signed: "1998-12-10" entry_into_force: "2001-12-01" }
parties { party: "US" signed: "1998-12-10" entry_into_force: "2001-12-01" }
)pb";

constexpr char kExtraditionTreaty[] = R"pb(
id: "FR-JP-EXT"
kind: BILATERAL_TREATY
governs_procedure: true
articles { number: "2" }
provisions { assistance_type: EXTRADITION obligation: BINDING basis: "Art 2" scope: ANY_OFFENCE
  min_penalty_months: 24 min_penalty_both_parties: true dual_criminality_required: true
  refusal_grounds: [NATIONALITY, POLITICAL_OFFENCE] }
parties { party: "FR" signed: "2020-01-01" entry_into_force: "2021-01-01" }
parties { party: "JP" signed: "2020-01-01" entry_into_force: "2021-01-01" }
)pb";

constexpr char kDeclaration[] = R"pb(
id: "DECL"
kind: POLITICAL_DECLARATION
parties { party: "FR" signed: "2015-12-30" }
parties { party: "RU" signed: "2015-12-30" }
parties { party: "JP" signed: "2015-12-30" }
)pb";

std::unique_ptr<TreatyLibrary> Library(std::vector<std::pair<std::string, std::string>> files = {
                                           {"conv.textproto", kConvention},
                                           {"mlat.textproto", kMlat},
                                           {"decl.textproto", kDeclaration}}) {
  auto lib = TreatyLibrary::FromFiles(std::move(files));
  EXPECT_THAT(lib, IsOk());
  return lib.ok() ? *std::move(lib) : nullptr;
}

AssessmentQuery Query(const std::string& from, const std::string& to, v1::AssistanceType type,
                      v1::OffenceCategory offence = v1::DATA_INTERFERENCE,
                      absl::CivilDay date = absl::CivilDay(2024, 5, 1)) {
  AssessmentQuery q;
  q.requesting_party = from;
  q.requested_party = to;
  q.date = date;
  q.assistance_type = type;
  q.offence = offence;
  return q;
}

v1::Assessment AssessOk(const TreatyLibrary& lib, const AssessmentQuery& q) {
  auto a = Assess(lib, q);
  EXPECT_THAT(a, IsOk());
  return a.ok() ? *a : v1::Assessment();
}

std::vector<v1::RefusalGround> Grounds(const v1::Assessment& a) {
  std::vector<v1::RefusalGround> g;
  for (int x : a.refusal_grounds()) g.push_back(static_cast<v1::RefusalGround>(x));
  return g;
}

TEST(EngineTest, PreservationIsBindingAndTheReservationSkipsConventionOffences) {
  auto lib = Library();
  v1::Assessment a = AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION));
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_EQ(a.instrument(), "CONV");
  EXPECT_THAT(a.basis(), ElementsAre("CONV Art 29(1)", "CONV Art 29(3)"));
  EXPECT_THAT(Grounds(a), ElementsAre(v1::POLITICAL_OFFENCE, v1::ESSENTIAL_INTERESTS));
  EXPECT_EQ(a.deadline_days(), 60u);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("reservation under CONV Art 29(4) does not apply")));
  EXPECT_EQ(a.library_version(), lib->version());
}

TEST(EngineTest, ReservationOpensDualCriminalityForOtherOffences) {
  auto lib = Library();
  v1::Assessment a = AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION, v1::OTHER));
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_THAT(Grounds(a), Contains(v1::DUAL_CRIMINALITY));
  EXPECT_THAT(a.basis(), Contains("CONV Art 29(4)"));
  // Stated dual criminality closes it again.
  AssessmentQuery q = Query("FR", "JP", v1::PRESERVATION, v1::OTHER);
  q.dual_criminality = v1::DUAL_CRIMINALITY_MET;
  EXPECT_THAT(Grounds(AssessOk(*lib, q)), Not(Contains(v1::DUAL_CRIMINALITY)));
  // A party without the reservation: no dual criminality for preservation.
  EXPECT_THAT(Grounds(AssessOk(*lib, Query("JP", "FR", v1::PRESERVATION, v1::OTHER))),
              Not(Contains(v1::DUAL_CRIMINALITY)));
}

TEST(EngineTest, ReservationsCountOnlyWhileHeld) {
  auto lib = Library();
  auto during = Query("FR", "CZ", v1::PRESERVATION, v1::OTHER, absl::CivilDay(2015, 1, 1));
  EXPECT_THAT(Grounds(AssessOk(*lib, during)), Contains(v1::DUAL_CRIMINALITY));
  auto after = Query("FR", "CZ", v1::PRESERVATION, v1::OTHER, absl::CivilDay(2019, 7, 5));
  v1::Assessment a = AssessOk(*lib, after);
  EXPECT_THAT(Grounds(a), Not(Contains(v1::DUAL_CRIMINALITY)));
  EXPECT_THAT(a.notes(), Contains(HasSubstr("not in effect on 2019-07-05")));
}

TEST(EngineTest, EntryIntoForceIsComputedFromConsent) {
  auto lib = Library();
  // JP deposited 2012-07-03: in force 2012-11-01 (three months, then the
  // first day of the following month).
  EXPECT_EQ(AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                            absl::CivilDay(2012, 10, 31)))
                .obligation(),
            v1::NOT_COVERED);  // Nor is the declaration endorsed yet (2015).
  v1::Assessment before = AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                                          absl::CivilDay(2012, 10, 31)));
  EXPECT_THAT(before.notes(), Contains(HasSubstr("enters into force for JP only on 2012-11-01")));
  EXPECT_EQ(AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                            absl::CivilDay(2012, 11, 1)))
                .obligation(),
            v1::BINDING);
  const PartyRecord* jp = lib->Find("CONV")->Party("JP");
  EXPECT_EQ(FormatDay(jp->in_force), "2012-11-01");
  // Early consents take effect with the convention itself.
  EXPECT_EQ(FormatDay(lib->Find("CONV")->Party("FR")->in_force), "2006-05-01");
}

TEST(EngineTest, DenunciationEndsTheObligation) {
  auto lib = Library();
  EXPECT_EQ(AssessOk(*lib, Query("FR", "UA", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                            absl::CivilDay(2019, 12, 31)))
                .obligation(),
            v1::BINDING);
  v1::Assessment a = AssessOk(*lib, Query("FR", "UA", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                                     absl::CivilDay(2020, 1, 1)));
  EXPECT_EQ(a.obligation(), v1::NOT_COVERED);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("denunciation took effect on 2020-01-01")));
}

TEST(EngineTest, SignatureAloneDoesNotBind) {
  v1::Assessment a = AssessOk(*Library(), Query("FR", "BR", v1::PRESERVATION));
  EXPECT_EQ(a.obligation(), v1::NOT_COVERED);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("signature alone does not bind")));
}

TEST(EngineTest, InterceptionIsDiscretionary) {
  v1::Assessment a = AssessOk(*Library(), Query("FR", "JP", v1::INTERCEPTION));
  EXPECT_EQ(a.obligation(), v1::DISCRETIONARY);
  EXPECT_THAT(a.basis(), Contains("CONV Art 34"));
}

TEST(EngineTest, PoliticalDeclarationAloneIsVoluntary) {
  v1::Assessment a = AssessOk(*Library(), Query("FR", "RU", v1::PRESERVATION));
  EXPECT_EQ(a.obligation(), v1::VOLUNTARY);
  EXPECT_EQ(a.instrument(), "DECL");
  EXPECT_THAT(a.refusal_grounds(), IsEmpty());
  // Nothing shared at all.
  EXPECT_EQ(AssessOk(*Library(), Query("US", "RU", v1::PRESERVATION)).obligation(),
            v1::NOT_COVERED);
}

TEST(EngineTest, MissingArt29Contents) {
  auto lib = Library();
  v1::RequestBody body;
  body.mutable_particulars()->set_requesting_authority("Parquet de Paris");
  AssessmentQuery q = Query("FR", "JP", v1::PRESERVATION);
  q.request = &body;
  v1::Assessment a = AssessOk(*lib, q);
  EXPECT_EQ(a.obligation(), v1::INVALID);
  EXPECT_THAT(a.basis(), ElementsAre("CONV Art 29(2)(f)"));
  body.mutable_particulars()->set_intends_mutual_assistance_request(true);
  EXPECT_EQ(AssessOk(*lib, q).obligation(), v1::BINDING);
}

TEST(EngineTest, GeneralProcedureAppliesOnlyWithoutAnMlat) {
  auto lib = Library();
  // FR-JP: no MLAT, so Art 27 grounds and duties apply; fiscal excluded
  // for a convention offence.
  v1::Assessment a = AssessOk(*lib, Query("FR", "JP", v1::MUTUAL_ASSISTANCE));
  EXPECT_EQ(a.instrument(), "CONV");
  EXPECT_THAT(Grounds(a), ElementsAre(v1::POLITICAL_OFFENCE, v1::ESSENTIAL_INTERESTS,
                                      v1::DUAL_CRIMINALITY, v1::DOMESTIC_LAW));
  EXPECT_THAT(a.basis(), Contains("CONV Art 27(1)"));
  EXPECT_THAT(a.duties(), Contains(HasSubstr("CONV Art 27(7)")));
  EXPECT_THAT(a.notes(), Contains(HasSubstr("excludes refusal on FISCAL_OFFENCE")));
  // An OTHER offence keeps the fiscal ground.
  EXPECT_THAT(Grounds(AssessOk(*lib, Query("FR", "JP", v1::MUTUAL_ASSISTANCE, v1::OTHER))),
              Contains(v1::FISCAL_OFFENCE));
}

TEST(EngineTest, BilateralTreatyGovernsProcedureAndConventionIsAFloor) {
  auto lib = Library();
  // MA between FR and US: the MLAT decides, with its grounds.
  v1::Assessment ma = AssessOk(*lib, Query("FR", "US", v1::MUTUAL_ASSISTANCE));
  EXPECT_EQ(ma.instrument(), "FR-US-MLAT");
  EXPECT_EQ(ma.obligation(), v1::BINDING);
  EXPECT_THAT(Grounds(ma), ElementsAre(v1::ESSENTIAL_INTERESTS));
  EXPECT_THAT(ma.also_applicable(), Contains("CONV"));
  // Preservation: the convention's article is specific and still decides.
  v1::Assessment pres = AssessOk(*lib, Query("FR", "US", v1::PRESERVATION));
  EXPECT_EQ(pres.instrument(), "CONV");
  EXPECT_EQ(pres.obligation(), v1::BINDING);
  // Interception: the MLAT governs; both are discretionary.
  v1::Assessment icpt = AssessOk(*lib, Query("FR", "US", v1::INTERCEPTION));
  EXPECT_EQ(icpt.instrument(), "FR-US-MLAT");
  EXPECT_EQ(icpt.obligation(), v1::DISCRETIONARY);
  EXPECT_THAT(icpt.basis(), Not(Contains("CONV Art 27(1)")));
}

TEST(EngineTest, FloorRaisesAWeakerBilateralObligation) {
  std::string weak = absl::StrReplaceAll(kMlat, {{"assistance_type: MUTUAL_ASSISTANCE obligation: BINDING",
                                                  "assistance_type: MUTUAL_ASSISTANCE obligation: DISCRETIONARY"}});
  auto lib = Library({{"conv.textproto", kConvention}, {"mlat.textproto", weak}});
  v1::Assessment a = AssessOk(*lib, Query("FR", "US", v1::MUTUAL_ASSISTANCE));
  EXPECT_EQ(a.instrument(), "FR-US-MLAT");
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_THAT(a.basis(), Contains("CONV Art 25(1)"));
}

TEST(EngineTest, ExtraditionThresholdAndScope) {
  auto lib = Library();
  AssessmentQuery q = Query("FR", "JP", v1::EXTRADITION);
  q.penalty_months = 60;
  q.requested_penalty_months = 36;
  v1::Assessment ok = AssessOk(*lib, q);
  EXPECT_EQ(ok.obligation(), v1::BINDING);
  EXPECT_THAT(Grounds(ok), ElementsAre(v1::DUAL_CRIMINALITY, v1::NATIONALITY, v1::DOMESTIC_LAW));
  EXPECT_THAT(ok.duties(), Contains(HasSubstr("CONV Art 24(6)")));

  q.requested_penalty_months = 6;  // Below a year in JP.
  v1::Assessment low = AssessOk(*lib, q);
  EXPECT_EQ(low.obligation(), v1::NOT_COVERED);
  EXPECT_THAT(low.basis(), ElementsAre("CONV Art 24(1)(a)"));

  AssessmentQuery other = Query("FR", "JP", v1::EXTRADITION, v1::OTHER);
  other.penalty_months = 60;
  EXPECT_EQ(AssessOk(*lib, other).obligation(), v1::NOT_COVERED);

  AssessmentQuery unknown = Query("FR", "JP", v1::EXTRADITION);
  EXPECT_THAT(AssessOk(*lib, unknown).notes(), Contains(HasSubstr("could not be confirmed")));

  AssessmentQuery no_dc = Query("FR", "JP", v1::EXTRADITION);
  no_dc.dual_criminality = v1::DUAL_CRIMINALITY_NOT_MET;
  EXPECT_EQ(AssessOk(*lib, no_dc).obligation(), v1::NOT_COVERED);
}

TEST(EngineTest, ExtraditionTreatyThresholdPrevails) {
  auto lib = Library({{"conv.textproto", kConvention}, {"ext.textproto", kExtraditionTreaty}});
  AssessmentQuery q = Query("FR", "JP", v1::EXTRADITION);
  q.penalty_months = 18;  // Enough for the convention (12), not for the treaty (24).
  q.requested_penalty_months = 18;
  v1::Assessment a = AssessOk(*lib, q);
  EXPECT_EQ(a.instrument(), "CONV");  // The treaty drops out; the convention still binds.
  q.penalty_months = 30;
  q.requested_penalty_months = 30;
  v1::Assessment b = AssessOk(*lib, q);
  EXPECT_EQ(b.instrument(), "FR-JP-EXT");
  EXPECT_THAT(Grounds(b), Contains(v1::POLITICAL_OFFENCE));
  // The treaty covers an OTHER offence the convention does not.
  AssessmentQuery other = Query("FR", "JP", v1::EXTRADITION, v1::OTHER);
  other.penalty_months = 30;
  other.requested_penalty_months = 30;
  EXPECT_EQ(AssessOk(*lib, other).instrument(), "FR-JP-EXT");
}

TEST(EngineTest, BadQueriesAreErrors) {
  auto lib = Library();
  EXPECT_THAT(Assess(*lib, Query("FR", "FR", v1::PRESERVATION)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Assess(*lib, Query("XX", "FR", v1::PRESERVATION)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Assess(*lib, Query("FR", "JP", v1::ASSISTANCE_TYPE_UNSPECIFIED)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Issue 14: standing the library does not know, and notes dated. ---

TEST(EngineTest, StateAbsentFromTheLibraryIsUnknownNotNotCovered) {
  // IN is a valid code that no instrument lists (source: kConvention, kMlat, kDeclaration).
  v1::Assessment a = AssessOk(*Library(), Query("FR", "IN", v1::PRESERVATION));
  EXPECT_EQ(a.obligation(), v1::UNKNOWN_PARTY);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("IN is not in the treaty library")));
  // A code that is not ISO 3166-1 is an error naming it.
  EXPECT_THAT(Assess(*Library(), Query("FR", "ZZ", v1::PRESERVATION)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'ZZ' is not an ISO")));
}

TEST(EngineTest, PartyKnownOnlyFromADatedListIsBoundFromThatDate) {
  const std::string conv = absl::StrReplaceAll(
      kConvention, {{"parties { party: \"BR\" signed: \"2021-01-01\" }",
                     "parties { party: \"NO\" party_by: \"2011-06-01\" source: \"list of 2011\" "
                     "unverified: true } parties { party: \"PL\" unverified: true }"}});
  auto lib = Library({{"conv.textproto", conv}});
  v1::Assessment before =
      AssessOk(*lib, Query("FR", "NO", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                           absl::CivilDay(2010, 1, 1)));
  EXPECT_EQ(before.obligation(), v1::UNKNOWN_PARTY);
  EXPECT_THAT(before.notes(), Contains(HasSubstr("cannot say whether it is bound on 2010-01-01")));
  v1::Assessment after =
      AssessOk(*lib, Query("FR", "NO", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                           absl::CivilDay(2011, 6, 1)));
  EXPECT_EQ(after.obligation(), v1::BINDING);
  EXPECT_THAT(after.notes(), Contains(HasSubstr("NO's status is unverified (list of 2011)")));
  // Before the convention itself was in force, the answer is known: not bound.
  EXPECT_EQ(AssessOk(*lib, Query("FR", "NO", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                                 absl::CivilDay(2003, 1, 1)))
                .obligation(),
            v1::NOT_COVERED);
  // An entry with no dates at all: never a conclusion.
  EXPECT_EQ(AssessOk(*lib, Query("FR", "PL", v1::PRESERVATION)).obligation(),
            v1::UNKNOWN_PARTY);
}

TEST(EngineTest, NotesCiteNothingAfterTheDate) {
  auto lib = Library();
  // JP's consent (2012-07-03) and reservation (2012-11-01) are after 2010.
  v1::Assessment a = AssessOk(*lib, Query("FR", "JP", v1::PRESERVATION, v1::OTHER,
                                          absl::CivilDay(2010, 1, 1)));
  for (const std::string& n : a.notes()) {
    EXPECT_THAT(n, Not(HasSubstr("2012"))) << n;
    EXPECT_THAT(n, Not(HasSubstr("2015"))) << n;  // DECL's endorsements.
  }
  // BR signs in 2021: a 2020 assessment does not mention the signature.
  v1::Assessment br = AssessOk(*lib, Query("FR", "BR", v1::PRESERVATION, v1::DATA_INTERFERENCE,
                                           absl::CivilDay(2020, 1, 1)));
  EXPECT_EQ(br.obligation(), v1::NOT_COVERED);
  EXPECT_THAT(br.notes(), Contains(HasSubstr("BR had neither signed nor consented by 2020-01-01")));
  for (const std::string& n : br.notes()) EXPECT_THAT(n, Not(HasSubstr("2021"))) << n;
  // After the signature: "signed on ..., not ratified".
  EXPECT_THAT(AssessOk(*lib, Query("FR", "BR", v1::PRESERVATION)).notes(),
              Contains(HasSubstr("BR signed on 2021-01-01, not ratified by 2024-05-01")));
}

// --- Library validation: each error names the file, the line and the fix. ---

struct BadCase {
  std::string name;
  std::string from, to;
  std::string message;
};

TEST(LibraryTest, InvalidFilesAreRejectedWithFileLineAndFix) {
  const std::string base = kConvention;
  const BadCase cases[] = {
      {"unknown party", "party: \"US\"", "party: \"XU\"", "conv.textproto:50: parties[3].party: 'XU'"},
      {"consent before signature", "signed: \"2001-11-23\" consent: \"2006-01-10\"",
       "signed: \"2007-11-23\" consent: \"2006-01-10\"", "consent 2006-01-10 is before signature"},
      {"entry into force not following the rule", "entry_into_force: \"2006-05-01\"",
       "entry_into_force: \"2006-06-01\"", "expected 2006-05-01"},
      {"disallowed reservation", "reservations { id: \"Art 29(4)\" made: \"2012-11-01\" }",
       "reservations { id: \"Art 29(9)\" made: \"2012-11-01\" }",
       "'Art 29(9)' is not among the reservations CONV allows (Art 24(1), Art 29(4))"},
      {"unknown article", "basis: \"Art 34\"", "basis: \"Art 99\"",
       "cites article 99, which CONV does not list"},
      {"withdrawn before made", "withdrawn: \"2019-07-05\"", "withdrawn: \"2010-07-05\"",
       "is not after made"},
      {"impossible date", "consent: \"2013-08-22\"", "consent: \"2013-02-30\"",
       "'2013-02-30' is not a date"},
      {"unknown request field", "particulars.requesting_authority", "particulars.nonsense",
       "is not a field of comity.v1.RequestBody"},
      {"syntax", "kind: MULTILATERAL_TREATY", "kind: MULTILATERAL_TREATY }", "conv.textproto:4:"},
      {"unknown enum", "obligation: DISCRETIONARY", "obligation: MAYBE", "MAYBE"},
      {"party_by with a consent", "parties { party: \"US\" consent: \"2006-09-29\" }",
       "parties { party: \"US\" consent: \"2006-09-29\" party_by: \"2011-06-01\" }",
       "party_by is only for a party whose consent and entry into force were not seen"},
      {"party_by before signature", "parties { party: \"BR\" signed: \"2021-01-01\" }",
       "parties { party: \"BR\" signed: \"2021-01-01\" party_by: \"2020-01-01\" }",
       "party_by 2020-01-01 is before signature"},
  };
  for (const BadCase& c : cases) {
    ASSERT_NE(base.find(c.from), std::string::npos) << c.name;
    std::string text = absl::StrReplaceAll(base, {{c.from, c.to}});
    EXPECT_THAT(TreatyLibrary::FromFiles({{"conv.textproto", text}}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.name;
  }
  EXPECT_THAT(TreatyLibrary::FromFiles({{"a.textproto", kMlat}, {"b.textproto", kMlat}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("already used by")));
  EXPECT_THAT(TreatyLibrary::FromFiles(
                  {{"m.textproto", absl::StrReplaceAll(kMlat, {{"parties { party: \"US\"", "parties { party: \"US\" } parties { party: \"DE\""}})}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly two parties")));
}

TEST(LibraryTest, MissingRepeatedFieldsStillGetALocation) {
  EXPECT_THAT(TreatyLibrary::FromFiles({{"m.textproto", "id: \"X\" kind: BILATERAL_TREATY"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.textproto: parties: a bilateral treaty has exactly two "
                                 "parties, this lists 0")));
  EXPECT_THAT(TreatyLibrary::FromFiles({{"m.textproto", "kind: BILATERAL_TREATY"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id: is required")));
}

TEST(LibraryTest, VersionIsTheContentHash) {
  auto a = Library();
  auto b = Library();
  EXPECT_EQ(a->version(), b->version());
  EXPECT_EQ(a->version().size(), 64u);
  auto c = Library({{"conv.textproto", std::string(kConvention) + "\n# comment\n"},
                    {"mlat.textproto", kMlat},
                    {"decl.textproto", kDeclaration}});
  EXPECT_NE(a->version(), c->version());
}

TEST(LibraryTest, NotYetInForceWithoutEnoughConsents) {
  std::string protocol = R"pb(
    id: "PROT" kind: MULTILATERAL_TREATY
    entry_into_force_rule { min_consents: 5 months_after: 3 first_day_of_following_month: true }
    articles { number: "7" }
    provisions { assistance_type: SUBSCRIBER_INFORMATION obligation: BINDING basis: "Art 7" }
    parties { party: "RS" consent: "2023-02-09" }
    parties { party: "JP" consent: "2023-08-10" }
  )pb";
  auto lib = Library({{"p.textproto", protocol}});
  EXPECT_EQ(lib->Find("PROT")->general_in_force, kNever);
  v1::Assessment a = AssessOk(*lib, Query("RS", "JP", v1::SUBSCRIBER_INFORMATION));
  EXPECT_EQ(a.obligation(), v1::NOT_COVERED);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("not in force on 2024-05-01 (2 of 5 consents")));
}


// ---------------------------------------------------------------------------
// The general layer (issue 14): an organisation and its members, an act that
// replaces an older convention, a supplement that amends its channels, an
// agreement of the organisation with a third state, territories, measures.
// ---------------------------------------------------------------------------

constexpr char kMembership[] = R"pb(
id: "EU"
kind: ORGANISATION_MEMBERSHIP
parties { party: "FR" entry_into_force: "1958-01-01" }
parties { party: "DK" entry_into_force: "1973-01-01"
  territories { territory: "FO" included: false } }
parties { party: "GB" entry_into_force: "1973-01-01" denunciation_effective: "2021-01-01" }
parties { party: "HR" entry_into_force: "2013-07-01" }
)pb";

constexpr char kAct[] = R"pb(
id: "ACT"
kind: ORGANISATION_ACT
organisation: "EU"
in_force: "2017-05-22"
governs_procedure: true
articles { number: "7" } articles { number: "11" } articles { number: "12" }
articles { number: "15" } articles { number: "34" }
channels { channel: DIRECT_JUDICIAL basis: "Art 7(1)" authority: "the executing authority" }
precedence { instrument: "OLD" effect: REPLACES basis: "Art 34(1)" assistance_types: STORED_DATA_ACCESS }
provisions {
  assistance_type: STORED_DATA_ACCESS obligation: BINDING basis: "Art 11"
  refusal_grounds: [FUNDAMENTAL_RIGHTS, DUAL_CRIMINALITY] dual_criminality_required: true
  dual_criminality_waived_for: ILLEGAL_ACCESS dual_criminality_waiver_min_months: 36
  dual_criminality_waiver_basis: "Art 11(1)(g)"
  postponement_grounds: PREJUDICE_TO_INVESTIGATION postponement_basis: "Art 15(1)(a)"
  deadline_days: 30 deadline_basis: "Art 12(3)"
}
parties { party: "EU" signed: "2014-04-03" entry_into_force: "2017-05-22" }
parties { party: "DK" not_bound: true notes: "opt-out" }
)pb";

constexpr char kOld[] = R"pb(
id: "OLD"
kind: MULTILATERAL_TREATY
in_force: "1962-06-12"
governs_procedure: true
articles { number: "3" } articles { number: "15" }
channels { channel: DIRECT_JUDICIAL min_urgency: URGENT basis: "Art 15(2)" }
channels { channel: CENTRAL_AUTHORITY basis: "Art 15(1)" authority: "the ministry of justice" }
provisions { assistance_type: STORED_DATA_ACCESS obligation: BINDING basis: "Art 3" refusal_grounds: [ESSENTIAL_INTERESTS] }
parties { party: "FR" signed: "1960-01-01" entry_into_force: "1967-05-21" }
parties { party: "DK" signed: "1960-01-01" entry_into_force: "1962-06-13"
  territories { territory: "FO" included: false basis: "Art 3" } }
parties { party: "GB" signed: "1960-01-01" entry_into_force: "1991-11-27" }
parties { party: "HR" signed: "1990-01-01" entry_into_force: "1999-08-05" }
)pb";

constexpr char kSupplement[] = R"pb(
id: "SUPP"
kind: MULTILATERAL_TREATY
in_force: "2004-02-01"
governs_procedure: true
articles { number: "1" } articles { number: "4" }
channels { channel: DIRECT_JUDICIAL basis: "Art 4" authority: "the judicial authority, directly" }
precedence { instrument: "OLD" effect: SUPPLEMENTS basis: "Art 1" }
provisions { assistance_type: STORED_DATA_ACCESS obligation: BINDING basis: "Art 1" refusal_grounds: [ESSENTIAL_INTERESTS] }
parties { party: "FR" signed: "2001-11-08" entry_into_force: "2012-06-01" }
parties { party: "DK" signed: "2001-11-08" entry_into_force: "2004-02-01" }
)pb";

constexpr char kAgreement[] = R"pb(
id: "EU-US"
kind: BILATERAL_TREATY
organisation: "EU"
governs_procedure: true
articles { number: "3" }
provisions { assistance_type: MUTUAL_ASSISTANCE obligation: BINDING basis: "Art 3" refusal_grounds: [DOMESTIC_LAW] }
parties { party: "EU" signed: "2003-06-25" entry_into_force: "2010-02-01" }
parties { party: "US" signed: "2003-06-25" entry_into_force: "2010-02-01" }
)pb";

std::unique_ptr<TreatyLibrary> GeneralLayer(
    std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> files = {
      {"eu.textproto", kMembership}, {"act.textproto", kAct},       {"old.textproto", kOld},
      {"supp.textproto", kSupplement}, {"agr.textproto", kAgreement}};
  for (auto& f : extra) files.push_back(std::move(f));
  return Library(std::move(files));
}

const v1::ConsideredInstrument* Role(const v1::Assessment& a, const std::string& id) {
  for (const auto& c : a.considered()) {
    if (c.instrument() == id) return &c;
  }
  return nullptr;
}

TEST(GeneralLayerTest, AMemberIsBoundByTheActFromItsAccessionAndTheActReplacesTheOldConvention) {
  auto lib = GeneralLayer();
  // Before accession (and before the act): the old convention governs.
  v1::Assessment before = AssessOk(*lib, Query("HR", "FR", v1::STORED_DATA_ACCESS,
                                          v1::OTHER, absl::CivilDay(2013, 6, 30)));
  EXPECT_EQ(before.instrument(), "OLD");
  // SUPP binds FR but not HR: OLD's own channel.
  EXPECT_EQ(before.channel(), v1::CENTRAL_AUTHORITY);
  v1::Assessment after = AssessOk(*lib, Query("HR", "FR", v1::STORED_DATA_ACCESS, v1::OTHER,
                                         absl::CivilDay(2017, 5, 22)));
  EXPECT_EQ(after.instrument(), "ACT");
  EXPECT_EQ(after.procedure_instrument(), "ACT");
  ASSERT_NE(Role(after, "OLD"), nullptr);
  EXPECT_EQ(Role(after, "OLD")->role(), v1::REPLACED);
  EXPECT_THAT(Role(after, "OLD")->reason(), HasSubstr("ACT Art 34(1): replaces OLD"));
  EXPECT_EQ(after.channel(), v1::DIRECT_JUDICIAL);
  EXPECT_EQ(after.channel_basis(), "ACT Art 7(1)");
  EXPECT_EQ(after.deadline_days(), 30u);
}

TEST(GeneralLayerTest, AStateThatLeftIsBoundOnlyUntilItsMembershipEnds) {
  auto lib = GeneralLayer();
  EXPECT_EQ(AssessOk(*lib, Query("FR", "GB", v1::STORED_DATA_ACCESS, v1::OTHER,
                                 absl::CivilDay(2020, 12, 31)))
                .instrument(),
            "ACT");
  v1::Assessment a = AssessOk(*lib, Query("FR", "GB", v1::STORED_DATA_ACCESS, v1::OTHER,
                                          absl::CivilDay(2021, 1, 1)));
  EXPECT_EQ(a.instrument(), "OLD");
  EXPECT_EQ(a.channel(), v1::CENTRAL_AUTHORITY);
  ASSERT_NE(Role(a, "ACT"), nullptr);
  EXPECT_EQ(Role(a, "ACT")->role(), v1::NOT_IN_FORCE);
  EXPECT_THAT(Role(a, "ACT")->reason(), HasSubstr("bound GB as a member of EU only until 2020-12-31"));
}

TEST(GeneralLayerTest, AnOptOutKeepsTheOldConventionAndItsSupplementAmendsTheChannel) {
  auto lib = GeneralLayer();
  v1::Assessment a = AssessOk(*lib, Query("FR", "DK", v1::STORED_DATA_ACCESS, v1::OTHER));
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_EQ(a.instrument(), "OLD");
  ASSERT_NE(Role(a, "ACT"), nullptr);
  EXPECT_EQ(Role(a, "ACT")->role(), v1::NOT_IN_FORCE);
  EXPECT_THAT(Role(a, "ACT")->reason(), HasSubstr("does not bind DK (opt-out)"));
  ASSERT_NE(Role(a, "SUPP"), nullptr);
  EXPECT_EQ(Role(a, "SUPP")->role(), v1::SUPPLEMENTING);
  EXPECT_EQ(a.channel(), v1::DIRECT_JUDICIAL);
  EXPECT_EQ(a.channel_basis(), "SUPP Art 4");
}

TEST(GeneralLayerTest, TheOrganisationsAgreementBindsEachMemberToTheThirdStateNotToEachOther) {
  auto lib = GeneralLayer();
  EXPECT_EQ(AssessOk(*lib, Query("HR", "US", v1::MUTUAL_ASSISTANCE, v1::OTHER)).instrument(),
            "EU-US");
  EXPECT_EQ(AssessOk(*lib, Query("US", "FR", v1::MUTUAL_ASSISTANCE, v1::OTHER,
                                 absl::CivilDay(2010, 1, 31)))
                .obligation(),
            v1::NOT_COVERED);
  v1::Assessment between = AssessOk(*lib, Query("FR", "HR", v1::MUTUAL_ASSISTANCE, v1::OTHER));
  EXPECT_EQ(Role(between, "EU-US"), nullptr);
  EXPECT_EQ(between.obligation(), v1::NOT_COVERED);
  // The organisation itself is not a party to a request.
  EXPECT_THAT(Assess(*lib, Query("EU", "US", v1::MUTUAL_ASSISTANCE, v1::OTHER)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("organisation, not a state")));
}

TEST(GeneralLayerTest, AnExcludedTerritoryIsNotBoundAndAnUnnamedOneFollowsItsState) {
  auto lib = GeneralLayer();
  v1::Assessment fo = AssessOk(*lib, Query("FR", "FO", v1::STORED_DATA_ACCESS, v1::OTHER));
  EXPECT_EQ(fo.territory(), "FO");
  // DK excluded FO from OLD; its SUPP entry names no territory, so SUPP
  // follows DK and is all that binds.
  ASSERT_NE(Role(fo, "OLD"), nullptr);
  EXPECT_EQ(Role(fo, "OLD")->role(), v1::NOT_IN_FORCE);
  EXPECT_THAT(Role(fo, "OLD")->reason(), HasSubstr("excludes FO"));
  EXPECT_EQ(fo.instrument(), "SUPP");
  // Greenland is not named by DK's entries of OLD: it follows DK.
  v1::Assessment gl = AssessOk(*lib, Query("FR", "GL", v1::STORED_DATA_ACCESS, v1::OTHER));
  EXPECT_EQ(gl.instrument(), "OLD");
  EXPECT_THAT(gl.notes(), Contains(HasSubstr("no declaration of DK names GL")));
  EXPECT_THAT(Assess(*lib, Query("DK", "FO", v1::STORED_DATA_ACCESS, v1::OTHER)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("domestic")));
}

TEST(GeneralLayerTest, DualCriminalityIsWaivedForListedOffencesAtTheThreshold) {
  auto lib = GeneralLayer();
  AssessmentQuery q = Query("FR", "HR", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS);
  q.penalty_months = 36;
  v1::Assessment listed = AssessOk(*lib, q);
  EXPECT_FALSE(listed.dual_criminality_required());
  EXPECT_THAT(Grounds(listed), Not(Contains(v1::DUAL_CRIMINALITY)));
  q.penalty_months = 24;
  v1::Assessment below = AssessOk(*lib, q);
  EXPECT_TRUE(below.dual_criminality_required());
  EXPECT_THAT(Grounds(below), Contains(v1::DUAL_CRIMINALITY));
  EXPECT_THAT(Grounds(AssessOk(*lib, Query("FR", "HR", v1::STORED_DATA_ACCESS, v1::OTHER))),
              Contains(v1::DUAL_CRIMINALITY));
}

TEST(GeneralLayerTest, PostponementGroundsAreNeverRefusalGrounds) {
  auto lib = GeneralLayer();
  v1::Assessment a = AssessOk(*lib, Query("FR", "HR", v1::STORED_DATA_ACCESS, v1::OTHER));
  EXPECT_THAT(a.postponement_grounds(), ElementsAre(v1::PREJUDICE_TO_INVESTIGATION));
  EXPECT_THAT(Grounds(a), Not(Contains(v1::PREJUDICE_TO_INVESTIGATION)));
  EXPECT_THAT(a.notes(), Contains(HasSubstr("postponed, not refused")));
}

constexpr char kMeasures[] = R"pb(
id: "MEAS"
kind: MULTILATERAL_TREATY
in_force: "2004-07-01"
entry_into_force_rule { min_consents: 2 days_after: 90 later_days_after: 30 basis: "Art 9" }
articles { number: "1" } articles { number: "2" } articles { number: "3" } articles { number: "9" }
provisions { assistance_type: TRAFFIC_DATA_DISCLOSURE obligation: BINDING basis: "Art 2"
  specific: true requires_prior_preservation: true otherwise: STORED_DATA_ACCESS
  refusal_grounds: [ESSENTIAL_INTERESTS] }
provisions { assistance_type: STORED_DATA_ACCESS obligation: BINDING basis: "Art 3"
  scope: CONVENTION_OR_SERIOUS_OFFENCES min_penalty_months: 48
  refusal_grounds: [DOMESTIC_LAW, ESSENTIAL_INTERESTS] }
provisions { assistance_type: INTERCEPTION obligation: BINDING basis: "Art 1" }
allowed_reservations { id: "Art 1" effect { assistance_types: INTERCEPTION removes_route: true } }
parties { party: "FR" consent: "2004-01-01" }
parties { party: "JP" consent: "2004-04-02" }
parties { party: "US" consent: "2010-01-01" reservations { id: "Art 1" made: "2010-01-31" } }
)pb";

TEST(MeasuresTest, TrafficDataWithoutAPriorPreservationIsAStoredDataRequest) {
  auto lib = Library({{"m.textproto", kMeasures}});
  v1::Assessment alone = AssessOk(*lib, Query("FR", "JP", v1::TRAFFIC_DATA_DISCLOSURE));
  EXPECT_EQ(alone.basis(0), "MEAS Art 3");
  EXPECT_THAT(alone.notes(), Contains(HasSubstr("applies only to traffic data found while")));
  AssessmentQuery after = Query("FR", "JP", v1::TRAFFIC_DATA_DISCLOSURE);
  after.follows_preservation = true;
  v1::Assessment followed = AssessOk(*lib, after);
  EXPECT_EQ(followed.basis(0), "MEAS Art 2");
  EXPECT_THAT(Grounds(followed), ElementsAre(v1::ESSENTIAL_INTERESTS));
}

TEST(MeasuresTest, OwnOffencesWhateverThePenaltyOthersOnlyWhenSerious) {
  auto lib = Library({{"m.textproto", kMeasures}});
  AssessmentQuery own = Query("FR", "JP", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS);
  own.penalty_months = 6;
  EXPECT_EQ(AssessOk(*lib, own).obligation(), v1::BINDING);
  AssessmentQuery other = Query("FR", "JP", v1::STORED_DATA_ACCESS, v1::OTHER);
  other.penalty_months = 24;
  EXPECT_EQ(AssessOk(*lib, other).obligation(), v1::NOT_COVERED);
  other.penalty_months = 48;
  EXPECT_EQ(AssessOk(*lib, other).obligation(), v1::BINDING);
}

TEST(MeasuresTest, AReservationCanRemoveARoute) {
  auto lib = Library({{"m.textproto", kMeasures}});
  EXPECT_EQ(AssessOk(*lib, Query("FR", "JP", v1::INTERCEPTION)).obligation(), v1::BINDING);
  v1::Assessment a = AssessOk(*lib, Query("FR", "US", v1::INTERCEPTION));
  EXPECT_EQ(a.obligation(), v1::NOT_COVERED);
  ASSERT_NE(Role(a, "MEAS"), nullptr);
  EXPECT_EQ(Role(a, "MEAS")->role(), v1::NOT_APPLICABLE);
  EXPECT_THAT(Role(a, "MEAS")->reason(), HasSubstr("US's reservation under MEAS Art 1"));
}

TEST(MeasuresTest, LaterConsentsTakeEffectAfterTheirOwnDelay) {
  auto lib = Library({{"m.textproto", kMeasures}});
  const InstrumentRecord* m = lib->Find("MEAS");
  // The second consent (2004-04-02) brings general entry into force after
  // 90 days; a later one (2010-01-01) takes effect after 30.
  EXPECT_EQ(FormatDay(m->Party("JP")->in_force), "2004-07-01");
  EXPECT_EQ(FormatDay(m->Party("US")->in_force), "2010-01-31");
}

TEST(GeneralLayerTest, LibraryErrorsNameTheOrganisationProblem) {
  auto no_membership = TreatyLibrary::FromFiles({{"act.textproto", kAct}, {"old.textproto", kOld}});
  EXPECT_THAT(no_membership, StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("organisation EU is not an ORGANISATION_MEMBERSHIP")));
  std::string bad = absl::StrReplaceAll(kAct, {{"instrument: \"OLD\"", "instrument: \"NOPE\""}});
  auto dangling = TreatyLibrary::FromFiles(
      {{"eu.textproto", kMembership}, {"act.textproto", bad}, {"old.textproto", kOld}});
  EXPECT_THAT(dangling, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("precedence names NOPE, which is not in the library")));
  std::string no_org = absl::StrReplaceAll(kAct, {{"organisation: \"EU\"", ""}});
  EXPECT_THAT(TreatyLibrary::FromFiles({{"eu.textproto", kMembership}, {"act.textproto", no_org}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ORGANISATION_ACT binds")));
}

}  // namespace
}  // namespace comity
