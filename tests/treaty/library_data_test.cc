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
  v1::Assessment a = Check("FR", "RU", v1::PRESERVATION, v1::DATA_INTERFERENCE);
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

}  // namespace
}  // namespace comity
