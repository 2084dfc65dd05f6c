#include "server/util/json.h"
#include "server/util/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace comity {
namespace {

using ::testing::HasSubstr;

TEST(JsonQuoteTest, EscapesControlCharactersAndQuotes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
}

TEST(JsonQuoteTest, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(JsonQuote("cybercriminalit\xc3\xa9"), "\"cybercriminalit\xc3\xa9\"");
  EXPECT_EQ(JsonQuote("\xff\xc3"), "\"\\ufffd\\ufffd\"");
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // A surrogate.
}

TEST(LogEventTest, WritesOneJsonLineToTheSink) {
  std::vector<std::string> lines;
  SetLogSinkForTesting([&](const std::string& l) { lines.push_back(l); });
  LogEvent(LogLevel::kWarning, "peer_request_rejected", {{"peer", "JP"}, {"code", "X"}});
  SetLogSinkForTesting(nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"warning\",\"event\":\"peer_request_rejected\","
                                  "\"peer\":\"JP\",\"code\":\"X\"}"));
}

}  // namespace
}  // namespace comity
