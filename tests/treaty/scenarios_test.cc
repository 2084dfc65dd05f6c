// Issue 14: the law as the shipped library (deploy/treaties) encodes it, one
// scenario per row, each with the source that decides it. Scenarios cover
// intra-EU, EU-third state, Budapest-only, Second Protocol, UN convention,
// bilateral, territory and boundary-date cases; docs/treaties.md explains
// the decision procedure they exercise.
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

struct Scenario {
  const char* name;
  const char* from;
  const char* to;
  v1::AssistanceType type;
  v1::OffenceCategory offence;
  absl::CivilDay date;
  v1::Obligation want;
  const char* instrument;  // "" = not checked.
  v1::Channel channel;     // CHANNEL_UNSPECIFIED = not checked.
  const char* note;        // A substring of some note, or "".
  const char* source;      // What decides it.
  uint32_t penalty_months = 0;
  v1::Urgency urgency = v1::URGENCY_UNSPECIFIED;
  bool follows_preservation = false;
  v1::RefusalGround open = v1::REFUSAL_GROUND_UNSPECIFIED;    // Must be open.
  v1::RefusalGround closed = v1::REFUSAL_GROUND_UNSPECIFIED;  // Must not be.
};

constexpr auto D = [](int y, int m, int d) { return absl::CivilDay(y, m, d); };
const absl::CivilDay k2024 = absl::CivilDay(2024, 6, 1);

const Scenario kScenarios[] = {
    // --- Intra-EU: the EIO, the EAW, e-evidence, the EU MLA Convention ---
    {"EioGovernsSearchBetweenFranceAndGermany", "FR", "DE", v1::STORED_DATA_ACCESS,
     v1::DATA_INTERFERENCE, k2024, v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL,
     "replaces ETS030", "EIO Arts 1(2), 7(1), 34(1)", 60},
    {"EioListedOffenceNoDualCriminality", "FR", "DE", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "EIO-2014-41", v1::CHANNEL_UNSPECIFIED, "dual criminality is not verified",
     "EIO Art 11(1)(g) and Annex D (computer-related crime, 3 years)", 36, v1::URGENCY_UNSPECIFIED,
     false, v1::REFUSAL_GROUND_UNSPECIFIED, v1::DUAL_CRIMINALITY},
    {"EioBelowThreeYearsKeepsDualCriminality", "FR", "DE", v1::STORED_DATA_ACCESS,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "EIO-2014-41", v1::CHANNEL_UNSPECIFIED,
     "would not be verified", "EIO Art 11(1)(g): the Annex D waiver needs 3 years", 24,
     v1::URGENCY_UNSPECIFIED, false, v1::DUAL_CRIMINALITY},
    {"EioOtherOffenceKeepsDualCriminality", "FR", "DE", v1::STORED_DATA_ACCESS, v1::OTHER, k2024,
     v1::BINDING, "EIO-2014-41", v1::CHANNEL_UNSPECIFIED, "", "EIO Art 11(1)(g)", 60,
     v1::URGENCY_UNSPECIFIED, false, v1::DUAL_CRIMINALITY},
    {"EioSubscriberIdentificationNeverDualCriminality", "FR", "DE", v1::SUBSCRIBER_INFORMATION,
     v1::OTHER, k2024, v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL, "Art 10(2)(e)",
     "EIO Arts 10(2)(e), 11(2)", 0, v1::URGENCY_UNSPECIFIED, false,
     v1::REFUSAL_GROUND_UNSPECIFIED, v1::DUAL_CRIMINALITY},
    {"EioPostponesNotRefusesForPrejudice", "FR", "DE", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "EIO-2014-41", v1::CHANNEL_UNSPECIFIED, "postponed, not refused",
     "EIO Art 15(1)(a)", 60, v1::URGENCY_UNSPECIFIED, false, v1::REFUSAL_GROUND_UNSPECIFIED,
     v1::PREJUDICE_TO_INVESTIGATION},
    {"EioAppliesFromTransposition", "FR", "DE", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     D(2017, 5, 22), v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL, "",
     "EIO Art 36(1): 2017-05-22", 60},
    {"BeforeTheEioTheEuConventionSetsDirectChannels", "FR", "DE", v1::MUTUAL_ASSISTANCE,
     v1::ILLEGAL_ACCESS, D(2017, 5, 21), v1::BINDING, "", v1::DIRECT_JUDICIAL, "",
     "EU MLA 2000 Art 6(1) supplementing ETS 030 (Art 1(1)); EIO not yet applicable", 60},
    {"IrelandIsNotBoundByTheEio", "DE", "IE", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "ETS030", v1::CENTRAL_AUTHORITY, "EIO-2014-41: does not bind IE",
     "EIO recital 44; ETS 030 Art 15(1)", 60},
    {"DenmarkIsNotBoundByTheEio", "FR", "DK", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "", v1::CHANNEL_UNSPECIFIED, "EIO-2014-41: does not bind DK",
     "EIO recital 45", 60},
    {"EuropeanArrestWarrantBetweenMembers", "FR", "DE", v1::EXTRADITION, v1::DATA_INTERFERENCE,
     k2024, v1::BINDING, "EAW-2002-584", v1::DIRECT_JUDICIAL, "replaces ETS024",
     "FD 2002/584/JHA Arts 1(2), 9(1), 31(1)", 60},
    {"ArrestWarrantDeadlineSixtyDays", "ES", "IT", v1::EXTRADITION, v1::COMPUTER_RELATED_FRAUD,
     k2024, v1::BINDING, "EAW-2002-584", v1::CHANNEL_UNSPECIFIED, "Art 17(3): 60 days",
     "FD 2002/584/JHA Art 17(3)", 48},
    {"ArrestWarrantFromItsFirstDay", "FR", "DE", v1::EXTRADITION, v1::DATA_INTERFERENCE,
     D(2004, 1, 1), v1::BINDING, "EAW-2002-584", v1::CHANNEL_UNSPECIFIED, "",
     "FD 2002/584/JHA Art 34(1): implemented by 2003-12-31", 60},
    {"ProductionOrderNotBeforeApplication", "FR", "DE", v1::EU_PRODUCTION_ORDER, v1::ILLEGAL_ACCESS,
     D(2026, 8, 17), v1::VOLUNTARY, "", v1::CHANNEL_UNSPECIFIED,
     "EEVIDENCE-2023-1543: does not apply to", "Regulation 2023/1543 Art 34(2): from 2026-08-18"},
    {"ProductionOrderOnItsFirstDay", "FR", "DE", v1::EU_PRODUCTION_ORDER, v1::ILLEGAL_ACCESS,
     D(2026, 8, 18), v1::BINDING, "EEVIDENCE-2023-1543", v1::SERVICE_PROVIDER, "Art 10(2): 10 days",
     "Regulation 2023/1543 Arts 7, 10(2), 34(2)"},
    {"ProductionOrderEmergencyEightHours", "NL", "BE", v1::EU_PRODUCTION_ORDER,
     v1::SYSTEM_INTERFERENCE, D(2026, 9, 1), v1::BINDING, "EEVIDENCE-2023-1543",
     v1::SERVICE_PROVIDER, "8 hours in an emergency", "Regulation 2023/1543 Art 10(4)", 0,
     v1::EMERGENCY},
    {"PreservationOrderSixtyDays", "FR", "DE", v1::EU_PRESERVATION_ORDER, v1::OTHER,
     D(2026, 9, 1), v1::BINDING, "EEVIDENCE-2023-1543", v1::SERVICE_PROVIDER, "Art 11(1): 60 days",
     "Regulation 2023/1543 Art 11(1)"},
    {"DenmarkOutsideEEvidence", "FR", "DK", v1::EU_PRODUCTION_ORDER, v1::ILLEGAL_ACCESS,
     D(2026, 9, 1), v1::NOT_COVERED, "", v1::CHANNEL_UNSPECIFIED,
     "EEVIDENCE-2023-1543: does not bind DK", "Regulation 2023/1543; TREATIES.md section 7"},
    {"ProductionOrderOnlyInsideTheUnion", "FR", "US", v1::EU_PRODUCTION_ORDER, v1::ILLEGAL_ACCESS,
     D(2026, 9, 1), v1::VOLUNTARY, "", v1::CHANNEL_UNSPECIFIED, "",
     "Regulation 2023/1543 Art 1: providers offering services in the Union, between member states"},
    {"UnitedKingdomInTheEioUntilTransitionEnd", "FR", "GB", v1::STORED_DATA_ACCESS,
     v1::ILLEGAL_ACCESS, D(2020, 12, 31), v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL, "",
     "Withdrawal Agreement Art 126-127: EU law until 2020-12-31", 60},
    {"UnitedKingdomAfterTransition", "FR", "GB", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS,
     D(2021, 1, 1), v1::BINDING, "ETS030", v1::CENTRAL_AUTHORITY, "",
     "EU membership ends 2020-12-31; ETS 030 Art 15(1)", 60},
    {"UnitedKingdomArrestWarrantUntilTransitionEnd", "FR", "GB", v1::EXTRADITION,
     v1::ILLEGAL_ACCESS, D(2020, 12, 31), v1::BINDING, "EAW-2002-584", v1::DIRECT_JUDICIAL, "",
     "FD 2002/584/JHA; Withdrawal Agreement Art 62", 60},
    {"UnitedKingdomExtraditionAfterTransition", "FR", "GB", v1::EXTRADITION, v1::ILLEGAL_ACCESS,
     D(2021, 6, 1), v1::BINDING, "ETS024", v1::DIPLOMATIC, "",
     "ETS 024 Arts 1, 12(1) (listed as parties by 2012-07-20)", 60},
    {"CroatiaBeforeAccessionUsesTheExtraditionConvention", "HR", "FR", v1::EXTRADITION,
     v1::ILLEGAL_ACCESS, D(2013, 6, 30), v1::BINDING, "ETS024", v1::DIPLOMATIC, "",
     "HR joined the EU on 2013-07-01; ETS 024", 60},
    {"CroatiaArrestWarrantFromAccession", "HR", "FR", v1::EXTRADITION, v1::ILLEGAL_ACCESS,
     D(2013, 7, 1), v1::BINDING, "EAW-2002-584", v1::DIRECT_JUDICIAL, "",
     "HR accession 2013-07-01; FD 2002/584/JHA", 60},
    {"PreservationIsBudapestArt29EvenInsideTheEu", "FR", "DE", v1::PRESERVATION, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "is a specific article",
     "ETS185 Arts 25(4), 29, 35(1)"},
    {"StandaloneTrafficDataIsNotArt30", "FR", "DE", v1::TRAFFIC_DATA_DISCLOSURE,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL,
     "applies only to traffic data found while executing a preservation",
     "TREATIES.md section 7: Art 30 follows an Art 29 request", 60},
    {"TrafficDataAfterPreservationIsArt30", "FR", "DE", v1::TRAFFIC_DATA_DISCLOSURE,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "",
     "ETS185 Art 30(1)-(2)", 60, v1::URGENCY_UNSPECIFIED, true, v1::REFUSAL_GROUND_UNSPECIFIED,
     v1::DOMESTIC_LAW},
    {"JointTeamsStayUnderTheEuConvention", "FR", "DE", v1::JOINT_INVESTIGATION_TEAM, v1::OTHER,
     k2024, v1::DISCRETIONARY, "", v1::CHANNEL_UNSPECIFIED, "",
     "EIO Art 3 excludes joint investigation teams; EU MLA 2000 Art 13 / ETS 182 Art 20"},
    {"VideoHearingUnderTheEio", "IT", "ES", v1::VIDEO_CONFERENCE, v1::OTHER, k2024, v1::BINDING,
     "EIO-2014-41", v1::DIRECT_JUDICIAL, "", "EIO Art 24"},
    {"InterceptionUnderTheEio", "FR", "DE", v1::INTERCEPTION, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "EIO-2014-41", v1::CHANNEL_UNSPECIFIED, "", "EIO Art 30; ETS185 Art 34 floor", 60,
     v1::URGENCY_UNSPECIFIED, false, v1::DOMESTIC_LAW},
    // --- EU and third states ---
    {"EuJapanAgreementGovernsFranceJapan", "FR", "JP", v1::MUTUAL_ASSISTANCE,
     v1::COMPUTER_RELATED_FRAUD, k2024, v1::BINDING, "EU-JP-MLA-2009", v1::CENTRAL_AUTHORITY,
     "ETS185 Art 25(1) still applies as a floor", "EU-Japan MLA Agreement, in force 2011-01-02"},
    {"JapanToFranceNotUnderBudapestArt27", "JP", "FR", v1::MUTUAL_ASSISTANCE,
     v1::COMPUTER_RELATED_FRAUD, k2024, v1::BINDING, "EU-JP-MLA-2009", v1::CENTRAL_AUTHORITY, "",
     "ETS185 Art 27(1): Art 27 only where no MLA treaty is in force"},
    {"EuJapanAgreementFromItsEntryIntoForce", "JP", "FR", v1::MUTUAL_ASSISTANCE, v1::OTHER,
     D(2011, 1, 2), v1::BINDING, "EU-JP-MLA-2009", v1::CENTRAL_AUTHORITY, "",
     "EU-Japan MLA Agreement, in force 2011-01-02"},
    {"BeforeTheEuJapanAgreementNothingBinds", "JP", "FR", v1::MUTUAL_ASSISTANCE, v1::OTHER,
     D(2011, 1, 1), v1::NOT_COVERED, "", v1::CHANNEL_UNSPECIFIED,
     "EU-JP-MLA-2009: does not apply to FR",
     "EU-Japan Agreement from 2011-01-02; Budapest for JP from 2012-11-01"},
    {"FranceUnitedStatesBilateralSupplementedByEuUs", "FR", "US", v1::MUTUAL_ASSISTANCE,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "FR-US-MLAT-1998", v1::CENTRAL_AUTHORITY,
     "supplements FR-US-MLAT-1998", "EU-US MLA Agreement Art 3(1)"},
    {"FranceUnitedStatesBeforeTheEuUsAgreement", "FR", "US", v1::MUTUAL_ASSISTANCE,
     v1::ILLEGAL_ACCESS, D(2005, 6, 1), v1::BINDING, "FR-US-MLAT-1998", v1::CHANNEL_UNSPECIFIED,
     "", "FR-US MLAT in force 2001-12-01; EU-US from 2010-02-01"},
    {"GermanyUnitedStatesThroughTheEuUsAgreement", "DE", "US", v1::STORED_DATA_ACCESS,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "EU-US-MLA-2003", v1::CENTRAL_AUTHORITY, "",
     "EU-US MLA Agreement Art 3(3): applies where no bilateral treaty is in the library"},
    {"MembersAreNotBoundToEachOtherByTheEuUsAgreement", "FR", "DE", v1::JOINT_INVESTIGATION_TEAM,
     v1::OTHER, k2024, v1::DISCRETIONARY, "", v1::CHANNEL_UNSPECIFIED, "",
     "EU-US Agreement binds members to the US only"},
    // --- Budapest only ---
    {"BudapestArt27WithoutAnMlaTreaty", "FR", "AU", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "ETS185", v1::CENTRAL_AUTHORITY, "supplies the procedure and grounds",
     "ETS185 Arts 25, 27(1)-(2)"},
    {"Art27PostponementIsNotARefusal", "FR", "AU", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "ETS185", v1::CHANNEL_UNSPECIFIED, "Art 27(5)", "ETS185 Art 27(5)", 0,
     v1::URGENCY_UNSPECIFIED, false, v1::REFUSAL_GROUND_UNSPECIFIED,
     v1::PREJUDICE_TO_INVESTIGATION},
    {"FranceRequiresTheDiplomaticChannel", "AU", "FR", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "ETS185", v1::DIPLOMATIC, "FR's declaration under ETS185 Art 27",
     "TREATIES.md section 7 (WIPO Lex remarks FR/952)"},
    {"FranceDiplomaticEvenWhenUrgent", "AU", "FR", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "ETS185", v1::DIPLOMATIC, "", "FR designation under Art 27: even when urgent", 0,
     v1::URGENT},
    {"UrgentRequestsGoDirect", "FR", "AU", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "ETS185", v1::DIRECT_JUDICIAL, "", "ETS185 Art 27(9)(a)", 0, v1::URGENT},
    {"JapanRequiresTheCentralAuthorityForUrgentRequests", "AU", "JP", v1::MUTUAL_ASSISTANCE,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "ETS185", v1::CENTRAL_AUTHORITY,
     "JP's declaration under ETS185 Art 27(9)(e)", "ets185-reservations.tsv JP 27(9)(e) (verified)",
     0, v1::URGENT},
    {"BudapestExtraditionIsOnlyALegalBasisOption", "FR", "AU", v1::EXTRADITION,
     v1::DATA_INTERFERENCE, k2024, v1::DISCRETIONARY, "ETS185", v1::CHANNEL_UNSPECIFIED,
     "MAY consider the Convention", "TREATIES.md section 7: Art 24(3)-(5)", 24},
    {"RealTimeTrafficHasNoClosedGroundList", "FR", "AU", v1::REALTIME_TRAFFIC, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "ETS185", v1::CENTRAL_AUTHORITY, "", "TREATIES.md section 7: Art 33", 0,
     v1::URGENCY_UNSPECIFIED, false, v1::ESSENTIAL_INTERESTS},
    {"InterceptionIsDiscretionary", "FR", "AU", v1::INTERCEPTION, v1::ILLEGAL_ACCESS, k2024,
     v1::DISCRETIONARY, "ETS185", v1::CHANNEL_UNSPECIFIED, "", "ETS185 Art 34"},
    {"StoredDataUnderBudapestKeepsDualCriminalityOpen", "FR", "AU", v1::STORED_DATA_ACCESS,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "ETS185", v1::CENTRAL_AUTHORITY, "Art 25(4)",
     "TREATIES.md section 7: Art 31 and 25(5)", 0, v1::URGENCY_UNSPECIFIED, false,
     v1::DUAL_CRIMINALITY, v1::FISCAL_OFFENCE},
    {"PreservationThroughThe247Network", "FR", "AU", v1::PRESERVATION, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "", "ETS185 Arts 29, 35(1)"},
    {"JapanPreservationReservationForOtherOffences", "AU", "JP", v1::PRESERVATION, v1::OTHER,
     k2024, v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "Art 29(4)",
     "ets185-reservations.tsv JP 29(4) (verified)", 0, v1::URGENCY_UNSPECIFIED, false,
     v1::DUAL_CRIMINALITY},
    {"JapanBudapestFromEntryIntoForce", "FR", "JP", v1::PRESERVATION, v1::ILLEGAL_ACCESS,
     D(2012, 11, 1), v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "",
     "TREATIES.md section 1: JP deposited 2012-07-03, in force 2012-11-01"},
    {"JapanBudapestDayBefore", "FR", "JP", v1::PRESERVATION, v1::ILLEGAL_ACCESS, D(2012, 10, 31),
     v1::NOT_COVERED, "", v1::CHANNEL_UNSPECIFIED, "enters into force for JP only on 2012-11-01",
     "TREATIES.md section 1 (Art 36(4))"},
    // --- Second Additional Protocol (CETS 224) ---
    {"SecondProtocolNotInForceWithThreeConsents", "JP", "HU", v1::SUBSCRIBER_INFORMATION,
     v1::ILLEGAL_ACCESS, D(2026, 6, 1), v1::BINDING, "EU-JP-MLA-2009", v1::CENTRAL_AUTHORITY,
     "CETS224: not in force on 2026-06-01 (3 of 5 consents",
     "other-instruments.tsv CETS224: RS, JP, HU; Art 16(3); HU is bound to JP by the EU-Japan "
     "agreement"},
    {"DomainRegistrationOnlyUnderTheProtocol", "FR", "AU", v1::DOMAIN_REGISTRATION,
     v1::ILLEGAL_ACCESS, k2024, v1::VOLUNTARY, "", v1::CHANNEL_UNSPECIFIED, "",
     "CETS224 Art 6 (not in force); Paris Call shared"},
    // --- UN Convention against Cybercrime ---
    {"UnConventionNotInForce", "FR", "BR", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     D(2026, 6, 1), v1::BINDING, "ETS185", v1::CHANNEL_UNSPECIFIED, "UNCC2024",
     "UNCC Art 65(1): 40 instruments; Budapest for BR from 2023-03-01"},
    {"UnConventionSignatoriesOnly", "FR", "CN", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS,
     D(2026, 6, 1), v1::VOLUNTARY, "", v1::CHANNEL_UNSPECIFIED, "not ratified",
     "UNTC XVIII-16: signatures only, not in force; a shared political declaration only"},
    // --- Bilateral ---
    {"CloudActAgreementIsAnotherRoute", "GB", "US", v1::SUBSCRIBER_INFORMATION, v1::ILLEGAL_ACCESS,
     k2024, v1::BINDING, "", v1::CHANNEL_UNSPECIFIED, "offers another route",
     "US-UK CLOUD Act agreement in force 2022-10-03"},
    {"CloudActAgreementBeforeEntryIntoForce", "GB", "US", v1::SUBSCRIBER_INFORMATION,
     v1::ILLEGAL_ACCESS, D(2022, 10, 2), v1::BINDING, "ETS185", v1::CHANNEL_UNSPECIFIED,
     "US-GB-CLOUD-2019", "US-UK CLOUD Act agreement signed 2019-10-03, in force 2022-10-03"},
    // --- Territories ---
    {"CuracaoBeforeTheExtension", "FR", "CW", v1::PRESERVATION, v1::ILLEGAL_ACCESS,
     D(2024, 9, 30), v1::UNKNOWN_PARTY, "", v1::CHANNEL_UNSPECIFIED, "excludes CW",
     "ETS185 Art 38: NL Kingdom in Europe; Curacao from 2024-10-01 (ETS 182 standing unknown)"},
    {"CuracaoFromTheExtension", "FR", "CW", v1::PRESERVATION, v1::ILLEGAL_ACCESS, D(2024, 10, 1),
     v1::BINDING, "ETS185", v1::POINT_OF_CONTACT, "extends it to CW",
     "ets185-reservations.tsv NL Art 38: Curacao EIF 2024-10-01 (verified)"},
    {"FaroeIslandsOutsideBudapest", "DE", "FO", v1::REALTIME_TRAFFIC, v1::ILLEGAL_ACCESS, k2024,
     v1::NOT_COVERED, "", v1::CHANNEL_UNSPECIFIED, "excludes FO",
     "ets185-reservations.tsv DK Art 38 (verified); EU law does not apply (TFEU Art 355(5)(a))"},
    {"GreenlandOutsideTheEio", "DE", "GL", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "", v1::CHANNEL_UNSPECIFIED, "excludes GL",
     "Greenland left the Communities 1985-02-01; DK is not bound by the EIO either"},
    {"FrenchGuianaInsideTheEio", "DE", "GF", v1::STORED_DATA_ACCESS, v1::ILLEGAL_ACCESS, k2024,
     v1::BINDING, "EIO-2014-41", v1::DIRECT_JUDICIAL, "extends it to GF",
     "TFEU Arts 349, 355(1): outermost region", 60},
    // --- States the library does not know, and other boundaries ---
    {"StateNotInTheLibrary", "FR", "IN", v1::MUTUAL_ASSISTANCE, v1::ILLEGAL_ACCESS, k2024,
     v1::UNKNOWN_PARTY, "", v1::CHANNEL_UNSPECIFIED, "IN is not in the treaty library",
     "issue 14: never NOT_COVERED for a state the library does not know"},
    {"RussiaThroughTheCouncilOfEuropeConvention", "FR", "RU", v1::MUTUAL_ASSISTANCE,
     v1::ILLEGAL_ACCESS, k2024, v1::BINDING, "ETS030", v1::CENTRAL_AUTHORITY, "",
     "ETS 030 party table (RU); RU never signed Budapest"},
};

class ScenarioTest : public ::testing::TestWithParam<Scenario> {
 protected:
  static void SetUpTestSuite() {
    auto lib = TreatyLibrary::LoadDirectory(testing::SourceDir() + "/deploy/treaties");
    ASSERT_THAT(lib, IsOk());
    lib_ = lib->release();
  }
  static void TearDownTestSuite() { delete lib_; }
  static const TreatyLibrary* lib_;
};
const TreatyLibrary* ScenarioTest::lib_ = nullptr;

TEST_P(ScenarioTest, DecidesAsTheSourceSays) {
  const Scenario& s = GetParam();
  SCOPED_TRACE(s.source);
  AssessmentQuery q;
  q.requesting_party = s.from;
  q.requested_party = s.to;
  q.date = s.date;
  q.assistance_type = s.type;
  q.offence = s.offence;
  q.penalty_months = s.penalty_months;
  q.urgency = s.urgency;
  q.follows_preservation = s.follows_preservation;
  auto a = Assess(*lib_, q);
  ASSERT_THAT(a, IsOk());
  const std::string notes = absl::StrJoin(a->notes(), "\n");
  EXPECT_EQ(a->obligation(), s.want) << v1::Obligation_Name(a->obligation()) << "\n" << notes;
  if (*s.instrument) {
    EXPECT_EQ(a->instrument(), s.instrument) << notes;
  }
  if (s.channel != v1::CHANNEL_UNSPECIFIED) {
    EXPECT_EQ(a->channel(), s.channel) << v1::Channel_Name(a->channel()) << "\n" << notes;
  }
  if (*s.note) {
    EXPECT_THAT(a->notes(), Contains(HasSubstr(s.note))) << notes;
  }
  std::vector<int> grounds(a->refusal_grounds().begin(), a->refusal_grounds().end());
  if (s.open != v1::REFUSAL_GROUND_UNSPECIFIED) {
    EXPECT_THAT(grounds, Contains(s.open)) << notes;
  }
  if (s.closed != v1::REFUSAL_GROUND_UNSPECIFIED) {
    EXPECT_THAT(grounds, ::testing::Not(Contains(s.closed))) << notes;
  }
  // Every governing instrument is listed among those considered.
  if (!a->instrument().empty() && a->obligation() != v1::VOLUNTARY) {
    bool listed = false;
    for (const auto& c : a->considered()) listed |= c.instrument() == a->instrument();
    EXPECT_TRUE(listed) << a->instrument();
  }
}

INSTANTIATE_TEST_SUITE_P(Issue14, ScenarioTest, ::testing::ValuesIn(kScenarios),
                         [](const ::testing::TestParamInfo<Scenario>& param) {
                           return std::string(param.param.name);
                         });

TEST(ScenarioCount, AtLeastSixty) { EXPECT_GE(std::size(kScenarios), 60u); }

// The message of the error a query between `from` and `to` gets.
std::string RefusedQuery(const TreatyLibrary& lib, const char* from, const char* to) {
  AssessmentQuery q;
  q.requesting_party = from;
  q.requested_party = to;
  q.date = k2024;
  q.assistance_type = v1::MUTUAL_ASSISTANCE;
  q.offence = v1::OTHER;
  auto a = Assess(lib, q);
  return a.ok() ? "(assessed)" : std::string(a.status().message());
}

TEST_F(ScenarioTest, AnOrganisationIsNotAParty) {
  EXPECT_THAT(RefusedQuery(*lib_, "EU", "US"), HasSubstr("organisation, not a state"));
}

TEST_F(ScenarioTest, ATerritoryAndItsStateAreOneState) {
  EXPECT_THAT(RefusedQuery(*lib_, "FR", "GF"), HasSubstr("domestic"));
}

// The treaty matrix of ten parties on three dates, against a reviewed
// golden file (COMITY_UPDATE_GOLDEN=1 rewrites it; review the diff).
TEST_F(ScenarioTest, MatrixOfTenPartiesOnThreeDatesMatchesTheGoldenFile) {
  const char* parties[] = {"FR", "DE", "IE", "DK", "GB", "JP", "US", "AU", "BR", "RU"};
  const absl::CivilDay dates[] = {D(2010, 6, 1), D(2020, 6, 1), D(2026, 9, 1)};
  const v1::AssistanceType types[] = {v1::STORED_DATA_ACCESS, v1::EXTRADITION};
  std::ostringstream out;
  for (v1::AssistanceType type : types) {
    for (absl::CivilDay date : dates) {
      out << v1::AssistanceType_Name(type) << " " << absl::FormatCivilTime(date) << "\n";
      for (const char* from : parties) {
        for (const char* to : parties) {
          if (std::string(from) == to) continue;
          AssessmentQuery q;
          q.requesting_party = from;
          q.requested_party = to;
          q.date = date;
          q.assistance_type = type;
          q.offence = v1::ILLEGAL_ACCESS;
          q.penalty_months = 60;
          q.requested_penalty_months = 60;
          auto a = Assess(*lib_, q);
          ASSERT_THAT(a, IsOk());
          out << "  " << from << "->" << to << " " << v1::Obligation_Name(a->obligation()) << " "
              << (a->instrument().empty() ? "-" : a->instrument()) << " "
              << v1::Channel_Name(a->channel()) << "\n";
        }
      }
    }
  }
  const std::string path = testing::SourceDir() + "/tests/treaty/testdata/matrix.golden";
  if (std::getenv("COMITY_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << out.str();
  }
  std::ifstream in(path);
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(out.str(), golden.str()) << "the matrix changed; if the change is right, rerun with "
                                        "COMITY_UPDATE_GOLDEN=1 and review the diff of "
                                     << path;
}

}  // namespace
}  // namespace comity
