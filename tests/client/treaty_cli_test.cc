// `comity treaty ...` offline on the shipped library: what an operator reads.
#include <sstream>

#include "client/args.h"
#include "client/cli.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out, err;
};

Result Treaty(std::vector<std::string> args) {
  args.insert(args.begin(), {"treaty"});
  args.insert(args.begin() + 2, {"--treaties", testing::SourceDir() + "/deploy/treaties"});
  std::ostringstream out, err;
  int code = RunCli(args, [](const std::string&) { return std::string(); }, out, err);
  return {code, out.str(), err.str()};
}

TEST(TreatyCliTest, AnInvalidRequestNamesEachMissingFieldByItsFlagOnceAndExitsNonZero) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/draft.txtpb";
  ASSERT_TRUE(WriteFileAtomically(path, R"pb(
    requesting_party: "FR" requested_party: "JP" assistance_type: PRESERVATION
    offence { category: DATA_INTERFERENCE }
    particulars { requesting_authority: "Parquet de Paris" facts_summary: "ransomware"
                  custodian_or_location: "Hosting KK" necessity: "rotation" }
  )pb", 0600).ok());
  Result r = Treaty({"check", "--request", path, "--date", "2024-06-01"});
  EXPECT_EQ(r.code, kExitFailure) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("INVALID under ETS185"));
  EXPECT_THAT(r.out, HasSubstr("missing:        --data-sought (particulars.data_sought): ETS185 "
                               "Art 29(2)(c)"));
  EXPECT_THAT(r.out, HasSubstr("missing:        --relation (particulars.relation_to_offence)"));
  EXPECT_THAT(r.out, HasSubstr("missing:        --intent-mla"));
  // A complete request is not INVALID and exits 0.
  ASSERT_TRUE(WriteFileAtomically(path, R"pb(
    requesting_party: "FR" requested_party: "JP" assistance_type: PRESERVATION
    offence { category: DATA_INTERFERENCE }
    particulars { requesting_authority: "Parquet de Paris" facts_summary: "ransomware"
                  data_sought: "logs" relation_to_offence: "C2" custodian_or_location: "Hosting KK"
                  necessity: "rotation" intends_mutual_assistance_request: true }
  )pb", 0600).ok());
  Result ok = Treaty({"check", "--request", path, "--date", "2024-06-01"});
  EXPECT_EQ(ok.code, kExitOk) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("BINDING under ETS185"));
  EXPECT_THAT(ok.out, HasSubstr("channel:        POINT_OF_CONTACT (ETS185 Art 35(1))"));
}

TEST(TreatyCliTest, CheckShowsTheGoverningInstrumentTheOthersAndTheChannel) {
  Result r = Treaty({"check", "--from", "FR", "--to", "DE", "--type", "STORED_DATA_ACCESS",
                     "--offence", "DATA_INTERFERENCE", "--penalty-months", "60", "--date",
                     "2024-06-01"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("BINDING under EIO-2014-41"));
  EXPECT_THAT(r.out, HasSubstr("channel:        DIRECT_JUDICIAL (EIO-2014-41 Art 7(1))"));
  EXPECT_THAT(r.out, HasSubstr("postponement:   PREJUDICE_TO_INVESTIGATION"));
  EXPECT_THAT(r.out, HasSubstr("ETS030: replaced - EIO-2014-41 Art 34(1)"));
  EXPECT_THAT(r.out, HasSubstr("ETS185: floor"));
  Result urgent = Treaty({"check", "--from", "AU", "--to", "FR", "--type", "MUTUAL_ASSISTANCE",
                          "--offence", "ILLEGAL_ACCESS", "--urgency", "URGENT", "--date",
                          "2024-06-01"});
  ASSERT_EQ(urgent.code, kExitOk) << urgent.err;
  EXPECT_THAT(urgent.out, HasSubstr("channel:        DIPLOMATIC (ETS185 Art 27)"));
  Result bad = Treaty({"check", "--from", "EU", "--to", "US", "--type", "MUTUAL_ASSISTANCE",
                       "--offence", "OTHER"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("EU is an organisation, not a state"));
}

}  // namespace
}  // namespace comity
