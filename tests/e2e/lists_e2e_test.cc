// Lists that grow with the store, end to end on real nodes over real TLS:
// a node holding a thousand large requests still answers `comity inbox`,
// `comity list`, `comity overdue`, `comity audit log`, `audit stats` and
// `audit prove` (each answer a page bounded in count and bytes, the CLI
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
#include "comity/v1/operator.grpc.pb.h"
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
  // Every one of them, sorted by deadline (the worklist, issue 15).
  const std::vector<std::string> worklist = Ids(inbox);
  EXPECT_EQ(std::set<std::string>(worklist.begin(), worklist.end()),
            std::set<std::string>(order.begin(), order.end()));
  EXPECT_EQ(worklist.size(), order.size());
  std::string previous;
  const google::protobuf::Struct parsed = ParseJson(absl::StrCat("{\"l\":", inbox.out, "}"));
  for (const auto& item : parsed.fields().at("l").list_value().values()) {
    const std::string due = item.struct_value().fields().at("deadline").string_value();
    EXPECT_LE(previous, due);
    previous = due;
  }

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

// 1,001 cases whose acknowledgement is late: more than one page of
// ListOverdue (at most 1000 cases), and more than one answer held before
// pages (1000 deadlines).
TEST_F(ListsE2eTest, OverdueListsEveryLateCaseAPageAtATime) {
  ASSERT_THAT(net_->Start("FR", &fr_clock_), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  std::vector<std::string> sent = FillFromJp(1000, 100, 4);
  // Past FR's 72 hours to acknowledge each of them.
  fr_clock_.Set(absl::Hours(73));

  auto stub = v1::OperatorService::NewStub(net_->OperatorChannel("FR", "alice"));
  std::set<std::string> paged;
  std::string token;
  int pages = 0;
  do {
    v1::ListOverdueRequest req;
    req.set_page_token(token);
    v1::ListOverdueResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    grpc::Status st = stub->ListOverdue(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.deadlines_size(), 1000);
    for (const v1::CaseDeadline& d : resp.deadlines()) {
      EXPECT_EQ(d.kind(), "ACKNOWLEDGE");
      EXPECT_TRUE(paged.insert(d.request_id()).second) << d.request_id() << " twice";
    }
    token = resp.next_page_token();
  } while (!token.empty() && ++pages < 100);
  ASSERT_EQ(paged.size(), sent.size());
  EXPECT_EQ(paged, std::set<std::string>(sent.begin(), sent.end()));

  // A page of 7 cases, then the rest from its token.
  v1::ListOverdueRequest small;
  small.set_limit(7);
  v1::ListOverdueResponse first;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->ListOverdue(&ctx, small, &first).ok());
  EXPECT_EQ(first.deadlines_size(), 7);
  EXPECT_FALSE(first.next_page_token().empty());

  CliResult overdue = Op("FR", "alice", {"overdue", "--json"});
  ASSERT_EQ(overdue.code, 0) << overdue.err;
  std::set<std::string> listed;
  auto json = ParseJson(absl::StrCat("{\"l\":", overdue.out, "}"));
  for (const auto& item : json.fields().at("l").list_value().values()) {
    listed.insert(item.struct_value().fields().at("request_id").string_value());
  }
  EXPECT_EQ(listed.size(), paged.size());
  EXPECT_TRUE(listed == paged);
}

// After 1,001 requests received, FR's log holds over 1,000 signed heads
// (one in each receipt): more than one page of GetTreeHeads; `audit prove`
// of the newest entry needs the newest head, on the last page.
TEST_F(ListsE2eTest, TreeHeadsComeInPagesAndAuditProveFindsTheNewest) {
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  FillFromJp(1000, 100, 4);
  auto stored = net_->server("FR")->node()->store()->audit().TreeHeads();
  ASSERT_THAT(stored, IsOk());
  ASSERT_GT(stored->size(), 1000u);

  auto stub = v1::AuditService::NewStub(net_->OperatorChannel("FR", "carol"));
  std::vector<uint64_t> sizes;
  std::string token;
  int pages = 0;
  do {
    v1::GetTreeHeadsRequest req;
    req.set_page_token(token);
    v1::GetTreeHeadsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    grpc::Status st = stub->GetTreeHeads(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.heads_size(), 1000);
    EXPECT_GT(resp.keys_size(), 0);
    for (const v1::SignedEnvelope& env : resp.heads()) {
      v1::TreeHead h;
      ASSERT_TRUE(h.ParseFromString(env.payload()));
      sizes.push_back(h.tree_size());
    }
    token = resp.next_page_token();
  } while (!token.empty() && ++pages < 100);
  ASSERT_EQ(sizes.size(), stored->size());
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(sizes[i], (*stored)[i].head.tree_size());

  // A token of another list is refused.
  v1::GetTreeHeadsRequest bad;
  bad.set_page_token("e1:5");
  v1::GetTreeHeadsResponse none;
  grpc::ClientContext bad_ctx;
  EXPECT_EQ(stub->GetTreeHeads(&bad_ctx, bad, &none).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // The newest entry a signed head covers is in the newest head only.
  const uint64_t newest = stored->back().head.tree_size() - 1;
  CliResult prove = Op("FR", "carol", {"audit", "prove", absl::StrCat(newest), "--json"});
  ASSERT_EQ(prove.code, 0) << prove.err;
  EXPECT_EQ(ParseJson(prove.out).fields().at("tree_size").number_value(),
            static_cast<double>(newest + 1));
}

// FR's log after 1,001 requests received (about 250 KB) is over what one
// answer of FR's operator listener may carry with limits.max_message_bytes
// of 16 KiB (four times that: as 4 MiB is with the default 1 MiB, for a log
// of 35,000 entries): `audit log` and `audit stats` read it a page at a time.
TEST_F(ListsE2eTest, TheAuditLogIsReadAPageAtATime) {
  net_->ConfigText("FR") += "limits { max_message_bytes: 16384 }\n";
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  FillFromJp(1000, 100, 4);
  AuditFilter all;
  auto entries = net_->server("FR")->node()->store()->audit().Entries(all);
  ASSERT_THAT(entries, IsOk());
  size_t bytes = 0;
  for (const std::string& e : *entries) bytes += e.size();
  std::cout << entries->size() << " entries, " << bytes << " bytes\n";
  ASSERT_GT(bytes, 4u * 16384);

  auto stub = v1::AuditService::NewStub(net_->OperatorChannel("FR", "carol"));
  v1::GetAuditEntriesRequest req;  // limit 0: as many as fit.
  v1::GetAuditEntriesResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  grpc::Status st = stub->GetEntries(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GT(resp.entries_size(), 0);
  EXPECT_LT(resp.entries_size(), static_cast<int>(entries->size()));
  EXPECT_FALSE(resp.next_page_token().empty());

  CliResult log = Op("FR", "carol", {"audit", "log", "--json"});
  ASSERT_EQ(log.code, 0) << log.err;
  std::vector<std::string> lines = absl::StrSplit(log.out, '\n', absl::SkipEmpty());
  // Every entry held when the command began (the log grows as it reads:
  // each audit call is audited).
  ASSERT_GE(lines.size(), entries->size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(ParseJson(lines[i]).fields().at("index").number_value(), static_cast<double>(i));
  }
  // With a filter and a limit: the first 1500 entries of one type.
  CliResult some = Op("FR", "carol", {"audit", "log", "--type", "REQUEST_RECEIVED", "--limit",
                                      "1500", "--json"});
  ASSERT_EQ(some.code, 0) << some.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(some.out, '\n', absl::SkipEmpty())).size(),
            1001u);

  CliResult stats = Op("FR", "carol", {"audit", "stats", "--json"});
  ASSERT_EQ(stats.code, 0) << stats.err;
  EXPECT_GE(ParseJson(stats.out).fields().at("entries").number_value(),
            static_cast<double>(entries->size()));
  EXPECT_EQ(ParseJson(stats.out).fields().at("received_by_partner").struct_value().fields()
                .at("JP").number_value(),
            1001);
}

// `audit export` of a log whose heads alone are eight times what one message
// may carry (1,001 receipts, each with a head signed for it, under a
// 16 KiB limit: as 25,000 heads are with the default 1 MiB): the export
// streams its heads and entries in bounded messages, and verifies.
TEST_F(ListsE2eTest, TheAuditLogIsExportedInBoundedMessages) {
  net_->ConfigText("FR") += "limits { max_message_bytes: 16384 }\n";
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  FillFromJp(1000, 100, 4);
  AuditStore& audit = net_->server("FR")->node()->store()->audit();
  auto heads = audit.TreeHeads();
  ASSERT_THAT(heads, IsOk());
  size_t head_bytes = 0;
  for (const StoredTreeHead& h : *heads) head_bytes += h.signed_head.ByteSizeLong();
  std::cout << heads->size() << " heads, " << head_bytes << " bytes\n";
  ASSERT_GT(head_bytes, 8u * 16384);

  const std::string prefix = net_->dir() + "/fr-log";
  CliResult exported = Op("FR", "carol", {"audit", "export", "--out", prefix, "--json"});
  ASSERT_EQ(exported.code, 0) << exported.err;
  const auto f = ParseJson(exported.out).fields();
  EXPECT_TRUE(f.at("verified").bool_value()) << exported.out;
  EXPECT_GE(f.at("tree_heads").number_value(), static_cast<double>(heads->size()));
  auto size = audit.Size();
  ASSERT_THAT(size, IsOk());
  EXPECT_GE(f.at("entries").number_value(), 1001.0);
  CliResult offline = Cli({"audit", "verify", "--bundle", prefix + ".bundle"});
  EXPECT_EQ(offline.code, 0) << offline.out << offline.err;
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
