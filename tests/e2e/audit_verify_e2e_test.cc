// `comity audit verify` on a log that grows while it is verified: real
// nodes, real mutual TLS, the CLI. A verification reads entries, stored
// hashes and signed heads on one snapshot of the store (one read
// transaction, SQLite or PostgreSQL), so that appends committed meanwhile
// are either wholly in what it checks or wholly out: it never reports a
// head that covers entries it did not see ("truncated"), a hash without its
// entries, or a changed entry. Each verification covers at least the
// entries committed before it started.
#include <atomic>
#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;

// Verifications to run, or for at most kVerifyFor, whichever ends first.
constexpr int kVerifications = 200;
constexpr absl::Duration kVerifyFor = absl::Seconds(30);

// Threads that make the logs grow until destroyed (so that a failed
// assertion in the test never leaves a thread running).
class Growers {
 public:
  ~Growers() { Stop(); }
  void Add(std::function<void()> step) {
    threads_.emplace_back([this, step = std::move(step)] {
      while (!stop_.load()) {
        step();
        ++steps_;
      }
    });
  }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  int steps() const { return steps_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> steps_{0};
  std::vector<std::thread> threads_;
};

class AuditVerifyE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
  }

  uint64_t LogSize(const std::string& party) {
    auto size = net_->server(party)->node()->store()->audit().Size();
    EXPECT_THAT(size, IsOk());
    return size.ok() ? *size : 0;
  }

  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(AuditVerifyE2eTest, ALogGrowingDuringVerificationNeverLooksTampered) {
  const std::string jp_alice = net_->ClientConfigPath("JP", "alice");
  const std::string fr_alice = net_->ClientConfigPath("FR", "alice");
  std::atomic<int> delivered{0};
  Growers growers;
  // JP, a partner, delivers requests to FR as fast as two threads can
  // submit them: each appends entries to both logs, and FR signs a head of
  // its log for each receipt.
  for (int i = 0; i < 2; ++i) {
    growers.Add([&] {
      if (Cli(testing::SubmitPreservationArgs(jp_alice, "FR")).code == 0) ++delivered;
    });
  }
  // An operator refused (alice is no auditor) appends an AUTH_FAILURE
  // entry to FR's log each time, without a head.
  growers.Add([&] { Cli({"--connect", fr_alice, "audit", "verify"}); });

  int runs = 0;
  int grew_meanwhile = 0;
  const absl::Time end = absl::Now() + kVerifyFor;
  while (runs < kVerifications && absl::Now() < end) {
    // Both logs in turn: FR's grows by receipts (a head each), JP's by
    // submissions and deliveries.
    const std::string party = runs % 2 == 0 ? "FR" : "JP";
    const uint64_t before = LogSize(party);
    CliResult verify = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit",
                            "verify", "--json"});
    const uint64_t after = LogSize(party);
    ++runs;
    EXPECT_EQ(verify.code, 0) << party << " run " << runs << ": " << verify.out
                              << verify.err;
    if (verify.code != 0 && verify.out.empty()) break;  // Not even an answer.
    const auto fields = ParseJson(verify.out).fields();
    const uint64_t entries = static_cast<uint64_t>(fields.at("entries").number_value());
    EXPECT_TRUE(fields.at("ok").bool_value())
        << party << " run " << runs << ": " << verify.out;
    EXPECT_EQ(fields.at("error").string_value(), "") << party << " run " << runs;
    EXPECT_GE(entries, before) << party << " run " << runs
                               << ": fewer entries than were committed before it started";
    EXPECT_LE(entries, after) << party << " run " << runs;
    if (after > before) ++grew_meanwhile;
    if (::testing::Test::HasFailure()) break;  // The first failure tells.
  }
  growers.Stop();
  // The test means something only if the logs did grow under verifications.
  EXPECT_GT(delivered.load(), 0);
  EXPECT_GT(grew_meanwhile, runs / 4)
      << grew_meanwhile << " of " << runs << " verifications saw the log grow meanwhile";
  std::cout << runs << " verifications, " << grew_meanwhile << " while the log grew; "
            << delivered.load() << " requests delivered, " << growers.steps()
            << " growing steps\n";

  // At rest, both logs verify whole.
  for (const char* party : {"FR", "JP"}) {
    CliResult verify = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit",
                            "verify", "--json"});
    EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
    EXPECT_EQ(static_cast<uint64_t>(
                  ParseJson(verify.out).fields().at("entries").number_value()),
              LogSize(party));
  }
}

}  // namespace
}  // namespace comity
