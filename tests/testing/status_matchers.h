// GoogleTest matchers for absl::Status / StatusOr, which the Abseil of
// Debian 12 does not ship.
//
//   EXPECT_THAT(DoIt(), IsOk());
//   EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument,
//                                    HasSubstr("offence")));
#ifndef COMITY_TESTS_TESTING_STATUS_MATCHERS_H_
#define COMITY_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace comity::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::Matches(message_matcher)(std::string(s.message()));
}

MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, arg.value(), result_listener);
}

}  // namespace comity::testing

#define COMITY_ASSERT_OK_AND_ASSIGN(lhs, expr)                          \
  COMITY_ASSERT_OK_AND_ASSIGN_IMPL_(                                    \
      COMITY_TEST_CONCAT_(comity_statusor_, __LINE__), lhs, expr)
#define COMITY_TEST_CONCAT_INNER_(a, b) a##b
#define COMITY_TEST_CONCAT_(a, b) COMITY_TEST_CONCAT_INNER_(a, b)
#define COMITY_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                      \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString();  \
  lhs = std::move(statusor).value()

#endif  // COMITY_TESTS_TESTING_STATUS_MATCHERS_H_
