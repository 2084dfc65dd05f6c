// Evidence from the operator, end to end on two nodes over TLS: no operator
// action makes a node release a file of its own (keys, database, devices),
// uploads resume and are verified, and server-side imports come only from a
// configured directory, without following links.
#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "comity/v1/operator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
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

constexpr uint64_t kMaxFileBytes = 8 << 20;

class EvidenceE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    for (const char* p : {"FR", "JP"}) {
      net_->ConfigText(p) += absl::StrCat("evidence { max_file_bytes: ", kMaxFileBytes, " }\n");
    }
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    id_ = Submit();
    ASSERT_EQ(Jp({"accept", id_}).code, 0);
  }

  std::string Submit() {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                       "JP", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian", "Hosting KK",
                       "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("JP", "bob")});
    return Cli(args);
  }
  std::unique_ptr<v1::OperatorService::Stub> JpStub(const std::string& name = "bob") {
    return v1::OperatorService::NewStub(net_->OperatorChannel("JP", name));
  }
  // Every evidence object either node stores.
  int StoredObjects(const std::string& party) {
    int n = 0;
    std::string cmd = absl::StrCat("find '", net_->PartyDir(party),
                                   "/data/evidence/objects' -type f | wc -l");
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f != nullptr) {
      if (std::fscanf(f, "%d", &n) != 1) n = -1;
      ::pclose(f);
    }
    return n;
  }
  // JP's audit entries of `type` for the test's request, as text.
  std::string JpAudit(const std::string& type) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "audit", "log",
                       "--type", type});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out;
  }
  std::string WriteBytes(const std::string& name, const std::string& bytes) {
    const std::string path = absl::StrCat(net_->dir(), "/", name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  grpc::Status Begin(v1::OperatorService::Stub* stub, const std::string& name,
                     const std::string& bytes, v1::BeginEvidenceUploadResponse* out) {
    v1::BeginEvidenceUploadRequest req;
    req.set_request_id(id_);
    req.set_name(name);
    req.set_size(bytes.size());
    req.set_sha256(Sha256(bytes));
    grpc::ClientContext ctx;
    return stub->BeginEvidenceUpload(&ctx, req, out);
  }
  // Streams `bytes` from `offset` for a file of SHA-256 `sha`, in pieces.
  grpc::Status Upload(v1::OperatorService::Stub* stub, const std::string& sha,
                      uint64_t offset, absl::string_view bytes,
                      v1::UploadEvidenceResponse* out) {
    grpc::ClientContext ctx;
    auto writer = stub->UploadEvidence(&ctx, out);
    v1::EvidenceUploadChunk chunk;
    chunk.set_request_id(id_);
    chunk.set_sha256(sha);
    chunk.set_offset(offset);
    if (bytes.empty()) writer->Write(chunk);
    for (size_t at = 0; at < bytes.size(); at += 256 << 10) {
      chunk.set_data(std::string(bytes.substr(at, 256 << 10)));
      if (!writer->Write(chunk)) break;
      chunk.clear_request_id();
      chunk.clear_sha256();
      chunk.clear_offset();
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::unique_ptr<testing::TestNetwork> net_;
  std::string id_;
};

TEST_F(EvidenceE2eTest, NoOperatorActionReleasesTheNodesOwnKeys) {
  const std::string jp = net_->PartyDir("JP");
  const std::string fr = net_->PartyDir("FR");
  const int fr_before = StoredObjects("FR");
  const int jp_before = StoredObjects("JP");
  for (const std::string& path :
       {jp + "/signing.key", jp + "/node.key", jp + "/data/../signing.key",
        jp + "/operators/bob.key", fr + "/signing.key", fr + "/ca.key"}) {
    CliResult r = Jp({"respond", id_, "--text", "the logs", "--file", path, "--final"});
    EXPECT_EQ(r.code, 1) << path << ": " << r.out;
    EXPECT_THAT(r.err, HasSubstr("private key")) << path;
  }
  // A key copied into a larger file, or with text around it, is still one.
  auto key = ReadFile(jp + "/signing.key");
  ASSERT_THAT(key, IsOk());
  const std::string wrapped =
      WriteBytes("notes.txt", "my notes\n" + *key + "\nmore notes\n" + std::string(4000, 'x'));
  CliResult r = Jp({"respond", id_, "--text", "notes", "--file", wrapped});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("private key"));

  // Nothing was released, nothing stays stored, every refusal is an entry.
  EXPECT_EQ(StoredObjects("JP"), jp_before);
  EXPECT_EQ(StoredObjects("FR"), fr_before);
  auto jp_record = net_->server("JP")->node()->Get(id_);
  ASSERT_THAT(jp_record, IsOk());
  EXPECT_EQ((*jp_record)[0].case_state(), v1::CASE_ACCEPTED);
  std::string refused = JpAudit("OPERATOR_REQUEST_REFUSED");
  EXPECT_THAT(refused, HasSubstr("UploadEvidence"));
  EXPECT_THAT(refused, HasSubstr("private key"));
}

// The same content answers two requests (a log both asked for): the node
// holds it already, the second upload has nothing to send, and still stages
// the file for its own request.
TEST_F(EvidenceE2eTest, AFileTheNodeHoldsAlreadyAnswersAnotherRequest) {
  const std::string bytes(90000, 'd');
  const std::string path = WriteBytes("shared-logs.tar", bytes);
  CliResult first = Jp({"respond", id_, "--text", "the logs", "--file", path});
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string second_id = Submit();
  ASSERT_EQ(Jp({"accept", second_id}).code, 0);
  CliResult second = Jp({"respond", second_id, "--text", "the same logs", "--file", path});
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(StoredObjects("JP"), 1) << "one copy of the content";
  // And a third time on the first request, in a second response.
  CliResult again = Jp({"respond", id_, "--text", "again", "--file", path, "--final"});
  EXPECT_EQ(again.code, 0) << again.err;
}

TEST_F(EvidenceE2eTest, DevicesFifosAndVirtualFilesAreRefusedAtOnce) {
  const std::string fifo = net_->dir() + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {std::string("/dev/zero"), std::string("/dev/urandom"), fifo,
                                  net_->dir()}) {
    CliResult r = Jp({"respond", id_, "--text", "x", "--file", path});
    EXPECT_EQ(r.code, 1) << path;
    EXPECT_THAT(r.err, HasSubstr("not a regular file")) << path << ": " << r.err;
  }
  CliResult environ = Jp({"respond", id_, "--text", "x", "--file", "/proc/self/environ"});
  EXPECT_EQ(environ.code, 1);
  EXPECT_THAT(environ.err, HasSubstr("empty"));
  CliResult missing = Jp({"respond", id_, "--text", "x", "--file", net_->dir() + "/nope"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope"));
}

TEST_F(EvidenceE2eTest, TheRpcRefusesPathsOnTheNode) {
  auto stub = JpStub();
  v1::DecideRequestRequest req;
  req.set_id(id_);
  req.set_action(v1::RESPOND);
  req.set_text("the logs");
  req.add_evidence_paths(net_->PartyDir("JP") + "/signing.key");
  v1::DecideRequestResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = stub->DecideRequest(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("evidence_paths is no longer accepted"));
  EXPECT_THAT(JpAudit("OPERATOR_REQUEST_REFUSED"), HasSubstr("evidence_paths"));

  // Nor can a response list a file that was not staged for its request.
  v1::DecideRequestRequest unstaged;
  unstaged.set_id(id_);
  unstaged.set_action(v1::RESPOND);
  unstaged.set_text("the logs");
  unstaged.add_evidence_sha256(Sha256("never uploaded"));
  grpc::ClientContext ctx2;
  st = stub->DecideRequest(&ctx2, unstaged, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("is staged for request"));
}

TEST_F(EvidenceE2eTest, UploadsResumeAreVerifiedAndReachThePartner) {
  auto stub = JpStub();
  std::string bytes(3 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 7919) >> 5);
  const std::string sha = Sha256(bytes);

  v1::BeginEvidenceUploadResponse begun;
  ASSERT_TRUE(Begin(stub.get(), "disk.img", bytes, &begun).ok());
  EXPECT_EQ(begun.offset(), 0u);
  EXPECT_GT(begun.max_chunk_bytes(), 0u);
  // Half, then the stream ends: the node keeps what it received.
  v1::UploadEvidenceResponse half;
  ASSERT_TRUE(Upload(stub.get(), sha, 0, absl::string_view(bytes).substr(0, 1 << 20), &half)
                  .ok());
  EXPECT_EQ(half.received(), 1u << 20);
  EXPECT_FALSE(half.has_file());
  ASSERT_TRUE(Begin(stub.get(), "disk.img", bytes, &begun).ok());
  EXPECT_EQ(begun.offset(), 1u << 20);
  // From the wrong offset: refused, naming the right one.
  v1::UploadEvidenceResponse wrong;
  grpc::Status st = Upload(stub.get(), sha, 5, "abc", &wrong);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("send from offset 1048576"));
  // The rest with one byte changed: the hash does not match, all is dropped.
  std::string corrupt = bytes.substr(1 << 20);
  corrupt[12345] ^= 1;
  v1::UploadEvidenceResponse bad;
  st = Upload(stub.get(), sha, 1 << 20, corrupt, &bad);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  ASSERT_TRUE(Begin(stub.get(), "disk.img", bytes, &begun).ok());
  EXPECT_EQ(begun.offset(), 0u);
  // The whole file, right: staged, and audited.
  v1::UploadEvidenceResponse done;
  st = Upload(stub.get(), sha, 0, bytes, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(done.has_file());
  EXPECT_EQ(done.file().sha256(), sha);
  EXPECT_THAT(JpAudit("EVIDENCE_IMPORTED"), HasSubstr("disk.img, 3145728 bytes, uploaded"));

  // The response lists it; FR fetches the same bytes.
  v1::DecideRequestRequest respond;
  respond.set_id(id_);
  respond.set_action(v1::RESPOND);
  respond.set_text("disk image");
  respond.set_final_response(true);
  respond.add_evidence_sha256(sha);
  v1::DecideRequestResponse decided;
  grpc::ClientContext ctx;
  st = stub->DecideRequest(&ctx, respond, &decided);
  ASSERT_TRUE(st.ok()) << st.error_message();
  Node* fr = net_->server("FR")->node();
  bool held = false;
  for (int i = 0; i < 100 && !held; ++i) {
    fr->evidence().FetchRound("JP", [] { return false; });
    held = fr->evidence().files().Has(sha);
    if (!held) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(held);
  auto fetched = ReadFile(fr->evidence().files().PathOf(sha));
  ASSERT_THAT(fetched, IsOk());
  EXPECT_EQ(*fetched, bytes);
}

TEST_F(EvidenceE2eTest, UploadsAreBoundedAndForReviewersOnly) {
  auto stub = JpStub();
  v1::BeginEvidenceUploadResponse begun;
  // Over evidence.max_file_bytes.
  v1::BeginEvidenceUploadRequest big;
  big.set_request_id(id_);
  big.set_name("huge.img");
  big.set_size(kMaxFileBytes + 1);
  big.set_sha256(Sha256("x"));
  grpc::ClientContext c1;
  grpc::Status st = stub->BeginEvidenceUpload(&c1, big, &begun);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("evidence.max_file_bytes"));
  // Names that are paths.
  for (const char* name : {"../x", "a/b", "..", "", "a\nb"}) {
    st = Begin(stub.get(), name, "data", &begun);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
  }
  // A request the node sent, or does not know.
  v1::BeginEvidenceUploadRequest unknown;
  unknown.set_request_id("no-such-request");
  unknown.set_name("x");
  unknown.set_size(4);
  unknown.set_sha256(Sha256("data"));
  grpc::ClientContext c2;
  st = stub->BeginEvidenceUpload(&c2, unknown, &begun);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  // An auditor may not upload; an upload without a Begin is refused.
  st = Begin(JpStub("carol").get(), "x", "data", &begun);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::UploadEvidenceResponse resp;
  st = Upload(stub.get(), Sha256("other"), 0, "other", &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // One message over the node's chunk size.
  ASSERT_TRUE(Begin(stub.get(), "x", std::string(4 << 20, 'a'), &begun).ok());
  grpc::ClientContext c3;
  auto writer = stub->UploadEvidence(&c3, &resp);
  v1::EvidenceUploadChunk chunk;
  chunk.set_request_id(id_);
  chunk.set_sha256(Sha256(std::string(4 << 20, 'a')));
  chunk.set_data(std::string(begun.max_chunk_bytes() + 1, 'a'));
  writer->Write(chunk);
  writer->WritesDone();
  st = writer->Finish();
  EXPECT_TRUE(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
}

class EvidenceImportE2eTest : public EvidenceE2eTest {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    outbox_ = net_->PartyDir("JP") + "/outbox";
    ASSERT_EQ(::mkdir(outbox_.c_str(), 0700), 0);
    net_->ConfigText("JP") += absl::StrCat("evidence { max_file_bytes: ", kMaxFileBytes,
                                           " import_dir: \"outbox\" }\n");
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    id_ = Submit();
    ASSERT_EQ(Jp({"accept", id_}).code, 0);
  }
  std::string outbox_;
};

TEST_F(EvidenceImportE2eTest, OnlyRegularFilesOfTheImportDirWithoutLinks) {
  const std::string jp = net_->PartyDir("JP");
  std::ofstream(outbox_ + "/logs.tar") << std::string(100000, 'l');
  ASSERT_EQ(::symlink((jp + "/signing.key").c_str(), (outbox_ + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("../node.key", (outbox_ + "/relative-link").c_str()), 0);
  ASSERT_EQ(::link((jp + "/signing.key").c_str(), (outbox_ + "/hard").c_str()), 0);
  ASSERT_EQ(::mkfifo((outbox_ + "/pipe").c_str(), 0600), 0);
  ASSERT_EQ(::mkdir((outbox_ + "/sub").c_str(), 0700), 0);
  std::ofstream(outbox_ + "/sub/inner") << "inner";
  auto key = ReadFile(jp + "/node.key");
  ASSERT_THAT(key, IsOk());
  std::ofstream(outbox_ + "/copy.pem") << *key;
  {
    std::ofstream big(outbox_ + "/big.img", std::ios::binary);
    big << std::string(kMaxFileBytes + 1, 'b');
  }

  const struct {
    const char* name;
    const char* rule;
  } refused[] = {
      {"../signing.key", "not a plain file name"},
      {"sub/inner", "not a plain file name"},
      {"link", "symbolic link"},
      {"relative-link", "symbolic link"},
      {"hard", "hard links"},
      {"pipe", "not a regular file"},
      {"sub", "not a regular file"},
      {"copy.pem", "private key"},
      {"big.img", "over this node's limit"},
      {"missing", "missing"},
  };
  for (const auto& r : refused) {
    CliResult out = Jp({"respond", id_, "--text", "x", "--import", r.name});
    EXPECT_EQ(out.code, 1) << r.name;
    EXPECT_THAT(out.err, HasSubstr(r.rule)) << r.name << ": " << out.err;
  }
  EXPECT_THAT(JpAudit("OPERATOR_REQUEST_REFUSED"), HasSubstr("ImportEvidence"));

  CliResult ok = Jp({"respond", id_, "--text", "the logs", "--import", "logs.tar", "--final"});
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_THAT(JpAudit("EVIDENCE_IMPORTED"), HasSubstr("logs.tar, 100000 bytes, imported"));
}

TEST_F(EvidenceE2eTest, NoImportDirNoImportAndADirHoldingKeysIsRefused) {
  CliResult r = Jp({"respond", id_, "--text", "x", "--import", "signing.key"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no evidence.import_dir"));
  // A node whose import_dir would hold its own files does not start.
  for (const char* dir : {".", "data", "data/evidence", "/"}) {
    std::string config = net_->ConfigText("JP");
    const std::string block = absl::StrCat("evidence { max_file_bytes: ", kMaxFileBytes);
    config.replace(config.find(block), block.size(),
                   absl::StrCat(block, " import_dir: \"", dir, "\""));
    auto setup = ParseNodeConfig(config, "JP.conf", net_->PartyDir("JP"));
    ASSERT_FALSE(setup.ok()) << dir;
    EXPECT_THAT(std::string(setup.status().message()), HasSubstr("evidence.import_dir"))
        << dir;
  }
}

}  // namespace
}  // namespace comity
