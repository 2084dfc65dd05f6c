#include "client/output.h"

#include <sstream>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace comity {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Parses `text` as JSON, or fails the test.
google::protobuf::Value Parse(const std::string& text) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &v).ok()) << text;
  return v;
}

TEST(OutputTest, JsonIsValidForAnyBytes) {
  // A non-ASCII path (absl::CEscape once printed it as \303\251, not JSON),
  // quotes, backslashes, control bytes and a byte that is not UTF-8.
  const std::string path =
      "/srv/\xc3\xa9vidence/\xe6\x97\xa5\xe6\x9c\xac/a\"b\\c\n\t\x01";
  JsonValue v = JsonValue::Object();
  v.Set("path", path)
      .Set("bytes", uint64_t{18446744073709551615u})
      .Set("n", -3)
      .Set("ratio", 0.25)
      .Set("ok", true)
      .Set("none", nullptr)
      .Set("bad", std::string("x\xff\xfey"))
      .Set("list", JsonValue::Array().Add("a").Add(1).Add(JsonValue::Object()));
  const std::string text = v.Dump();
  EXPECT_EQ(text.find("\\303"), std::string::npos) << text;
  google::protobuf::Value parsed = Parse(text);
  const auto& f = parsed.struct_value().fields();
  EXPECT_EQ(f.at("path").string_value(), path);
  EXPECT_EQ(f.at("n").number_value(), -3);
  EXPECT_EQ(f.at("ratio").number_value(), 0.25);
  EXPECT_TRUE(f.at("ok").bool_value());
  EXPECT_TRUE(f.at("none").has_null_value());
  EXPECT_EQ(f.at("bad").string_value(), "x\xef\xbf\xbd\xef\xbf\xbdy");  // U+FFFD twice.
  EXPECT_EQ(f.at("list").list_value().values_size(), 3);
  EXPECT_THAT(text, HasSubstr("\"bytes\":18446744073709551615"));
  // Members keep their order; setting one again replaces it.
  v.Set("path", "p");
  EXPECT_THAT(v.Dump(), StartsWith("{\"path\":\"p\",\"bytes\""));
}

TEST(OutputTest, ErrorsUnderJsonAreOneObjectOnStderr) {
  std::ostringstream err;
  EXPECT_EQ(ReportError(err, true, "comity",
                        {kExitUnreachable, "cannot reach the node", "start it"}),
            kExitUnreachable);
  google::protobuf::Value parsed = Parse(err.str());
  const auto& e = parsed.struct_value().fields().at("error").struct_value().fields();
  EXPECT_EQ(e.at("code").string_value(), "UNREACHABLE");
  EXPECT_EQ(e.at("exit_code").number_value(), 3);
  EXPECT_EQ(e.at("message").string_value(), "cannot reach the node");
  EXPECT_EQ(e.at("hint").string_value(), "start it");
  const std::string text = err.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_STREQ(ExitCodeName(kExitOk), "OK");
  EXPECT_STREQ(ExitCodeName(kExitFailure), "REFUSED");
  EXPECT_STREQ(ExitCodeName(kExitUsage), "USAGE");
}

TEST(OutputTest, TextErrorsAreOneLineWithTheHint) {
  std::ostringstream err;
  EXPECT_EQ(ReportError(err, false, "comity", {kExitUsage, "export needs --out DIR"}), 2);
  EXPECT_EQ(err.str(), "comity: export needs --out DIR\n");
  std::ostringstream hinted;
  ReportError(hinted, false, "comity keys", {kExitFailure, "refused", "ask an admin"});
  EXPECT_EQ(hinted.str(), "comity keys: refused; ask an admin\n");
}

TEST(OutputTest, WantsJsonLooksAtTheRawArguments) {
  EXPECT_TRUE(WantsJson({"list", "--bogus", "--json"}));
  EXPECT_FALSE(WantsJson({"list", "--jsonx"}));
  EXPECT_FALSE(WantsJson({"submit", "--", "--json"}));
}

TEST(OutputTest, ProtoValuesKeepTheirTypes) {
  google::protobuf::Value v;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"b":[1,"x",true,null],"a":{"z":2.5}})", &v)
                  .ok());
  EXPECT_EQ(JsonValue::FromProtoValue(v).Dump(),
            R"({"a":{"z":2.5},"b":[1,"x",true,null]})");
}

}  // namespace
}  // namespace comity
