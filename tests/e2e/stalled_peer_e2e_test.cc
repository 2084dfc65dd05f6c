// A partner that accepts a call and then goes silent, end to end: FR
// reaches JP through a TCP proxy the test freezes (TLS passes through it
// untouched). JP's silence may delay only JP's own work: DE's evidence and
// deliveries go on, JP's fetch fails per chunk, backs off, gives up after
// its attempts (shown to operators, retried on request), and FR stops
// within its drain time. The chunk watchdog runs on the monotonic clock: a
// step of FR's wall clock neither holds it back nor fires it early.
#include <functional>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/offset_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tcp_proxy.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;

class StalledPeerE2eTest : public ::testing::Test {
 protected:
  // FR reaches JP only through the proxy; `extra` goes into FR's config,
  // then `edit` may change it.
  void StartNetwork(const std::string& extra,
                    const std::function<void(std::string&)>& edit = nullptr,
                    const Clock* fr_clock = SystemClock::Get()) {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP", "DE"});
    proxy_ = std::make_unique<testing::TcpProxy>(net_->peer_port("JP"));
    std::string& fr = net_->ConfigText("FR");
    const std::string jp_address = absl::StrCat("127.0.0.1:", net_->peer_port("JP"));
    fr.replace(fr.find(jp_address), jp_address.size(),
               absl::StrCat("127.0.0.1:", proxy_->port()));
    fr += extra;
    if (edit) edit(fr);
    ASSERT_THAT(net_->Start("FR", fr_clock), IsOk());
    for (const char* p : {"JP", "DE"}) ASSERT_THAT(net_->Start(p), IsOk());
  }
  std::string Submit(const std::string& to) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to", to,
                       "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE", "--authority",
                       "Parquet de Paris", "--facts", "ransomware", "--data-sought", "logs",
                       "--relation", "C2", "--custodian", "Hosting", "--necessity", "rotation",
                       "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  CliResult As(const std::string& party, std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, "bob")});
    return Cli(args);
  }
  // `party` accepts `id` and responds with a file of `bytes` bytes; returns its SHA-256.
  std::string Respond(const std::string& party, const std::string& id, size_t bytes) {
    EXPECT_EQ(As(party, {"accept", id}).code, 0);
    const std::string path = absl::StrCat(net_->dir(), "/", party, "-logs.bin");
    std::string data(bytes, static_cast<char>(party[0]));
    EXPECT_THAT(WriteFileAtomically(path, data, 0600), IsOk());
    CliResult r = As(party, {"respond", id, "--text", "logs", "--file", path, "--final"});
    EXPECT_EQ(r.code, 0) << r.err;
    return Sha256(data);
  }
  bool FranceHolds(const std::string& sha, absl::Duration within) {
    const absl::Time end = absl::Now() + within;
    while (absl::Now() < end) {
      if (net_->server("FR")->node()->evidence().files().Has(sha)) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  CliResult FranceShows(const std::string& id) {
    return Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  }
  // The one file of `id` FR still waits for.
  PendingEvidence FrancePending(const std::string& id) {
    auto pending = net_->server("FR")->node()->store()->cases().PendingEvidenceOf(id);
    EXPECT_THAT(pending, IsOk());
    if (!pending.ok() || pending->size() != 1) {
      ADD_FAILURE() << "FR does not wait for one file of " << id;
      return PendingEvidence();
    }
    return (*pending)[0];
  }
  // JP responds to `id` with a file while the proxy is frozen, and FR's
  // fetch of it is under way (its call went into the proxy).
  void RespondWhileFrozen(const std::string& id) {
    proxy_->Freeze(true);
    const uint64_t before = proxy_->swallowed();
    Respond("JP", id, 1 << 20);
    for (int i = 0; i < 100 && proxy_->swallowed() == before; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_GT(proxy_->swallowed(), before);
    absl::SleepFor(absl::Milliseconds(300));
    ASSERT_EQ(FrancePending(id).attempts, 0u);
  }

  // Before net_: FR reads it until it stops.
  testing::OffsetClock fr_clock_;
  std::unique_ptr<testing::TestNetwork> net_;
  std::unique_ptr<testing::TcpProxy> proxy_;
};

TEST_F(StalledPeerE2eTest, AStalledPartnerDelaysNoOneElse) {
  StartNetwork(
      "evidence { chunk_timeout_ms: 1000 max_fetch_attempts: 3 retry_max_ms: 300 }\n");
  const std::string to_jp = Submit("JP");
  const std::string to_de = Submit("DE");
  proxy_->Freeze(true);  // JP accepts FR's calls and then says nothing.
  const std::string jp_sha = Respond("JP", to_jp, 3 << 20);
  const std::string de_sha = Respond("DE", to_de, 3 << 20);

  // DE's file arrives while JP's fetch hangs, and a new request to DE is
  // delivered at once.
  EXPECT_TRUE(FranceHolds(de_sha, absl::Seconds(10)));
  CliResult again = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                         "DE", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                         "--authority", "P", "--facts", "f", "--data-sought", "d", "--relation",
                         "r", "--custodian", "c", "--necessity", "n", "--intent-mla", "--json"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(ParseJson(again.out).fields().at("state").string_value(), "DELIVERED");

  // JP's file: each attempt ends with its first late chunk; after three,
  // the node gives up and says so.
  bool gave_up = false;
  for (int i = 0; i < 200 && !gave_up; ++i) {
    gave_up = FranceShows(to_jp).out.find("NOT FETCHED") != std::string::npos;
    if (!gave_up) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(gave_up) << FranceShows(to_jp).out;
  CliResult show = FranceShows(to_jp);
  EXPECT_THAT(show.out, HasSubstr("gave up after 3 attempts"));
  EXPECT_THAT(show.out, HasSubstr("no evidence chunk for 1s"));
  CliResult peers = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "peers"});
  EXPECT_THAT(peers.out, HasSubstr("evidence to fetch: 1 files, 1 given up"));
  EXPECT_FALSE(net_->server("FR")->node()->evidence().files().Has(jp_sha));

  // JP answers again; an operator asks, and the file comes.
  proxy_->Freeze(false);
  CliResult fetch = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "fetch", to_jp});
  ASSERT_EQ(fetch.code, 0) << fetch.err;
  EXPECT_THAT(fetch.out, HasSubstr("1 evidence files to fetch again"));
  EXPECT_TRUE(FranceHolds(jp_sha, absl::Seconds(20)));
}

TEST_F(StalledPeerE2eTest, AStalledPartnerDelaysNoOnesGossip) {
  // Gossip every second; a call to a peer may take 10 s before it fails.
  StartNetwork("audit { head_interval_seconds: 1 }\n", [](std::string& fr) {
    const std::string old = "attempt_timeout_ms: 2000";
    fr.replace(fr.find(old), old.size(), "attempt_timeout_ms: 10000");
  });
  proxy_->Freeze(true);  // JP takes FR's gossip calls and says nothing.
  // FR's log grows (each refused call is an entry); DE sees each new head
  // within a gossip interval or two, not once per JP timeout.
  std::set<uint64_t> sizes_de_saw;
  const absl::Time end = absl::Now() + absl::Seconds(6);
  while (absl::Now() < end) {
    // A well-formed id no request has: the node refuses it (an entry); a
    // malformed one would be refused by the CLI before any call.
    Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show",
         "00000000-0000-4000-8000-000000000000"});
    auto head = net_->server("DE")->node()->store()->audit().LatestPeerHead("FR");
    ASSERT_THAT(head, IsOk());
    if (head->has_value()) sizes_de_saw.insert((*head)->head.tree_size());
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_GE(sizes_de_saw.size(), 3u) << "DE's gossip waited for JP";
}

TEST_F(StalledPeerE2eTest, AClockSteppedBackDoesNotHoldTheChunkWatchdogBack) {
  StartNetwork("evidence { chunk_timeout_ms: 1000 max_fetch_attempts: 3 retry_max_ms: 300 }\n",
               nullptr, &fr_clock_);
  const std::string to_jp = Submit("JP");
  ASSERT_NO_FATAL_FAILURE(RespondWhileFrozen(to_jp));
  // FR's clock is set back two hours (an NTP correction) while it waits
  // for the next chunk: the fetch still ends a second after the last one.
  fr_clock_.Set(-absl::Hours(2));
  PendingEvidence p;
  for (int i = 0; i < 50; ++i) {
    p = FrancePending(to_jp);
    if (p.attempts > 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(p.attempts, 1u) << "no attempt ended within 5 s of the step";
  EXPECT_THAT(p.last_error, HasSubstr("no evidence chunk for 1s"));
}

TEST_F(StalledPeerE2eTest, AClockSteppedForwardDoesNotFireTheChunkWatchdog) {
  StartNetwork("evidence { chunk_timeout_ms: 5000 }\n", nullptr, &fr_clock_);
  const std::string to_jp = Submit("JP");
  ASSERT_NO_FATAL_FAILURE(RespondWhileFrozen(to_jp));
  // Two hours forward: the next chunk is not two hours late, it has four
  // seconds left.
  fr_clock_.Set(absl::Hours(2));
  absl::SleepFor(absl::Milliseconds(2500));
  PendingEvidence p = FrancePending(to_jp);
  EXPECT_EQ(p.attempts, 0u) << p.last_error;
  EXPECT_EQ(p.last_error, "");
}

TEST_F(StalledPeerE2eTest, StopsWithinItsDrainTimeWhateverAPeerDoes) {
  // A chunk deadline far beyond the drain time: only the stop can end the
  // fetch.
  StartNetwork("evidence { chunk_timeout_ms: 120000 }\n");
  const std::string to_jp = Submit("JP");
  proxy_->Freeze(true);
  const uint64_t before = proxy_->swallowed();
  Respond("JP", to_jp, 1 << 20);
  // FR asked JP for the file (its call went into the frozen proxy).
  for (int i = 0; i < 100 && proxy_->swallowed() == before; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_GT(proxy_->swallowed(), before);
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  net_->server("FR")->Shutdown(absl::Seconds(2));
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(6)) << "the stop waited for a silent peer";
}

}  // namespace
}  // namespace comity
