// Lists that grow with the store, end to end on real nodes over real TLS:
// a node holding a thousand large requests still answers `comity inbox`
// and `comity list` (each answer a page bounded in count and bytes, the CLI
// following the cursor), and a peer that is down costs one delivery probe
// per backoff interval, whatever the node's clock does meanwhile.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/util/files.h"
#include "server/util/time_proto.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/offset_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::OffsetClock;
using ::comity::testing::ParseJson;

class ListsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
  }

  CliResult Op(const std::string& party, const std::string& name,
               std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, name)});
    return Cli(args);
  }
  std::string Submit(const std::string& from, const std::string& to) {
    CliResult r = Op(from, "alice",
                     {"submit", "--to", to, "--type", "PRESERVATION", "--offence",
                      "DATA_INTERFERENCE", "--authority", "Parquet", "--facts", "ransomware",
                      "--data-sought", "logs", "--relation", "C2", "--custodian", "Hosting",
                      "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  v1::RequestRecord Record(const std::string& party, const std::string& id) {
    auto r = net_->server(party)->node()->Get(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() && !r->empty() ? (*r)[0] : v1::RequestRecord();
  }

  // Delivers `n` requests from JP to FR straight over FR's peer API, each
  // signed with JP's key, with a facts summary of `facts_bytes`, `threads`
  // at a time. Returns their ids.
  std::vector<std::string> FillFromJp(int n, size_t facts_bytes, int threads) {
    // A request JP really sent, as the template.
    const std::string first = Submit("JP", "FR");
    v1::RequestBody base;
    EXPECT_TRUE(base.ParseFromString(Record("FR", first).request().payload()));
    auto pem = ReadFile(net_->PartyDir("JP") + "/signing.key");
    EXPECT_THAT(pem, IsOk());
    auto key = SigningKey::FromPem(*pem);
    EXPECT_THAT(key, IsOk());
    std::vector<std::string> ids(n);
    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    auto work = [&]() {
      auto stub = v1::PeerService::NewStub(net_->PeerChannel("FR", "JP"));
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        v1::RequestBody body = base;
        body.set_id(RandomUuid());
        *body.mutable_created_at() = ToProto(absl::Now());
        body.mutable_particulars()->set_facts_summary(
            absl::StrCat("case ", i, ": ", std::string(facts_bytes, 'f')));
        auto env = SignEnvelope(kRequestPayloadType, body.SerializeAsString(), "JP", "JP-1",
                                **key);
        if (!env.ok()) {
          ++failed;
          continue;
        }
        v1::DeliverRequestRequest req;
        *req.mutable_request() = *env;
        v1::DeliverRequestResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        grpc::Status st = stub->DeliverRequest(&ctx, req, &resp);
        if (!st.ok()) {
          ADD_FAILURE() << st.error_message();
          ++failed;
        }
        ids[i] = body.id();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& t : pool) t.join();
    EXPECT_EQ(failed.load(), 0);
    ids.push_back(first);
    return ids;
  }

  // FR's requests in the store's order (newest first), page by page.
  std::vector<std::string> StoreOrder(const std::string& party) {
    std::vector<std::string> out;
    ListQuery q;
    q.limit = 500;
    for (;;) {
      auto page = net_->server(party)->node()->store()->requests().List(q);
      EXPECT_THAT(page, IsOk());
      if (!page.ok()) return out;
      for (const v1::RequestRecord& r : page->records) {
        v1::RequestBody b;
        b.ParseFromString(r.request().payload());
        out.push_back(b.id());
      }
      if (page->next_cursor.empty()) return out;
      q.after = page->next_cursor;
    }
  }

  // The ids of a CLI --json list, in its order.
  static std::vector<std::string> Ids(const CliResult& r) {
    std::vector<std::string> out;
    google::protobuf::Value v;
    auto s = ParseJson(absl::StrCat("{\"l\":", r.out, "}"));
    for (const auto& item : s.fields().at("l").list_value().values()) {
      out.push_back(item.struct_value().fields().at("id").string_value());
    }
    return out;
  }

  // How many entries of `type` `party`'s audit log holds.
  size_t Count(const std::string& party, v1::AuditEventType type) {
    AuditFilter f;
    f.type = type;
    auto entries = net_->server(party)->node()->store()->audit().Entries(f);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? entries->size() : 0;
  }
  // Whether every request of `ids` is DELIVERED on FR within `d`.
  bool AllDeliveredWithin(const std::vector<std::string>& ids, absl::Duration d) {
    const absl::Time end = absl::Now() + d;
    while (absl::Now() < end) {
      size_t delivered = 0;
      for (const std::string& id : ids) {
        if (Record("FR", id).state() == v1::DELIVERED) ++delivered;
      }
      if (delivered == ids.size()) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  // Before net_: the nodes read them until they stop.
  OffsetClock fr_clock_;
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(ListsE2eTest, InboxAndListPageThroughAThousandLargeRequests) {
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  // 1,001 requests of about 3.5 KB each: together well over the 4 MiB a
  // single answer may carry.
  std::vector<std::string> sent = FillFromJp(1000, 3000, 4);
  const std::vector<std::string> order = StoreOrder("FR");
  ASSERT_EQ(order.size(), sent.size());
  EXPECT_EQ(std::set<std::string>(order.begin(), order.end()),
            std::set<std::string>(sent.begin(), sent.end()));

  CliResult inbox = Op("FR", "bob", {"inbox", "--json"});
  ASSERT_EQ(inbox.code, 0) << inbox.err;
  EXPECT_EQ(Ids(inbox), order);

  CliResult list = Op("FR", "alice", {"list", "--limit", "2000", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(Ids(list), order);

  // A limit below what is held: the newest that many, in order.
  CliResult some = Op("FR", "alice", {"list", "--received", "--limit", "1500", "--json"});
  ASSERT_EQ(some.code, 0) << some.err;
  EXPECT_EQ(Ids(some), order);
  CliResult few = Op("FR", "alice", {"list", "--limit", "7", "--json"});
  ASSERT_EQ(few.code, 0) << few.err;
  EXPECT_EQ(Ids(few), std::vector<std::string>(order.begin(), order.begin() + 7));

  // The text form too.
  CliResult text = Op("FR", "alice", {"list", "--limit", "2000"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(text.out, '\n', absl::SkipEmpty())).size(),
            order.size() + 1);  // The header line.
}

// docs/delivery.md: "a peer that is down for hours costs one probe per
// interval". The test config backs off 100 ms doubled up to 400 ms, with
// jitter x0.5 to x1: at least 200 ms between probes.
TEST_F(ListsE2eTest, APeerThatIsDownCostsOneProbePerBackoffInterval) {
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  net_->Stop("JP");
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(Submit("FR", "JP"));
  // Past the first doublings: the lane backs off by its maximum now.
  absl::SleepFor(absl::Seconds(1));
  const size_t before = Count("FR", v1::DELIVERY_ATTEMPTED);
  const absl::Duration window = absl::Seconds(4);
  absl::SleepFor(window);
  const size_t attempts = Count("FR", v1::DELIVERY_ATTEMPTED) - before;
  std::cout << "delivery attempts in " << window << " while JP is down: " << attempts << "\n";
  // At most one per 200 ms, and some: the lane still probes.
  EXPECT_LE(attempts, 4000 / 200 + 2);
  EXPECT_GE(attempts, 4000 / 400 - 2);

  // JP answers again: its backlog goes out, each request once.
  ASSERT_THAT(net_->Start("JP"), IsOk());
  ASSERT_TRUE(AllDeliveredWithin(ids, absl::Seconds(10)));
  EXPECT_EQ(Count("JP", v1::REQUEST_RECEIVED), ids.size());
  for (const std::string& id : ids) EXPECT_EQ(Record("JP", id).direction(), v1::INCOMING);
}

TEST_F(ListsE2eTest, AClockSteppedBackWhileAPeerIsDownDoesNotStallDelivery) {
  ASSERT_THAT(net_->Start("FR", &fr_clock_), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  net_->Stop("JP");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit("FR", "JP"));
  // FR's clock runs two hours ahead for a while (its failed probes and
  // the next attempts are scheduled by it), then is stepped back two hours
  // to the right time (an NTP correction).
  fr_clock_.Set(absl::Hours(2));
  absl::SleepFor(absl::Seconds(1));
  fr_clock_.Set(absl::ZeroDuration());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_THAT(net_->Start("JP"), IsOk());
  // Within the normal maximum backoff (400 ms) and the time to deliver.
  ASSERT_TRUE(AllDeliveredWithin(ids, absl::Seconds(5)))
      << Record("FR", ids[0]).last_error();
}

}  // namespace
}  // namespace comity
