#include "server/util/listen_check.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ListenCheckTest, AFreePortAndPortZeroCanBeListenedOn) {
  EXPECT_THAT(CheckCanListen(absl::StrCat("127.0.0.1:", testing::PickUnusedPort())), IsOk());
  EXPECT_THAT(CheckCanListen("127.0.0.1:0"), IsOk());
  EXPECT_THAT(CheckCanListen("[::]:0"), IsOk());
}

TEST(ListenCheckTest, APortAnotherSocketListensOnIsInUse) {
  for (bool reuse_port : {false, true}) {
    testing::ListeningSocket held(reuse_port);
    const std::string address = absl::StrCat("127.0.0.1:", held.port());
    EXPECT_THAT(CheckCanListen(address),
                StatusIs(absl::StatusCode::kUnavailable,
                         absl::StrCat(address, " is in use by another process")));
    // The wildcard covers 127.0.0.1 too, as gRPC's [::] listener does.
    EXPECT_THAT(CheckCanListen(absl::StrCat("0.0.0.0:", held.port())),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("is in use")));
    // A name is in use if any one of its addresses is.
    EXPECT_THAT(CheckCanListen(absl::StrCat("localhost:", held.port())),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr(absl::StrCat("(127.0.0.1:", held.port(), ")"))));
  }
}

TEST(ListenCheckTest, AnAddressOfAnotherMachineCannotBeListenedOn) {
  // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
  EXPECT_THAT(CheckCanListen("192.0.2.1:7443"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("192.0.2.1:7443 is not an address of this machine")));
}

TEST(ListenCheckTest, NotHostAndPortIsInvalid) {
  EXPECT_THAT(CheckCanListen("7443"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckCanListen("[::1:7443"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(PortOf("[::1]:7443"), "7443");
}

}  // namespace
}  // namespace comity
