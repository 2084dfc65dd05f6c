// The shipped treaty library (deploy/treaties): it loads, and the cases the
// treaty rules engine issue names come out right on it.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/treaty/engine.h"
#include "server/treaty/library.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

class LibraryDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto lib = TreatyLibrary::LoadDirectory(testing::SourceDir() + "/deploy/treaties");
    ASSERT_THAT(lib, IsOk());
    lib_ = lib->release();
  }
  static void TearDownTestSuite() { delete lib_; }

  static v1::Assessment Check(const std::string& from, const std::string& to,
                              v1::AssistanceType type, v1::OffenceCategory offence,
                              absl::CivilDay date = absl::CivilDay(2024, 6, 1)) {
    AssessmentQuery q;
    q.requesting_party = from;
    q.requested_party = to;
    q.date = date;
    q.assistance_type = type;
    q.offence = offence;
    auto a = Assess(*lib_, q);
    EXPECT_THAT(a, IsOk());
    return a.ok() ? *a : v1::Assessment();
  }
  static std::vector<v1::RefusalGround> Grounds(const v1::Assessment& a) {
    std::vector<v1::RefusalGround> g;
    for (int x : a.refusal_grounds()) g.push_back(static_cast<v1::RefusalGround>(x));
    return g;
  }
  static TreatyLibrary* lib_;
};
TreatyLibrary* LibraryDataTest::lib_ = nullptr;

TEST_F(LibraryDataTest, HoldsTheRequiredInstrumentsAndParties) {
  for (const char* id : {"ETS185", "CETS224", "UNCC2024", "PARIS-CALL-2018", "UN-GGE-2015"}) {
    EXPECT_NE(lib_->Find(id), nullptr) << id;
  }
  int bilateral = 0;
  for (const auto& inst : lib_->instruments()) {
    if (inst->proto.kind() == v1::BILATERAL_TREATY) ++bilateral;
  }
  EXPECT_GE(bilateral, 3);
  const InstrumentRecord* ets = lib_->Find("ETS185");
  for (const char* party : {"US", "FR", "JP", "AT", "CZ", "UA", "BR", "DE", "GB", "AU"}) {
    EXPECT_NE(ets->Party(party), nullptr) << party;
  }
  EXPECT_EQ(ets->Party("RU"), nullptr);
  EXPECT_EQ(ets->Party("CN"), nullptr);
  EXPECT_EQ(FormatDay(ets->Party("JP")->in_force), "2012-11-01");
  EXPECT_EQ(FormatDay(ets->Party("AT")->in_force), "2012-10-01");
  // Not in force: the Second Protocol and the UN convention.
  EXPECT_EQ(lib_->Find("CETS224")->general_in_force, kNever);
  EXPECT_EQ(lib_->Find("UNCC2024")->general_in_force, kNever);
  EXPECT_EQ(lib_->version().size(), 64u);
}

TEST_F(LibraryDataTest, PreservationFromFranceToJapanForAnArt2To11Offence) {
  v1::Assessment a = Check("FR", "JP", v1::PRESERVATION, v1::DATA_INTERFERENCE);
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_EQ(a.instrument(), "ETS185");
  EXPECT_THAT(a.basis(), Contains(HasSubstr("ETS185 Art 29")));
  EXPECT_THAT(Grounds(a), Not(Contains(v1::DUAL_CRIMINALITY)));
  EXPECT_EQ(a.deadline_days(), 60u);
}

TEST_F(LibraryDataTest, PreservationFromFranceToJapanForAnotherOffence) {
  v1::Assessment a = Check("FR", "JP", v1::PRESERVATION, v1::OTHER);
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_THAT(Grounds(a), Contains(v1::DUAL_CRIMINALITY));
  EXPECT_THAT(a.basis(), Contains("ETS185 Art 29(4)"));
}

TEST_F(LibraryDataTest, InterceptionIsDiscretionary) {
  v1::Assessment a = Check("FR", "JP", v1::INTERCEPTION, v1::ILLEGAL_ACCESS);
  EXPECT_EQ(a.obligation(), v1::DISCRETIONARY);
  EXPECT_THAT(a.basis(), Contains(HasSubstr("ETS185 Art 34")));
}

TEST_F(LibraryDataTest, PreservationWithoutIntentToFollowUpIsInvalid) {
  v1::RequestBody body;
  v1::Particulars* p = body.mutable_particulars();
  p->set_requesting_authority("Parquet de Paris");
  p->set_facts_summary("ransomware");
  p->set_data_sought("logs");
  p->set_relation_to_offence("C2 server");
  p->set_custodian_or_location("Example Hosting KK");
  p->set_necessity("rotation after 14 days");
  AssessmentQuery q;
  q.requesting_party = "FR";
  q.requested_party = "JP";
  q.date = absl::CivilDay(2024, 6, 1);
  q.assistance_type = v1::PRESERVATION;
  q.offence = v1::DATA_INTERFERENCE;
  q.request = &body;
  auto a = Assess(*lib_, q);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->obligation(), v1::INVALID);
  EXPECT_THAT(a->basis(), Contains(HasSubstr("Art 29(2)")));
  p->set_intends_mutual_assistance_request(true);
  EXPECT_EQ(Assess(*lib_, q)->obligation(), v1::BINDING);
}

TEST_F(LibraryDataTest, OnlyAPoliticalDeclarationIsVoluntary) {
  // Real-time collection: neither ETS 030 nor ETS 024, which bind both,
  // provides for it, and RU is not a party to Budapest.
  v1::Assessment a = Check("FR", "RU", v1::REALTIME_TRAFFIC, v1::DATA_INTERFERENCE);
  EXPECT_EQ(a.obligation(), v1::VOLUNTARY);
  EXPECT_THAT(a.notes(), Contains(HasSubstr("no legal obligation")));
}

TEST_F(LibraryDataTest, CzechReservationOnlyWhileHeld) {
  EXPECT_THAT(Grounds(Check("FR", "CZ", v1::PRESERVATION, v1::OTHER, absl::CivilDay(2015, 1, 1))),
              Contains(v1::DUAL_CRIMINALITY));
  EXPECT_THAT(Grounds(Check("FR", "CZ", v1::PRESERVATION, v1::OTHER, absl::CivilDay(2020, 1, 1))),
              Not(Contains(v1::DUAL_CRIMINALITY)));
}

TEST_F(LibraryDataTest, JapanBeforeEntryIntoForceIsNotBound) {
  v1::Assessment a =
      Check("FR", "JP", v1::PRESERVATION, v1::DATA_INTERFERENCE, absl::CivilDay(2012, 10, 31));
  EXPECT_NE(a.obligation(), v1::BINDING);
}

TEST_F(LibraryDataTest, FranceAndUnitedStatesMutualAssistanceGoesThroughTheirMlat) {
  v1::Assessment a = Check("FR", "US", v1::MUTUAL_ASSISTANCE, v1::COMPUTER_RELATED_FRAUD);
  EXPECT_EQ(a.obligation(), v1::BINDING);
  EXPECT_NE(a.instrument(), "ETS185");
  EXPECT_THAT(a.also_applicable(), Contains("ETS185"));
}

// --- Issue 14: the law as it is. Each case names the source that decides it. ---

struct DatedCase {
  const char* name;
  const char* from;
  const char* to;
  v1::AssistanceType type;
  v1::OffenceCategory offence;
  absl::CivilDay date;
  v1::Obligation want;
  const char* note;         // A note that must be there ("" = none checked).
  const char* never_cited;  // No note may contain this (an event after the date).
  const char* source;
};

const DatedCase kDatedCases[] = {
    {"BrazilDayBeforeEntryIntoForce", "FR", "BR", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2023, 2, 28), v1::VOLUNTARY,  // A shared political declaration only.
     "BR consented on 2022-11-30; it enters into force for BR only on 2023-03-01", "",
     "TREATIES.md section 7: accession 2022-11-30, in force 2023-03-01"},
    {"BrazilOnEntryIntoForce", "FR", "BR", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2023, 3, 1), v1::BINDING, "In force between FR and BR", "",
     "TREATIES.md section 7; ets185-parties.tsv BR (inferred by Art 37(2))"},
    {"SierraLeoneBeforeEntryIntoForce", "FR", "SL", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2024, 7, 31), v1::NOT_COVERED, "enters into force for SL only on 2024-08-01",
     "", "ets185-parties.tsv SL: accession 2024-04-19 (inferred EIF 2024-08-01)"},
    {"SierraLeoneAfterEntryIntoForce", "FR", "SL", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2024, 8, 1), v1::BINDING, "", "", "ets185-parties.tsv SL"},
    {"BeninBeforeEntryIntoForce", "JP", "BJ", v1::PRESERVATION, v1::ILLEGAL_ACCESS,
     absl::CivilDay(2024, 9, 30), v1::NOT_COVERED, "enters into force for BJ only on 2024-10-01",
     "", "ets185-parties.tsv BJ: accession 2024-06-20, in force 2024-10-01 (verified)"},
    {"BeninAfterEntryIntoForce", "JP", "BJ", v1::PRESERVATION, v1::ILLEGAL_ACCESS,
     absl::CivilDay(2024, 10, 1), v1::BINDING, "", "", "ets185-parties.tsv BJ (verified)"},
    {"CoteDIvoireAfterEntryIntoForce", "AT", "CI", v1::MUTUAL_ASSISTANCE, v1::COMPUTER_RELATED_FRAUD,
     absl::CivilDay(2024, 11, 1), v1::BINDING, "", "",
     "ets185-parties.tsv CI: accession 2024-07-29, in force 2024-11-01 (verified)"},
    // REALTIME_TRAFFIC: ETS 182 (Art 24 provisional measures) could bind AD
    // and IE for preservation, and the library does not have their dates.
    {"AndorraBeforeEntryIntoForce", "FR", "AD", v1::REALTIME_TRAFFIC, v1::DATA_INTERFERENCE,
     absl::CivilDay(2017, 2, 28), v1::NOT_COVERED, "enters into force for AD only on 2017-03-01",
     "", "ets185-parties.tsv AD: ratified 2016-11-16, in force 2017-03-01 (verified)"},
    {"IrelandSignedNeverRatified", "FR", "IE", v1::REALTIME_TRAFFIC, v1::DATA_INTERFERENCE,
     absl::CivilDay(2024, 6, 1), v1::NOT_COVERED,
     "IE signed on 2002-02-28, not ratified by 2024-06-01", "",
     "TREATIES.md section 7; ets185-parties.tsv IE (verified)"},
    {"SouthAfricaSignedNeverRatified", "DE", "ZA", v1::MUTUAL_ASSISTANCE, v1::OTHER,
     absl::CivilDay(2024, 6, 1), v1::NOT_COVERED, "ZA signed on 2001-11-23, not ratified", "",
     "TREATIES.md section 7 (signed 2001-11-23, has not ratified)"},
    {"IrelandBeforeItSigned", "FR", "IE", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2002, 1, 1), v1::NOT_COVERED, "ETS185: not in force on 2002-01-01",
     "2002-02-28", "ets185-parties.tsv IE: signed 2002-02-28, after the date"},
    {"NothingAfter1999", "FR", "BR", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(1999, 6, 1), v1::NOT_COVERED, "ETS185: did not exist yet on 1999-06-01", "2023",
     "TREATIES.md section 1 (Budapest opened 2001-11-23); BR acceded 2022"},
    {"SecondProtocolCountsConsentsByTheDate", "RS", "JP", v1::SUBSCRIBER_INFORMATION,
     v1::DATA_INTERFERENCE, absl::CivilDay(2023, 3, 1), v1::BINDING,
     "CETS224: not in force on 2023-03-01 (1 of 5 consents", "2023-08-10",
     "other-instruments.tsv CETS224: RS 2023-02-09, JP 2023-08-10"},
    {"StateAbsentFromTheLibrary", "FR", "IN", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2024, 6, 1), v1::UNKNOWN_PARTY, "IN is not in the treaty library", "",
     "no instrument in deploy/treaties lists IN (issue 14)"},
    {"RequestingStateAbsentFromTheLibrary", "MX", "FR", v1::MUTUAL_ASSISTANCE, v1::OTHER,
     absl::CivilDay(2024, 6, 1), v1::UNKNOWN_PARTY, "MX is not in the treaty library", "",
     "no instrument in deploy/treaties lists MX (issue 14)"},
    {"CandidateNeverConfirmed", "FR", "AR", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2024, 6, 1), v1::UNKNOWN_PARTY, "cannot say whether it is bound", "",
     "ets185-parties.tsv AR: not confirmed in any source (unverified)"},
    {"ListedPartyBeforeTheList", "FR", "NO", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2010, 1, 1), v1::UNKNOWN_PARTY, "as a party by 2011-06-01", "",
     "ets185-parties.tsv NO: contracting state in CoE notification JJ7249C of 1 June 2011"},
    {"ListedPartyAfterTheList", "FR", "NO", v1::PRESERVATION, v1::DATA_INTERFERENCE,
     absl::CivilDay(2012, 1, 1), v1::BINDING, "NO's status is unverified", "",
     "ets185-parties.tsv NO: contracting state in CoE notification JJ7249C of 1 June 2011"},
    // AU: no MLA instrument with FR in the library, so Budapest Art 27
    // applies (JP -> FR goes through the EU-Japan agreement instead).
    {"FranceDesignationDiplomaticChannel", "AU", "FR", v1::MUTUAL_ASSISTANCE,
     v1::COMPUTER_RELATED_FRAUD, absl::CivilDay(2024, 6, 1), v1::BINDING,
     "FR's declaration under ETS185 Art 27 (since 2006-05-01", "27(9)(e) declaration under",
     "TREATIES.md section 7 (WIPO Lex remarks FR/952): a designation under Art 27"},
    {"JapanReservationOpensDualCriminality", "FR", "JP", v1::PRESERVATION, v1::OTHER,
     absl::CivilDay(2012, 11, 1), v1::BINDING,
     "JP's reservation under ETS185 Art 29(4) (since 2012-11-01) opens the ground DUAL_CRIMINALITY",
     "", "ets185-reservations.tsv JP 29(4), effective 2012-11-01 (verified)"},
    {"JapanReservationNotForConventionOffences", "FR", "JP", v1::PRESERVATION,
     v1::DATA_INTERFERENCE, absl::CivilDay(2013, 1, 1), v1::BINDING, "does not apply", "",
     "ets185-reservations.tsv JP 29(4): except Arts 2-11 offences"},
    {"CzechReservationWithdrawn", "FR", "CZ", v1::PRESERVATION, v1::OTHER,
     absl::CivilDay(2020, 1, 1), v1::BINDING, "withdrawn 2019-07-05", "",
     "ets185-reservations.tsv CZ 29(4) 2013-12-01..2019-07-05 (verified)"},
};

class DatedCaseTest : public LibraryDataTest,
                      public ::testing::WithParamInterface<DatedCase> {};

TEST_P(DatedCaseTest, DecidesAsTheSourceSays) {
  const DatedCase& c = GetParam();
  SCOPED_TRACE(c.source);
  v1::Assessment a = Check(c.from, c.to, c.type, c.offence, c.date);
  EXPECT_EQ(a.obligation(), c.want) << v1::Obligation_Name(a.obligation());
  if (*c.note) {
    EXPECT_THAT(a.notes(), Contains(HasSubstr(c.note)));
  }
  if (*c.never_cited) {
    EXPECT_THAT(a.notes(), Not(Contains(HasSubstr(c.never_cited))));
  }
  if (c.want == v1::UNKNOWN_PARTY) {
    EXPECT_TRUE(a.instrument().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Issue14, DatedCaseTest, ::testing::ValuesIn(kDatedCases),
                         [](const ::testing::TestParamInfo<DatedCase>& param) {
                           return std::string(param.param.name);
                         });

std::vector<std::string> Ids(const google::protobuf::RepeatedPtrField<v1::PartyReservation>& l) {
  std::vector<std::string> ids;
  for (const auto& r : l) ids.push_back(r.id());
  return ids;
}

TEST_F(LibraryDataTest, Ets185CoversEveryRowOfTheReferenceTableWithItsSource) {
  // data/ets185-parties.tsv: 79 rows, 51 of them unverified.
  const InstrumentRecord* ets = lib_->Find("ETS185");
  EXPECT_EQ(ets->parties.size(), 79u);
  int unverified = 0;
  for (const PartyRecord& p : ets->parties) {
    EXPECT_FALSE(p.status->source().empty()) << p.status->party();
    unverified += p.status->unverified();
  }
  EXPECT_EQ(unverified, 51);
  // Verified rows stay verified; unverified ones are marked.
  EXPECT_FALSE(ets->Party("AT")->status->unverified());
  EXPECT_TRUE(ets->Party("US")->status->unverified());  // Dates not seen in the data.
  EXPECT_TRUE(ets->Party("AR")->status->unverified());
  // Dates from the data, no guesses: IT's ratification was not seen.
  EXPECT_EQ(ets->Party("IT")->consent, kNever);
  EXPECT_EQ(FormatDay(ets->Party("IT")->party_by), "2015-09-30");
  EXPECT_EQ(FormatDay(ets->Party("BR")->in_force), "2023-03-01");
  EXPECT_EQ(FormatDay(ets->Party("IE")->signed_on), "2002-02-28");
  EXPECT_EQ(ets->Party("IE")->consent, kNever);
}

TEST_F(LibraryDataTest, ReservationsAndDeclarationsOfTreatiesSection7) {
  const InstrumentRecord* ets = lib_->Find("ETS185");
  const v1::PartyStatus& fr = *ets->Party("FR")->status;
  EXPECT_THAT(Ids(fr.declarations()), Contains("Art 27"));
  EXPECT_THAT(Ids(fr.declarations()), Not(Contains("Art 27(9)(e)")));
  const v1::PartyStatus& jp = *ets->Party("JP")->status;
  for (const char* id : {"Art 6(3)", "Art 9(4)", "Art 29(4)"}) {
    EXPECT_THAT(Ids(jp.reservations()), Contains(id));
  }
  for (const char* id : {"Art 2", "Art 3", "Art 27(9)(e)"}) {
    EXPECT_THAT(Ids(jp.declarations()), Contains(id));
  }
  const v1::PartyStatus& us = *ets->Party("US")->status;
  for (const char* id : {"Art 4(2)", "Art 6(3)", "Art 9(4)", "Art 10(3)"}) {
    EXPECT_THAT(Ids(us.reservations()), Contains(id));
  }
  EXPECT_THAT(Ids(us.declarations()), Contains("Art 6(1)(b)"));
  EXPECT_THAT(Ids(ets->Party("HU")->status->reservations()), Contains("Art 9(4)"));
  EXPECT_THAT(Ids(ets->Party("HU")->status->declarations()), Contains("Art 27(9)(e)"));
  for (const char* id : {"Art 2", "Art 27(9)(e)"}) {
    EXPECT_THAT(Ids(ets->Party("CZ")->status->declarations()), Contains(id));
  }
  // A date the source does not give is marked.
  for (const auto& r : us.reservations()) EXPECT_TRUE(r.unverified()) << r.id();
}

TEST_F(LibraryDataTest, DesignationOnlyWhereTheGeneralProcedureApplies) {
  // FR and US have their MLAT: Art 27 and FR's designation under it do not apply.
  v1::Assessment a = Check("US", "FR", v1::MUTUAL_ASSISTANCE, v1::COMPUTER_RELATED_FRAUD);
  EXPECT_THAT(a.notes(), Not(Contains(HasSubstr("diplomatic channel"))));
}

}  // namespace
}  // namespace comity
