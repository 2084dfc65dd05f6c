#include "tests/fuzz/node_fixture.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/files.h"
#include "server/util/log.h"

namespace comity::fuzz {

// --- NoTransport. ---

namespace {
absl::Status Nowhere() { return absl::UnavailableError("fuzzing: no peer is reachable"); }
}  // namespace

absl::StatusOr<v1::SignedEnvelope> NoTransport::DeliverRequest(const std::string&,
                                                               const v1::SignedEnvelope&,
                                                               absl::Duration) {
  return Nowhere();
}
absl::StatusOr<v1::SignedEnvelope> NoTransport::DeliverTransition(const std::string&,
                                                                  const v1::SignedEnvelope&,
                                                                  absl::Duration) {
  return Nowhere();
}
absl::StatusOr<v1::SignedEnvelope> NoTransport::ProposeTransition(const std::string&,
                                                                  const v1::SignedEnvelope&,
                                                                  absl::Duration) {
  return Nowhere();
}
absl::Status NoTransport::FetchEvidence(const std::string&, const std::string&,
                                        const std::string&, uint64_t,
                                        const std::function<absl::Status(absl::string_view)>&,
                                        absl::Duration) {
  return Nowhere();
}
absl::StatusOr<v1::SignedEnvelope> NoTransport::ExchangeTreeHeads(const std::string&,
                                                                  const v1::SignedEnvelope&,
                                                                  absl::Duration) {
  return Nowhere();
}
absl::StatusOr<std::vector<std::string>> NoTransport::GetConsistencyProof(const std::string&,
                                                                          uint64_t, uint64_t,
                                                                          absl::Duration) {
  return Nowhere();
}
absl::Status NoTransport::ReportSplitView(const std::string&, const v1::SignedEnvelope&,
                                          const v1::SignedEnvelope&, absl::Duration) {
  return Nowhere();
}

// --- NodeFixture. ---

NodeFixture::NodeFixture() : clock_(absl::FromUnixSeconds(1798000000)) {
  // Node logs (one JSON line per accepted request) would drown libFuzzer's
  // output; they are still formatted, so JSON quoting is exercised.
  SetLogSinkForTesting([](const std::string&) {});
  const std::string net = MakeNetwork({kParty, kPeer});
  const std::string own = absl::StrCat(net, "/", kParty);
  auto pub = ReadFile(absl::StrCat(net, "/", kPeer, "/signing.pub"));
  Check(pub.ok(), "peer public key");
  std::string text = NodeConfigText(kParty, kPeer, absl::StrCat("../", kPeer, "/ca.pem"),
                                    std::string(absl::StripTrailingAsciiWhitespace(*pub)),
                                    SourceDir() + "/deploy/treaties");
  auto setup = ParseNodeConfig(text, "fuzz node config", own);
  Check(setup.ok(), setup.status().ToString());
  setup_ = *std::move(setup);
  auto peer_pem = ReadPrivateFile(absl::StrCat(net, "/", kPeer, "/signing.key"));
  Check(peer_pem.ok(), "peer signing key");
  auto peer_key = SigningKey::FromPem(*peer_pem);
  Check(peer_key.ok(), "peer signing key");
  peer_key_ = *std::move(peer_key);
  Check(::mkdir(setup_->config.data_dir().c_str(), 0700) == 0, setup_->config.data_dir());
  Reset();
}

NodeFixture::~NodeFixture() {
  node_.reset();
  SetLogSinkForTesting(nullptr);
}

void NodeFixture::Reset() {
  node_.reset();
  auto store = OpenSqliteStore(":memory:");
  Check(store.ok(), store.ok() ? "" : store.status().ToString());
  auto node = Node::Create(setup_.get(), *std::move(store), &transport_, &clock_);
  Check(node.ok(), node.ok() ? "" : node.status().ToString());
  node_ = *std::move(node);
}

v1::SignedEnvelope NodeFixture::SignAsPeer(absl::string_view payload_type,
                                           std::string payload) const {
  auto env = SignEnvelope(payload_type, std::move(payload), kPeer, kPeerKeyId, *peer_key_);
  Check(env.ok(), "signing as the peer");
  return *std::move(env);
}

v1::RequestBody NodeFixture::SampleRequest(int variant) const {
  static const char* const kIds[] = {
      "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7",
      "16fd2706-8baf-433b-82eb-8c7fada847da", "886313e1-3b8a-4372-9b90-0c9aee199e5d"};
  v1::RequestBody b;
  b.set_id(kIds[variant % 4]);
  b.set_requesting_party(kPeer);
  b.set_requested_party(kParty);
  b.mutable_created_at()->set_seconds(absl::ToUnixSeconds(now()));
  b.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
  b.mutable_particulars()->set_requesting_authority("Tokyo District Public Prosecutors Office");
  b.mutable_particulars()->set_facts_summary("ransomware against a hospital network");
  switch (variant % kSampleRequests) {
    case 0:
      b.set_assistance_type(v1::PRESERVATION);
      b.set_urgency(v1::URGENT);
      b.mutable_particulars()->set_data_sought("subscriber and traffic data of one account");
      b.mutable_particulars()->set_relation_to_offence("used to send the ransom note");
      b.mutable_particulars()->set_custodian_or_location("a provider in Paris");
      b.mutable_particulars()->set_necessity("the provider deletes logs after 30 days");
      b.mutable_particulars()->set_intends_mutual_assistance_request(true);
      break;
    case 1:
      b.set_assistance_type(v1::MUTUAL_ASSISTANCE);
      b.mutable_offence()->set_max_penalty_months(60);
      b.mutable_offence()->set_dual_criminality(v1::DUAL_CRIMINALITY_MET);
      b.mutable_handling()->set_confidential(true);
      b.mutable_handling()->add_use_limits("only for this investigation");
      b.mutable_handling()->set_tlp(v1::TLP_AMBER);
      b.add_related_request_ids(kIds[0]);
      break;
    case 2:
      b.set_assistance_type(v1::EXTRADITION);
      b.mutable_offence()->set_category(v1::OTHER);
      b.mutable_offence()->set_description("computer fraud");
      b.mutable_offence()->set_max_penalty_months(120);
      b.mutable_offence()->set_requested_party_max_penalty_months(84);
      break;
    default:
      b.set_assistance_type(v1::SUBSCRIBER_INFORMATION);
      b.set_urgency(v1::EMERGENCY);
      b.mutable_requester_assessment()->set_instrument("ETS185");
      b.mutable_requester_assessment()->set_obligation(v1::BINDING);
      b.mutable_handling()->set_tlp(v1::TLP_RED);
      break;
  }
  return b;
}

}  // namespace comity::fuzz
