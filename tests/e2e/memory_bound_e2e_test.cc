// The memory of a node stays bounded whatever the size of the messages sent
// to its listeners: 100 MB and 1 GB messages, one at a time and several at
// once, to the peer listener (as a partner node, over mutual TLS) and to
// the operator listener (as an operator without any role), against a real
// comityd child process whose resident memory is read from
// /proc/<pid>/status. The bound is docs/envelope.md's, "Size limits".
//
// The messages are streamed from one 1 MiB block that every slice points
// at, so the test itself holds about 1 MiB whatever it sends.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/health_cli.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "tests/testing/comityd_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::ComitydProcess;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::testing::AnyOf;
using ::testing::Each;
using ::testing::Eq;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kMB = 1000 * 1000;

// docs/envelope.md, "Size limits": each listener's gRPC resource quota
// (32 MiB with the default limits.max_message_bytes), and what the node's
// peak resident memory may grow by beyond it while huge messages are
// refused (the calls and the parse of the messages that do get in).
constexpr int64_t kQuotaKb = 64 * 1024;
constexpr int64_t kSlackKb = 48 * 1024;
constexpr int64_t kBoundKb = kQuotaKb + kSlackKb;  // One listener.

// One block that every slice of a huge message points at.
const std::string& Block() {
  static const std::string* block = new std::string(kMiB, 'x');
  return *block;
}

// A valid protobuf message of `bytes` bytes and a few more, for any message
// type: one unknown length-delimited field (number 1000) whose bytes are
// Block() again and again. gRPC frames it with a length prefix of the whole
// size and sends it as it goes.
grpc::ByteBuffer HugeMessage(int64_t bytes) {
  std::string header;
  auto varint = [&header](uint64_t v) {
    while (v >= 0x80) {
      header.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    header.push_back(static_cast<char>(v));
  };
  varint((1000 << 3) | 2);
  varint(static_cast<uint64_t>(bytes));
  std::vector<grpc::Slice> slices;
  slices.emplace_back(header);  // A copy.
  for (int64_t left = bytes; left > 0; left -= kMiB) {
    slices.emplace_back(Block().data(), static_cast<size_t>(std::min(left, kMiB)),
                        grpc::Slice::STATIC_SLICE);
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// Sends `message` as one unary call of `method`; the status it ends with.
grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel,
                  const std::string& method, const grpc::ByteBuffer& message) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &message, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  return status;
}

enum class To { kPeer, kOperator };

const char* Name(To to) { return to == To::kPeer ? "peer" : "operator"; }

// A unary method of the listener that any message type parses into.
const char* Method(To to) {
  return to == To::kPeer ? "/comity.v1.PeerService/DeliverRequest"
                         : "/comity.v1.OperatorService/SubmitRequest";
}

class MemoryBoundE2eTest : public ::testing::Test {
 protected:
  // Each test starts a node of its own: memory a node once took and freed
  // is often kept by the allocator, and would count against the next case.
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    const std::string fr = net_->PartyDir("FR");
    ASSERT_THAT(WriteFileAtomically(fr + "/node.conf", net_->ConfigText("FR"), 0644),
                IsOk());
    auto child =
        ComitydProcess::Spawn(COMITYD_PATH, fr + "/node.conf", fr + "/comityd.log");
    ASSERT_THAT(child.status(), IsOk());
    node_ = *std::move(child);
    ASSERT_TRUE(
        node_->WaitServing(net_->ClientConfigPath("FR", "dave"), absl::Seconds(30)))
        << node_->Log();
    // Both listeners have served a call (their first buffers are in).
    ExpectServing();
    auto rss = node_->StatusKb("VmRSS");
    ASSERT_THAT(rss.status(), IsOk());
    baseline_kb_ = *rss;
  }

  // A connection of its own (no subchannel shared with another channel):
  // to the peer listener as JP's node, to the operator listener as dave, an
  // operator of FR without any role.
  std::shared_ptr<grpc::Channel> Channel(To to) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    const std::string fr = net_->PartyDir("FR");
    if (to == To::kPeer) {
      const std::string jp = net_->PartyDir("JP");
      return testing::MtlsChannel(net_->peer_port("FR"), fr + "/ca.pem", jp + "/node.pem",
                                  jp + "/node.key", args);
    }
    return testing::MtlsChannel(net_->operator_port("FR"), fr + "/ca.pem",
                                fr + "/operators/dave.pem", fr + "/operators/dave.key",
                                args);
  }

  void ExpectServing() {
    for (To to : {To::kPeer, To::kOperator}) {
      EXPECT_THAT(CheckHealth(Channel(to), "", absl::Seconds(10)),
                  IsOkAndHolds(HealthStatus::kServing))
          << Name(to) << "\n"
          << node_->Log();
    }
  }

  struct Batch {
    To to;
    int64_t bytes;        // Of each message.
    int copies;           // Sent at once.
    bool one_connection;  // All on one connection, else each on its own.
  };
  struct Outcome {
    std::vector<std::vector<grpc::StatusCode>> codes;  // Per batch, per copy.
    int64_t growth_kb;  // Of the node's peak resident memory over its start.
  };

  // Sends all of `batches` at once and waits for every call to end.
  Outcome Send(const std::vector<Batch>& batches) {
    // Forgets the peak so far: VmHWM starts again from VmRSS.
    std::ofstream(absl::StrCat("/proc/", node_->pid(), "/clear_refs")) << "5";
    const absl::Time start = absl::Now();
    std::vector<grpc::ByteBuffer> messages;
    std::vector<std::shared_ptr<grpc::Channel>> shared;
    std::vector<std::vector<grpc::Status>> statuses;
    for (const Batch& b : batches) {
      messages.push_back(HugeMessage(b.bytes));
      shared.push_back(Channel(b.to));
      statuses.emplace_back(b.copies);
    }
    std::vector<std::thread> threads;
    for (size_t i = 0; i < batches.size(); ++i) {
      for (int j = 0; j < batches[i].copies; ++j) {
        threads.emplace_back([&, i, j] {
          const Batch& b = batches[i];
          statuses[i][j] = Call(b.one_connection ? shared[i] : Channel(b.to),
                                Method(b.to), messages[i]);
        });
      }
    }
    for (std::thread& t : threads) t.join();
    auto peak = node_->StatusKb("VmHWM");
    EXPECT_THAT(peak.status(), IsOk());
    Outcome out{{}, peak.ok() ? *peak - baseline_kb_ : 0};
    for (size_t i = 0; i < batches.size(); ++i) {
      const Batch& b = batches[i];
      std::printf("memory: %s listener, %d x %lld MB%s\n", Name(b.to), b.copies,
                  static_cast<long long>(b.bytes / kMB),
                  b.copies == 1      ? ""
                  : b.one_connection ? " on one connection"
                                     : " on connections of their own");
      out.codes.emplace_back();
      std::map<std::string, int> seen;  // How many calls ended with each status.
      for (const grpc::Status& st : statuses[i]) {
        out.codes.back().push_back(st.error_code());
        ++seen[absl::StrCat(st.error_code(), " ", st.error_message())];
      }
      for (const auto& [status, n] : seen)
        std::printf("memory:   %d x %s\n", n, status.c_str());
    }
    std::printf("memory: peak RSS +%lld MB over %lld MB after start, %s\n",
                static_cast<long long>(out.growth_kb / 1024),
                static_cast<long long>(baseline_kb_ / 1024),
                absl::FormatDuration(absl::Now() - start).c_str());
    return out;
  }

  std::unique_ptr<testing::TestNetwork> net_;
  std::unique_ptr<ComitydProcess> node_;
  int64_t baseline_kb_ = 0;
};

// A stream the listener's quota cuts off ends RESOURCE_EXHAUSTED (HTTP/2
// RST_STREAM ENHANCE_YOUR_CALM); one on a connection that gRPC closes to
// free memory (GOAWAY) ends UNAVAILABLE.
const auto kRefused =
    AnyOf(Eq(grpc::StatusCode::RESOURCE_EXHAUSTED), Eq(grpc::StatusCode::UNAVAILABLE));

TEST_F(MemoryBoundE2eTest, AHundredMegabyteMessageToThePeerListener) {
  Outcome out = Send({{To::kPeer, 100 * kMB, 1, true}});
  EXPECT_THAT(out.codes[0], Each(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_LT(out.growth_kb, kBoundKb);
  ExpectServing();
}

TEST_F(MemoryBoundE2eTest, AGigabyteMessageToThePeerListener) {
  Outcome out = Send({{To::kPeer, 1000 * kMB, 1, true}});
  EXPECT_THAT(out.codes[0], Each(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_LT(out.growth_kb, kBoundKb);
  ExpectServing();
}

TEST_F(MemoryBoundE2eTest, AHundredMegabyteMessageFromARolelessOperator) {
  Outcome out = Send({{To::kOperator, 100 * kMB, 1, true}});
  EXPECT_THAT(out.codes[0], Each(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_LT(out.growth_kb, kBoundKb);
  ExpectServing();
}

TEST_F(MemoryBoundE2eTest, AGigabyteMessageFromARolelessOperator) {
  Outcome out = Send({{To::kOperator, 1000 * kMB, 1, true}});
  EXPECT_THAT(out.codes[0], Each(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_LT(out.growth_kb, kBoundKb);
  ExpectServing();
}

TEST_F(MemoryBoundE2eTest, EightGigabyteMessagesOnOneConnectionToEachListener) {
  Outcome out =
      Send({{To::kPeer, 1000 * kMB, 8, true}, {To::kOperator, 1000 * kMB, 8, true}});
  EXPECT_THAT(out.codes[0], Each(kRefused));
  EXPECT_THAT(out.codes[1], Each(kRefused));
  EXPECT_LT(out.growth_kb, 2 * kBoundKb);
  ExpectServing();
}

TEST_F(MemoryBoundE2eTest, EightGigabyteMessagesOnConnectionsOfTheirOwnToEachListener) {
  Outcome out =
      Send({{To::kPeer, 1000 * kMB, 8, false}, {To::kOperator, 1000 * kMB, 8, false}});
  EXPECT_THAT(out.codes[0], Each(kRefused));
  EXPECT_THAT(out.codes[1], Each(kRefused));
  EXPECT_LT(out.growth_kb, 2 * kBoundKb);
  ExpectServing();
}

// Many messages that are each within the listener's limit (1 MB, the
// default limits.max_message_bytes being 1 MiB) all reach the handlers,
// which refuse them for who sent them (the envelope is not JP's; dave has
// no role): the quota cuts off none of them, and the cap on streams keeps
// them from being held all at once.
TEST_F(MemoryBoundE2eTest, ManyMessagesWithinTheLimitReachTheHandlers) {
  Outcome out =
      Send({{To::kPeer, 1 * kMB, 100, true}, {To::kOperator, 1 * kMB, 100, true}});
  // The handlers see (nearly) all of them. On a loaded machine the quota
  // may still cut the odd one (RESOURCE_EXHAUSTED), which a partner's
  // outbox retries (docs/delivery.md); never more than a few.
  for (const auto& codes : out.codes) {
    EXPECT_THAT(codes, Each(AnyOf(Eq(grpc::StatusCode::PERMISSION_DENIED),
                                  Eq(grpc::StatusCode::RESOURCE_EXHAUSTED))));
    EXPECT_GE(std::count(codes.begin(), codes.end(), grpc::StatusCode::PERMISSION_DENIED), 95);
  }
  EXPECT_LT(out.growth_kb, 2 * kBoundKb);
  ExpectServing();
}

}  // namespace
}  // namespace comity
