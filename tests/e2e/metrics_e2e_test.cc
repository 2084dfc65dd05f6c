// The Prometheus endpoint of a real node (docs/metrics.md): fetched over
// plain HTTP after real requests, checked by metric name and value.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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
using ::testing::HasSubstr;

// GET http://127.0.0.1:port/path with a plain socket; the body, or "" on
// any failure (the test then fails on what it expected to find).
std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return "";
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") == std::string::npos ||
      body == std::string::npos) {
    return "";
  }
  return response.substr(body + 4);
}

// Sample lines ("name{labels} value") of an exposition, by series.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &v)) {
      continue;
    }
    out[std::string(line.substr(0, space))] = v;
  }
  return out;
}

class MetricsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    for (const char* p : {"FR", "JP"}) {
      ports_[p] = testing::TestNetwork::PickPort();
      net_->ConfigText(p) += absl::StrCat("metrics_listen_address: \"127.0.0.1:", ports_[p],
                                          "\"\n");
    }
    ASSERT_THAT(net_->Start("JP"), IsOk());
    ASSERT_THAT(net_->Start("FR"), IsOk());
  }
  CliResult Submit(const std::string& who = "alice") {
    return Cli({"--connect", net_->ClientConfigPath("FR", who), "submit", "--to", "JP",
                "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE", "--authority",
                "Parquet de Paris", "--facts", "ransomware", "--data-sought", "logs",
                "--relation", "C2", "--custodian", "Hosting KK", "--necessity", "rotation",
                "--intent-mla", "--json"});
  }
  std::map<std::string, double> Scrape(const std::string& party) {
    std::string body = HttpGet(ports_[party], "/metrics");
    EXPECT_FALSE(body.empty()) << "no metrics from " << party << " on port " << ports_[party];
    return Samples(body);
  }
  std::map<std::string, int> ports_;
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(MetricsE2eTest, RequestsLatencyAuditAndRefusalsAreExposed) {
  EXPECT_EQ(net_->server("FR")->metrics_port(), ports_["FR"]);
  CliResult r = Submit();
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string id = ParseJson(r.out).fields().at("id").string_value();
  auto records = net_->server("FR")->node()->Get(id);
  ASSERT_THAT(records.status(), IsOk());
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString((*records)[0].request().payload()));
  const std::string obligation =
      v1::Obligation_Name(body.requester_assessment().obligation());

  // An operator without the submitter role is refused at the door.
  CliResult denied = Submit("dave");
  EXPECT_NE(denied.code, 0);

  std::map<std::string, double> fr = Scrape("FR");
  EXPECT_EQ(fr["comity_store_up"], 1);
  EXPECT_EQ(fr["comity_requests{direction=\"sent\",partner=\"JP\",state=\"DELIVERED\"}"], 1);
  EXPECT_EQ(fr[absl::StrCat("comity_requests_assessed_total{direction=\"sent\",obligation=\"",
                            obligation, "\",partner=\"JP\"}")],
            1);
  EXPECT_EQ(fr["comity_delivery_latency_seconds_count{partner=\"JP\"}"], 1);
  EXPECT_GT(fr["comity_delivery_latency_seconds_sum{partner=\"JP\"}"], 0);
  EXPECT_LT(fr["comity_delivery_latency_seconds_sum{partner=\"JP\"}"], 60);
  EXPECT_EQ(fr["comity_delivery_latency_seconds_bucket{partner=\"JP\",le=\"+Inf\"}"], 1);
  // Dave's certificate is accepted; the role is missing: an operator's failure.
  EXPECT_EQ(fr["comity_auth_failures_total{source=\"operator\"}"], 1);
  // The gauge is the log's size at the scrape: between a read before and
  // one after.
  auto size = net_->server("FR")->node()->store()->audit().Size();
  ASSERT_THAT(size.status(), IsOk());
  EXPECT_GT(fr["comity_audit_log_entries"], 0);
  EXPECT_LE(fr["comity_audit_log_entries"], static_cast<double>(*size));

  std::map<std::string, double> jp = Scrape("JP");
  EXPECT_EQ(jp["comity_requests{direction=\"received\",partner=\"FR\",state=\"RECEIVED\"}"], 1);
  EXPECT_EQ(jp[absl::StrCat("comity_requests_assessed_total{direction=\"received\","
                            "obligation=\"",
                            obligation, "\",partner=\"FR\"}")],
            1);

  // JP down: the next request waits in FR's outbox.
  net_->Stop("JP");
  CliResult pending = Submit();
  ASSERT_EQ(pending.code, 0) << pending.err;
  fr = Scrape("FR");
  EXPECT_EQ(fr["comity_outbox_requests{peer=\"JP\"}"], 1);
  EXPECT_EQ(fr["comity_requests{direction=\"sent\",partner=\"JP\",state=\"PENDING_DELIVERY\"}"],
            1);
  EXPECT_EQ(fr["comity_delivery_latency_seconds_count{partner=\"JP\"}"], 1);
}

// Before anything happens, every series an alert may watch is there at 0
// (an alert on "no data" would not fire): per known peer and label value.
TEST_F(MetricsE2eTest, EverySeriesIsExportedAtZeroFromTheStart) {
  std::map<std::string, double> fr = Scrape("FR");
  auto zero = [&fr](const std::string& series) {
    auto it = fr.find(series);
    EXPECT_NE(it, fr.end()) << series << " is missing";
    if (it != fr.end()) {
      EXPECT_EQ(it->second, 0) << series;
    }
  };
  for (const char* obligation : {"BINDING", "DISCRETIONARY", "VOLUNTARY", "NOT_COVERED"}) {
    for (const char* direction : {"sent", "received"}) {
      zero(absl::StrCat("comity_requests_assessed_total{direction=\"", direction,
                        "\",obligation=\"", obligation, "\",partner=\"JP\"}"));
    }
  }
  zero("comity_requests_assessed_total{direction=\"received\",obligation=\"INVALID\",partner=\"JP\"}");
  EXPECT_EQ(fr.count("comity_requests_assessed_total{direction=\"sent\",obligation=\"INVALID\","
                     "partner=\"JP\"}"),
            0u);  // A node never sends an INVALID request.
  zero("comity_delivery_latency_seconds_count{partner=\"JP\"}");
  zero("comity_delivery_latency_seconds_sum{partner=\"JP\"}");
  zero("comity_delivery_latency_seconds_bucket{partner=\"JP\",le=\"+Inf\"}");
  zero("comity_auth_failures_total{source=\"operator\"}");
  zero("comity_auth_failures_total{source=\"tls\"}");
  for (const char* code : {"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT",
                           "ALREADY_EXISTS", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}) {
    zero(absl::StrCat("comity_peer_refusals_total{code=\"", code, "\",peer=\"JP\"}"));
  }
  zero("comity_peer_rate_limited_total{peer=\"JP\"}");
  zero("comity_outbox_requests{peer=\"JP\"}");
  zero("comity_outbox_steps{peer=\"JP\"}");
  for (const char* state :
       {"PENDING_DELIVERY", "DELIVERED", "DELIVERY_REJECTED", "AWAITING_APPROVAL"}) {
    zero(absl::StrCat("comity_requests{direction=\"sent\",partner=\"JP\",state=\"", state,
                      "\"}"));
  }
  zero("comity_requests{direction=\"received\",partner=\"JP\",state=\"RECEIVED\"}");
  EXPECT_EQ(fr["comity_store_up"], 1);
  // A series that had an event counts it, and stays one series.
  CliResult r = Submit();
  ASSERT_EQ(r.code, 0) << r.err;
  fr = Scrape("FR");
  EXPECT_EQ(fr["comity_requests{direction=\"sent\",partner=\"JP\",state=\"DELIVERED\"}"], 1);
  EXPECT_EQ(fr["comity_requests{direction=\"sent\",partner=\"JP\",state=\"PENDING_DELIVERY\"}"], 0);
  EXPECT_EQ(fr["comity_delivery_latency_seconds_count{partner=\"JP\"}"], 1);
}

TEST_F(MetricsE2eTest, ABadMetricsAddressIsRefusedWithTheField) {
  net_->Stop("FR");
  std::string& text = net_->ConfigText("FR");
  const size_t at = text.find("metrics_listen_address");
  ASSERT_NE(at, std::string::npos);
  text = absl::StrCat(text.substr(0, at), "metrics_listen_address: \"no-port\"\n",
                      text.substr(text.find('\n', at) + 1));
  absl::Status st = net_->Start("FR");
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("metrics_listen_address"));
}

}  // namespace
}  // namespace comity
