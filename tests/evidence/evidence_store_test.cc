#include "server/crypto/sha256.h"
#include "server/evidence/evidence_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/ed25519.h"
#include "server/util/hex.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kDefaultLimit = 64 * kMiB;

// Deterministic pseudo-random bytes, addressable by position so that any
// range can be produced on its own, in any chunking (splitmix64 per 8-byte
// word).
std::string Bytes(uint64_t seed, uint64_t offset, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n;) {
    uint64_t pos = offset + i;
    uint64_t z = seed + (pos / 8 + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (size_t b = pos % 8; b < 8 && i < n; ++b, ++i) {
      out[i] = static_cast<char>(z >> (8 * b));
    }
  }
  return out;
}

// SHA-256 of Bytes(seed, 0, size), computed a chunk at a time.
std::string HashOf(uint64_t seed, uint64_t size) {
  Sha256Stream hash;
  for (uint64_t pos = 0; pos < size; pos += kMiB) {
    hash.Update(Bytes(seed, pos, static_cast<size_t>(std::min(kMiB, size - pos))));
  }
  return hash.Finish();
}

int ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST(Sha256StreamTest, KnownAnswers) {
  Sha256Stream hash;
  EXPECT_EQ(HexEncode(hash.Finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  hash.Update("a");
  hash.Update("");
  hash.Update("bc");
  EXPECT_EQ(HexEncode(hash.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Finish resets the stream.
  hash.Update("abc");
  EXPECT_EQ(HexEncode(hash.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256StreamTest, UnevenChunksMatchOneShot) {
  const std::string data = Bytes(7, 0, kMiB + 1);
  Sha256Stream hash;
  size_t pos = 0;
  for (size_t step = 1; pos < data.size(); step = step * 3 + 1) {
    size_t n = std::min(step, data.size() - pos);
    hash.Update(absl::string_view(data).substr(pos, n));
    pos += n;
  }
  EXPECT_EQ(hash.Finish(), Sha256(data));
}

class EvidenceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                     "/evidence_test.XXXXXX");
    ASSERT_NE(::mkdtemp(templ.data()), nullptr) << "mkdtemp " << templ;
    dir_ = templ;
    root_ = dir_ + "/evidence";
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }

  void TearDown() override {
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Destroys the store (as a crash would, partial uploads stay on disk) and
  // opens a new one on the same root.
  void Reopen(uint64_t limit = kDefaultLimit) {
    store_.reset();
    COMITY_ASSERT_OK_AND_ASSIGN(store_, EvidenceStore::Open(root_, limit));
  }

  // Sends Bytes(seed, from, to - from) in chunks of `chunk` bytes.
  absl::Status Send(const std::string& id, uint64_t seed, uint64_t from, uint64_t to,
                    uint64_t chunk = kMiB) {
    for (uint64_t pos = from; pos < to; pos += chunk) {
      absl::Status s = store_->AppendChunk(
          id, pos, Bytes(seed, pos, static_cast<size_t>(std::min(chunk, to - pos))));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Hashes the stored object by streaming it; `*size` gets its length.
  absl::StatusOr<std::string> HashByReading(absl::string_view sha256, uint64_t* size,
                                            size_t chunk = kMiB) {
    Sha256Stream hash;
    *size = 0;
    absl::Status s = store_->Read(sha256, 0, chunk, [&](absl::string_view piece) {
      EXPECT_LE(piece.size(), chunk);
      hash.Update(piece);
      *size += piece.size();
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return hash.Finish();
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<EvidenceStore> store_;
};

TEST_F(EvidenceStoreTest, OpenCreatesPrivateDirectories) {
  EXPECT_EQ(ModeOf(root_ + "/objects"), 0700);
  EXPECT_EQ(ModeOf(root_ + "/partial"), 0700);
}

TEST_F(EvidenceStoreTest, UploadsLargeFileInChunks) {
  constexpr uint64_t kSize = 20 * kMiB;
  const std::string sha = HashOf(1, kSize);
  EXPECT_THAT(store_->BeginUpload("big-1", kSize, sha), IsOkAndHolds(0u));
  ASSERT_THAT(Send("big-1", 1, 0, kSize), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(std::string path, store_->FinishUpload("big-1"));

  const std::string hex = HexEncode(sha);
  EXPECT_EQ(path, absl::StrCat(root_, "/objects/", hex.substr(0, 2), "/", hex));
  EXPECT_EQ(path, store_->PathOf(sha));
  EXPECT_TRUE(store_->Has(sha));
  EXPECT_EQ(ModeOf(path), 0600);
  uint64_t size = 0;
  EXPECT_THAT(HashByReading(sha, &size), IsOkAndHolds(sha));
  EXPECT_EQ(size, kSize);
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
  // The upload is over.
  EXPECT_THAT(store_->AppendChunk("big-1", kSize, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("BeginUpload")));
}

TEST_F(EvidenceStoreTest, ResumesAfterCrash) {
  constexpr uint64_t kSize = 12 * kMiB + 12345;
  const std::string sha = HashOf(2, kSize);
  EXPECT_THAT(store_->BeginUpload("t2", kSize, sha), IsOkAndHolds(0u));
  ASSERT_THAT(Send("t2", 2, 0, 7 * kMiB), IsOk());

  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(store_->BeginUpload("t2", kSize, sha), IsOkAndHolds(7 * kMiB));
  // Uneven chunks for the rest.
  ASSERT_THAT(Send("t2", 2, 7 * kMiB, kSize, 3 * kMiB / 2 + 7), IsOk());
  EXPECT_THAT(store_->FinishUpload("t2"), IsOkAndHolds(store_->PathOf(sha)));
  uint64_t size = 0;
  EXPECT_THAT(HashByReading(sha, &size, 777777), IsOkAndHolds(sha));
  EXPECT_EQ(size, kSize);
}

TEST_F(EvidenceStoreTest, BeginAgainInSameStoreReturnsBytesReceived) {
  const std::string sha = HashOf(3, 3 * kMiB);
  ASSERT_THAT(store_->BeginUpload("t3", 3 * kMiB, sha), IsOkAndHolds(0u));
  ASSERT_THAT(Send("t3", 3, 0, kMiB + 5, 4096), IsOk());
  EXPECT_THAT(store_->BeginUpload("t3", 3 * kMiB, sha), IsOkAndHolds(kMiB + 5));
  ASSERT_THAT(Send("t3", 3, kMiB + 5, 3 * kMiB), IsOk());
  EXPECT_THAT(store_->FinishUpload("t3"), IsOk());
  EXPECT_TRUE(store_->Has(sha));
}

TEST_F(EvidenceStoreTest, WrongOffsetIsFailedPreconditionNamingExpectedOffset) {
  const std::string sha = HashOf(4, 8192);
  ASSERT_THAT(store_->BeginUpload("t4", 8192, sha), IsOk());
  ASSERT_THAT(Send("t4", 4, 0, 1024), IsOk());
  EXPECT_THAT(store_->AppendChunk("t4", 2048, Bytes(4, 2048, 100)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("send from offset 1024")));
  EXPECT_THAT(store_->AppendChunk("t4", 0, Bytes(4, 0, 100)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("send from offset 1024")));
  // Nothing was written by the rejected chunks.
  ASSERT_THAT(Send("t4", 4, 1024, 8192), IsOk());
  EXPECT_THAT(store_->FinishUpload("t4"), IsOk());
}

TEST_F(EvidenceStoreTest, ChunkPastDeclaredSizeIsInvalidArgument) {
  const std::string sha = HashOf(5, 1000);
  ASSERT_THAT(store_->BeginUpload("t5", 1000, sha), IsOk());
  ASSERT_THAT(Send("t5", 5, 0, 900), IsOk());
  EXPECT_THAT(store_->AppendChunk("t5", 900, Bytes(5, 900, 101)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("past the declared size of 1000")));
  ASSERT_THAT(Send("t5", 5, 900, 1000), IsOk());
  EXPECT_THAT(store_->FinishUpload("t5"), IsOk());
}

TEST_F(EvidenceStoreTest, FinishBeforeAllBytesIsFailedPrecondition) {
  const std::string sha = HashOf(6, 5000);
  ASSERT_THAT(store_->BeginUpload("t6", 5000, sha), IsOk());
  ASSERT_THAT(Send("t6", 6, 0, 3000), IsOk());
  EXPECT_THAT(store_->FinishUpload("t6"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("send the rest from offset 3000")));
  ASSERT_THAT(Send("t6", 6, 3000, 5000), IsOk());
  EXPECT_THAT(store_->FinishUpload("t6"), IsOk());
}

TEST_F(EvidenceStoreTest, HashMismatchIsDataLossAndDiscardsPartial) {
  const std::string declared = HashOf(7, 2 * kMiB);
  ASSERT_THAT(store_->BeginUpload("t7", 2 * kMiB, declared), IsOkAndHolds(0u));
  ASSERT_THAT(Send("t7", 8 /* other bytes */, 0, 2 * kMiB), IsOk());
  EXPECT_THAT(store_->FinishUpload("t7"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("from offset 0")));
  EXPECT_FALSE(store_->Has(declared));
  EXPECT_FALSE(store_->Has(HashOf(8, 2 * kMiB)));
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
  EXPECT_THAT(store_->BeginUpload("t7", 2 * kMiB, declared), IsOkAndHolds(0u));
}

TEST_F(EvidenceStoreTest, CorruptPartialAfterCrashIsDataLoss) {
  const std::string sha = HashOf(9, 3 * kMiB);
  ASSERT_THAT(store_->BeginUpload("t9", 3 * kMiB, sha), IsOk());
  ASSERT_THAT(Send("t9", 9, 0, kMiB), IsOk());
  store_.reset();
  {  // Damage a byte of the partial file.
    int fd = ::open((root_ + "/partial/t9.part").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "!", 1, 100), 1);
    ::close(fd);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_THAT(store_->BeginUpload("t9", 3 * kMiB, sha), IsOkAndHolds(kMiB));
  ASSERT_THAT(Send("t9", 9, kMiB, 3 * kMiB), IsOk());
  EXPECT_THAT(store_->FinishUpload("t9"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->BeginUpload("t9", 3 * kMiB, sha), IsOkAndHolds(0u));
}

TEST_F(EvidenceStoreTest, SizeOverLimitIsResourceExhausted) {
  ASSERT_NO_FATAL_FAILURE(Reopen(/*limit=*/1000));
  EXPECT_THAT(store_->BeginUpload("big", 1001, HashOf(10, 1001)),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit of 1000")));
  EXPECT_THAT(store_->BeginUpload("ok", 1000, HashOf(10, 1000)), IsOkAndHolds(0u));
}

TEST_F(EvidenceStoreTest, BadArgumentsAreInvalidArgument) {
  const std::string sha = HashOf(11, 10);
  for (const std::string& id :
       {std::string("../x"), std::string(""), std::string(200, 'a'), std::string("a/b"),
        std::string("a b"), std::string("x~y"), std::string("\0x", 2)}) {
    SCOPED_TRACE(absl::CHexEscape(id));
    EXPECT_THAT(store_->BeginUpload(id, 10, sha),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("transfer id")));
    EXPECT_THAT(store_->AppendChunk(id, 0, "x"),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->FinishUpload(id), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->AbortUpload(id), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(store_->BeginUpload(std::string(128, 'a'), 10, sha), IsOk());
  EXPECT_THAT(store_->BeginUpload("A.z_0-9", 10, sha), IsOk());
  EXPECT_THAT(store_->BeginUpload("t", 10, "short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 raw bytes")));
  EXPECT_THAT(
      store_->Read("short", 0, 10, [](absl::string_view) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(store_->Has("short"));
  EXPECT_EQ(store_->PathOf("short"), "");
}

TEST_F(EvidenceStoreTest, ResumingWithDifferentSizeOrHashIsFailedPrecondition) {
  const std::string sha = HashOf(12, 4096);
  const std::string other = HashOf(13, 4096);
  ASSERT_THAT(store_->BeginUpload("t12", 4096, sha), IsOk());
  ASSERT_THAT(Send("t12", 12, 0, 1000), IsOk());
  EXPECT_THAT(store_->BeginUpload("t12", 4096, other),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(HexEncode(sha))));
  EXPECT_THAT(store_->BeginUpload("t12", 4097, sha),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("abort")));

  // The same after a restart, from the metadata on disk; the partial upload
  // survives the refused attempts.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(store_->BeginUpload("t12", 4096, other),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->BeginUpload("t12", 4096, sha), IsOkAndHolds(1000u));
}

TEST_F(EvidenceStoreTest, AppendOrFinishWithoutBeginIsFailedPrecondition) {
  EXPECT_THAT(store_->AppendChunk("never", 0, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("BeginUpload")));
  EXPECT_THAT(store_->FinishUpload("never"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("BeginUpload")));
}

TEST_F(EvidenceStoreTest, AbortDiscardsPartialUpload) {
  const std::string sha = HashOf(14, 10000);
  ASSERT_THAT(store_->BeginUpload("t14", 10000, sha), IsOk());
  ASSERT_THAT(Send("t14", 14, 0, 5000), IsOk());
  EXPECT_THAT(store_->AbortUpload("t14"), IsOk());
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
  EXPECT_THAT(store_->AppendChunk("t14", 5000, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->AbortUpload("t14"), StatusIs(absl::StatusCode::kNotFound));
  // A new upload may then use the id, for another file.
  EXPECT_THAT(store_->BeginUpload("t14", 10, HashOf(15, 10)), IsOkAndHolds(0u));

  // Abort also works on a partial upload left by an earlier store.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(store_->AbortUpload("t14"), IsOk());
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
}

TEST_F(EvidenceStoreTest, ExistingObjectNeedsNoBytes) {
  constexpr uint64_t kSize = 300000;
  const std::string sha = HashOf(16, kSize);
  ASSERT_THAT(store_->BeginUpload("first", kSize, sha), IsOk());
  ASSERT_THAT(Send("first", 16, 0, kSize, 65536), IsOk());
  ASSERT_THAT(store_->FinishUpload("first"), IsOk());

  EXPECT_THAT(store_->BeginUpload("second", kSize, sha), IsOkAndHolds(kSize));
  EXPECT_THAT(store_->AppendChunk("second", kSize, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->AppendChunk("second", kSize, ""), IsOk());
  EXPECT_THAT(store_->FinishUpload("second"), IsOkAndHolds(store_->PathOf(sha)));
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());

  EXPECT_THAT(store_->BeginUpload("third", kSize + 1, sha),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("declared size")));
}

TEST_F(EvidenceStoreTest, TheSameFileUnderTwoTransfersIsStoredOnce) {
  // Sent twice in parallel (an operator's upload and a partner's fetch):
  // the second to finish finds it stored, and nothing is written over it.
  constexpr uint64_t kSize = 200000;
  const std::string sha = HashOf(23, kSize);
  ASSERT_THAT(store_->BeginUpload("one", kSize, sha), IsOkAndHolds(0u));
  ASSERT_THAT(store_->BeginUpload("two", kSize, sha), IsOkAndHolds(0u));
  ASSERT_THAT(Send("one", 23, 0, kSize), IsOk());
  ASSERT_THAT(Send("two", 23, 0, kSize), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(std::string path, store_->FinishUpload("one"));
  struct stat first;
  ASSERT_EQ(::stat(path.c_str(), &first), 0);
  EXPECT_THAT(store_->FinishUpload("two"), IsOkAndHolds(path));
  struct stat second;
  ASSERT_EQ(::stat(path.c_str(), &second), 0);
  EXPECT_EQ(second.st_ino, first.st_ino) << "the stored object was not replaced";
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
}

TEST_F(EvidenceStoreTest, TheContentCheckSeesOnlyBytesWhoseHashCheckedOut) {
  const std::string sha = HashOf(24, 5000);
  bool checked = false;
  auto check = [&](absl::string_view head, uint64_t size) {
    checked = true;
    EXPECT_EQ(size, 5000u);
    EXPECT_EQ(head, Bytes(24, 0, 5000));
    return absl::PermissionDeniedError("refused by the check");
  };
  // Wrong bytes: DataLoss, and the check never sees them.
  ASSERT_THAT(store_->BeginUpload("t24", 5000, sha), IsOk());
  ASSERT_THAT(Send("t24", 25, 0, 5000), IsOk());
  EXPECT_THAT(store_->FinishUpload("t24", check), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(checked);
  // The right bytes: the check decides, before the file is named.
  ASSERT_THAT(store_->BeginUpload("t24", 5000, sha), IsOkAndHolds(0u));
  ASSERT_THAT(Send("t24", 24, 0, 5000), IsOk());
  EXPECT_THAT(store_->FinishUpload("t24", check),
              StatusIs(absl::StatusCode::kPermissionDenied, "refused by the check"));
  EXPECT_TRUE(checked);
  EXPECT_FALSE(store_->Has(sha));
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
}

TEST_F(EvidenceStoreTest, APartialFileReplacedByALinkIsNotFollowed) {
  const std::string sha = HashOf(26, 5000);
  ASSERT_THAT(store_->BeginUpload("t26", 5000, sha), IsOk());
  ASSERT_THAT(Send("t26", 26, 0, 1000), IsOk());
  store_.reset();
  const std::string part = root_ + "/partial/t26.part";
  const std::string victim = dir_ + "/victim";
  ASSERT_EQ(::unlink(part.c_str()), 0);
  ASSERT_EQ(::symlink(victim.c_str(), part.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(store_->BeginUpload("t26", 5000, sha), Not(IsOk()));
  EXPECT_EQ(ModeOf(victim), -1) << "nothing written through the link";
  // Aborting clears it; the transfer then starts anew.
  ASSERT_THAT(store_->AbortUpload("t26"), IsOk());
  EXPECT_THAT(store_->BeginUpload("t26", 5000, sha), IsOkAndHolds(0u));
}

TEST_F(EvidenceStoreTest, CrashBetweenInstallAndMetadataRemovalIsHarmless) {
  const std::string sha = HashOf(22, 5000);
  ASSERT_THAT(store_->BeginUpload("t22", 5000, sha), IsOk());
  ASSERT_THAT(Send("t22", 22, 0, 5000), IsOk());
  ASSERT_THAT(store_->FinishUpload("t22"), IsOk());
  store_.reset();
  {  // The metadata file as it was before the crash.
    std::string meta = absl::StrCat("comity-evidence-partial 1\nsize 5000\nsha256 ",
                                    HexEncode(sha), "\n");
    int fd = ::open((root_ + "/partial/t22.meta").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, meta.data(), meta.size()), static_cast<ssize_t>(meta.size()));
    ::close(fd);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(store_->BeginUpload("t22", 5000, sha), IsOkAndHolds(5000u));
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
  EXPECT_THAT(store_->FinishUpload("t22"), IsOkAndHolds(store_->PathOf(sha)));
}

TEST_F(EvidenceStoreTest, EmptyFile) {
  const std::string sha = Sha256("");
  EXPECT_THAT(store_->BeginUpload("empty", 0, sha), IsOkAndHolds(0u));
  EXPECT_THAT(store_->FinishUpload("empty"), IsOkAndHolds(store_->PathOf(sha)));
  int calls = 0;
  EXPECT_THAT(store_->Read(sha, 0, 10,
                           [&](absl::string_view) {
                             ++calls;
                             return absl::OkStatus();
                           }),
              IsOk());
  EXPECT_EQ(calls, 0);
}

TEST_F(EvidenceStoreTest, ReadFromOffsetAndStopEarly) {
  constexpr uint64_t kSize = 100000;
  const std::string sha = HashOf(17, kSize);
  ASSERT_THAT(store_->BeginUpload("t17", kSize, sha), IsOk());
  ASSERT_THAT(Send("t17", 17, 0, kSize), IsOk());
  ASSERT_THAT(store_->FinishUpload("t17"), IsOk());

  std::string tail;
  std::vector<size_t> sizes;
  EXPECT_THAT(store_->Read(sha, 90000, 4000,
                           [&](absl::string_view piece) {
                             tail.append(piece.data(), piece.size());
                             sizes.push_back(piece.size());
                             return absl::OkStatus();
                           }),
              IsOk());
  EXPECT_EQ(tail, Bytes(17, 90000, 10000));
  EXPECT_EQ(sizes, (std::vector<size_t>{4000, 4000, 2000}));

  int calls = 0;
  EXPECT_THAT(store_->Read(sha, 0, 1000,
                           [&](absl::string_view) {
                             return ++calls == 3 ? absl::CancelledError("enough")
                                                 : absl::OkStatus();
                           }),
              StatusIs(absl::StatusCode::kCancelled, "enough"));
  EXPECT_EQ(calls, 3);

  EXPECT_THAT(
      store_->Read(sha, kSize, 10,
                   [](absl::string_view) { return absl::InternalError("not called"); }),
      IsOk());
  EXPECT_THAT(store_->Read(sha, kSize + 1, 10,
                           [](absl::string_view) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(store_->Read(sha, 0, 0, [](absl::string_view) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(EvidenceStoreTest, ReadOfAbsentObjectIsNotFound) {
  const std::string sha = HashOf(18, 10);
  EXPECT_FALSE(store_->Has(sha));
  EXPECT_THAT(
      store_->Read(sha, 0, 10, [](absl::string_view) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(HexEncode(sha))));
}

TEST_F(EvidenceStoreTest, ImportFile) {
  constexpr uint64_t kSize = 3 * kMiB + 17;
  const std::string source = dir_ + "/source.img";
  {
    int fd = ::open(source.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    for (uint64_t pos = 0; pos < kSize; pos += kMiB) {
      std::string piece =
          Bytes(19, pos, static_cast<size_t>(std::min(kMiB, kSize - pos)));
      ASSERT_EQ(::write(fd, piece.data(), piece.size()),
                static_cast<ssize_t>(piece.size()));
    }
    ::close(fd);
  }
  const std::string sha = HashOf(19, kSize);
  COMITY_ASSERT_OK_AND_ASSIGN(auto imported, store_->ImportFile(source));
  EXPECT_EQ(imported.first, sha);
  EXPECT_EQ(imported.second, kSize);
  EXPECT_TRUE(store_->Has(sha));
  EXPECT_EQ(ModeOf(store_->PathOf(sha)), 0600);
  uint64_t size = 0;
  EXPECT_THAT(HashByReading(sha, &size), IsOkAndHolds(sha));
  EXPECT_EQ(size, kSize);
  // Again: harmless, and no temporary file is left.
  EXPECT_THAT(store_->ImportFile(source), IsOk());
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
  // An upload of the same file has nothing to send.
  EXPECT_THAT(store_->BeginUpload("same", kSize, sha), IsOkAndHolds(kSize));
}

TEST_F(EvidenceStoreTest, ImportErrors) {
  EXPECT_THAT(store_->ImportFile(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->ImportFile(dir_), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string source = dir_ + "/big";
  {
    int fd = ::open(source.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    std::string data = Bytes(20, 0, 2000);
    ASSERT_EQ(::write(fd, data.data(), data.size()), 2000);
    ::close(fd);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen(/*limit=*/1999));
  EXPECT_THAT(store_->ImportFile(source), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(ListDir(root_ + "/partial"), IsEmpty());
}

TEST_F(EvidenceStoreTest, OpenRemovesLeftoverImportsAndKeepsPartials) {
  const std::string sha = HashOf(21, 100);
  ASSERT_THAT(store_->BeginUpload("kept", 100, sha), IsOk());
  ASSERT_THAT(Send("kept", 21, 0, 50), IsOk());
  store_.reset();
  {
    int fd =
        ::open((root_ + "/partial/import~crashed").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  std::vector<std::string> names = ListDir(root_ + "/partial");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"kept.meta", "kept.part"}));
}

TEST_F(EvidenceStoreTest, SecondOpenOfSameRootIsFailedPrecondition) {
  EXPECT_THAT(EvidenceStore::Open(root_, kDefaultLimit),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already open")));
}

TEST_F(EvidenceStoreTest, ConcurrentUploads) {
  constexpr int kThreads = 6;
  constexpr uint64_t kSize = kMiB + 333;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string id = absl::StrCat("c", t);
      const uint64_t seed = 100 + static_cast<uint64_t>(t);
      absl::Status s = store_->BeginUpload(id, kSize, HashOf(seed, kSize)).status();
      if (s.ok()) s = Send(id, seed, 0, kSize, 65536);
      if (s.ok()) s = store_->FinishUpload(id).status();
      results[static_cast<size_t>(t)] = s;
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_THAT(results[static_cast<size_t>(t)], IsOk()) << t;
    EXPECT_TRUE(store_->Has(HashOf(100 + static_cast<uint64_t>(t), kSize))) << t;
  }
}

TEST_F(EvidenceStoreTest, ConcurrentBeginsOfSameTransferShareOneUpload) {
  constexpr int kThreads = 8;
  const std::string sha = HashOf(30, 5000);
  std::vector<std::thread> threads;
  std::atomic<int> zeros{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      absl::StatusOr<uint64_t> offset = store_->BeginUpload("shared", 5000, sha);
      if (offset.ok() && *offset == 0) ++zeros;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(zeros.load(), kThreads);
  ASSERT_THAT(Send("shared", 30, 0, 5000), IsOk());
  EXPECT_THAT(store_->FinishUpload("shared"), IsOk());
  EXPECT_TRUE(store_->Has(sha));
}

}  // namespace
}  // namespace comity
