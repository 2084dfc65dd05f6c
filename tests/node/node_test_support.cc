#include "tests/node/node_test_support.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"

namespace comity::testing {

// --- FakePeerTransport. ---

void FakePeerTransport::Count(const std::string& method) {
  absl::MutexLock lock(&mu_);
  ++calls_[method];
}

int FakePeerTransport::calls(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

namespace {
absl::Status NoHandler(const char* method) {
  return absl::UnavailableError(absl::StrCat("fake transport: no handler for ", method));
}
}  // namespace

absl::StatusOr<v1::SignedEnvelope> FakePeerTransport::DeliverRequest(
    const std::string& party, const v1::SignedEnvelope& request, absl::Duration) {
  Count("DeliverRequest");
  return on_deliver_request ? on_deliver_request(party, request)
                            : NoHandler("DeliverRequest");
}

absl::StatusOr<v1::SignedEnvelope> FakePeerTransport::DeliverTransition(
    const std::string& party, const v1::SignedEnvelope& transition, absl::Duration) {
  Count("DeliverTransition");
  return on_deliver_transition ? on_deliver_transition(party, transition)
                               : NoHandler("DeliverTransition");
}

absl::StatusOr<v1::SignedEnvelope> FakePeerTransport::ProposeTransition(
    const std::string& party, const v1::SignedEnvelope& proposal, absl::Duration) {
  Count("ProposeTransition");
  return on_propose ? on_propose(party, proposal) : NoHandler("ProposeTransition");
}

absl::Status FakePeerTransport::FetchEvidence(
    const std::string& party, const std::string& request_id, const std::string& sha256,
    uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn,
    absl::Duration) {
  Count("FetchEvidence");
  return on_fetch_evidence ? on_fetch_evidence(party, request_id, sha256, offset, fn)
                           : NoHandler("FetchEvidence");
}

absl::StatusOr<v1::SignedEnvelope> FakePeerTransport::ExchangeTreeHeads(
    const std::string& party, const v1::SignedEnvelope& our_head, absl::Duration) {
  Count("ExchangeTreeHeads");
  return on_exchange_heads ? on_exchange_heads(party, our_head)
                           : NoHandler("ExchangeTreeHeads");
}

absl::StatusOr<std::vector<std::string>> FakePeerTransport::GetConsistencyProof(
    const std::string& party, uint64_t old_size, uint64_t new_size, absl::Duration) {
  Count("GetConsistencyProof");
  return on_consistency_proof ? on_consistency_proof(party, old_size, new_size)
                              : NoHandler("GetConsistencyProof");
}

absl::Status FakePeerTransport::ReportSplitView(const std::string& party,
                                                const v1::SignedEnvelope& first,
                                                const v1::SignedEnvelope& second,
                                                absl::Duration) {
  Count("ReportSplitView");
  return on_report_split_view ? on_report_split_view(party, first, second)
                              : NoHandler("ReportSplitView");
}

absl::StatusOr<std::optional<v1::SignedEnvelope>> FakePeerTransport::GetHeldHead(
    const std::string& party, absl::Duration) {
  Count("GetHeldHead");
  return on_held_head ? on_held_head(party) : NoHandler("GetHeldHead");
}

absl::StatusOr<v1::GetSharedRecordsResponse> FakePeerTransport::GetSharedRecords(
    const std::string& party, const v1::GetSharedRecordsRequest& request, absl::Duration) {
  Count("GetSharedRecords");
  return on_shared_records ? on_shared_records(party, request)
                           : NoHandler("GetSharedRecords");
}

absl::StatusOr<bool> FakePeerTransport::AnnounceKey(const std::string& party,
                                                    const v1::AnnounceKeyRequest& request,
                                                    absl::Duration) {
  Count("AnnounceKey");
  return on_announce_key ? on_announce_key(party, request) : NoHandler("AnnounceKey");
}

// --- LoopbackTransport. ---

void LoopbackTransport::Connect(const std::string& party, Node* node) {
  absl::MutexLock lock(&mu_);
  nodes_[party] = node;
}

void LoopbackTransport::SetDown(const std::string& party, bool down) {
  absl::MutexLock lock(&mu_);
  down_[party] = down;
}

absl::StatusOr<Node*> LoopbackTransport::To(const std::string& party) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(party);
  if (it == nodes_.end() || it->second == nullptr || down_[party]) {
    return absl::UnavailableError(absl::StrCat("loopback: ", party, " is down"));
  }
  return it->second;
}

CallInfo LoopbackTransport::Call(const google::protobuf::Message& msg) const {
  return CallInfo{cert_pem_, "", "loopback", msg.ByteSizeLong()};
}

absl::StatusOr<v1::SignedEnvelope> LoopbackTransport::DeliverRequest(
    const std::string& party, const v1::SignedEnvelope& request, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().DeliverRequest(Call(request), request);
}

absl::StatusOr<v1::SignedEnvelope> LoopbackTransport::DeliverTransition(
    const std::string& party, const v1::SignedEnvelope& transition, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().DeliverTransition(Call(transition), transition);
}

absl::StatusOr<v1::SignedEnvelope> LoopbackTransport::ProposeTransition(
    const std::string& party, const v1::SignedEnvelope& proposal, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().ProposeTransition(Call(proposal), proposal);
}

absl::Status LoopbackTransport::FetchEvidence(
    const std::string& party, const std::string& request_id, const std::string& sha256,
    uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn,
    absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  v1::FetchEvidenceRequest req;
  req.set_request_id(request_id);
  req.set_sha256(sha256);
  req.set_offset(offset);
  COMITY_ASSIGN_OR_RETURN(
      std::unique_ptr<EvidenceReader> reader,
      node->peer_api().FetchEvidence(Call(req), request_id, sha256, offset));
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(std::string chunk, reader->Next());
    if (chunk.empty()) return absl::OkStatus();
    COMITY_RETURN_IF_ERROR(fn(chunk));
  }
}

absl::StatusOr<v1::SignedEnvelope> LoopbackTransport::ExchangeTreeHeads(
    const std::string& party, const v1::SignedEnvelope& our_head, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().ExchangeTreeHeads(Call(our_head), our_head);
}

absl::StatusOr<std::vector<std::string>> LoopbackTransport::GetConsistencyProof(
    const std::string& party, uint64_t old_size, uint64_t new_size, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().GetConsistencyProof(Call(v1::GetConsistencyProofRequest()),
                                              old_size, new_size);
}

absl::Status LoopbackTransport::ReportSplitView(const std::string& party,
                                                const v1::SignedEnvelope& first,
                                                const v1::SignedEnvelope& second,
                                                absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().ReportSplitView(Call(first), first, second);
}

absl::StatusOr<std::optional<v1::SignedEnvelope>> LoopbackTransport::GetHeldHead(
    const std::string& party, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().GetHeldHead(Call(v1::GetHeldHeadRequest()));
}

absl::StatusOr<v1::GetSharedRecordsResponse> LoopbackTransport::GetSharedRecords(
    const std::string& party, const v1::GetSharedRecordsRequest& request, absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().GetSharedRecords(Call(request), request);
}

absl::StatusOr<bool> LoopbackTransport::AnnounceKey(const std::string& party,
                                                    const v1::AnnounceKeyRequest& request,
                                                    absl::Duration) {
  COMITY_ASSIGN_OR_RETURN(Node * node, To(party));
  return node->peer_api().AnnounceKey(Call(request), request);
}

// --- NodeHarness. ---

NodeHarness::NodeHarness(const std::vector<std::string>& parties)
    : net_(parties), clock_(absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))) {
  for (const std::string& p : parties) dirs_[p] = net_.PartyDir(p);
}

const std::string& NodeHarness::PartyDir(const std::string& party) const {
  return dirs_.at(party);
}

absl::StatusOr<std::unique_ptr<Node>> NodeHarness::MakeNode(const std::string& party,
                                                            PeerTransport* transport,
                                                            const Clock* clock) {
  COMITY_ASSIGN_OR_RETURN(
      std::unique_ptr<NodeSetup> setup,
      ParseNodeConfig(net_.ConfigText(party), party + ".conf", PartyDir(party)));
  COMITY_RETURN_IF_ERROR(EnsureDir(setup->config.data_dir()));
  // Always SQLite here, whatever $COMITY_TEST_POSTGRES says: these are unit
  // tests of the duties, the store has its own suite on both backends.
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store,
                          OpenSqliteStore(setup->config.data_dir() + "/comity.db"));
  const NodeSetup* raw = setup.get();
  setups_[party] = std::move(setup);
  return Node::Create(raw, std::move(store), transport,
                      clock != nullptr ? clock : &clock_);
}

CallInfo NodeHarness::PeerCall(const std::string& party) const {
  auto pem = ReadFile(PartyDir(party) + "/node.pem");
  return CallInfo{pem.ok() ? *pem : "", "", "test", 0};
}

CallInfo NodeHarness::OperatorCall(const std::string& party,
                                   const std::string& name) const {
  auto pem = ReadFile(absl::StrCat(PartyDir(party), "/operators/", name, ".pem"));
  return CallInfo{pem.ok() ? *pem : "", "", "test", 0};
}

std::unique_ptr<LoopbackTransport> NodeHarness::Loopback(const std::string& party) const {
  auto pem = ReadFile(PartyDir(party) + "/node.pem");
  return std::make_unique<LoopbackTransport>(pem.ok() ? *pem : "");
}

v1::RequestBody NodeHarness::Draft(const std::string& to) {
  v1::RequestBody d;
  d.set_requested_party(to);
  d.set_assistance_type(v1::PRESERVATION);
  d.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
  v1::Particulars* p = d.mutable_particulars();
  p->set_requesting_authority("Parquet de Paris");
  p->set_facts_summary("ransomware on a hospital network");
  p->set_data_sought("connection logs of 203.0.113.7");
  p->set_relation_to_offence("C2 server");
  p->set_custodian_or_location("Example Hosting KK");
  p->set_necessity("logs rotate after 14 days");
  p->set_intends_mutual_assistance_request(true);
  d.mutable_handling()->set_tlp(v1::TLP_AMBER);
  return d;
}

bool WaitFor(const std::function<bool()>& fn, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    if (fn()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return fn();
}

absl::StatusOr<std::vector<v1::AuditEntry>> AuditEntriesOf(
    Node& node, v1::AuditEventType type, const std::string& request_id) {
  AuditFilter filter;
  filter.type = type;
  filter.request_id = request_id;
  COMITY_ASSIGN_OR_RETURN(std::vector<std::string> raw,
                          node.store()->audit().Entries(filter));
  std::vector<v1::AuditEntry> entries(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (!entries[i].ParseFromString(raw[i])) {
      return absl::DataLossError("an audit entry does not parse");
    }
  }
  return entries;
}

absl::StatusOr<v1::EvidenceFile> StageFile(EvidenceIntake& intake,
                                           const std::string& operator_name,
                                           const std::string& request_id,
                                           const std::string& path, const std::string& name) {
  COMITY_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  const std::string sha = Sha256(bytes);
  COMITY_ASSIGN_OR_RETURN(
      uint64_t offset, intake.BeginUpload(operator_name, request_id, name, bytes.size(), sha));
  COMITY_ASSIGN_OR_RETURN(auto upload,
                          intake.OpenUpload(operator_name, request_id, sha, offset));
  const size_t piece = intake.max_chunk_bytes();
  while (upload->received() < bytes.size()) {
    COMITY_RETURN_IF_ERROR(upload->Append(
        absl::string_view(bytes).substr(upload->received(), piece)));
  }
  return upload->Finish();
}

}  // namespace comity::testing
