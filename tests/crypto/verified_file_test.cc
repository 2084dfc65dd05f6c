#include "server/crypto/verified_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/hex.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::ListDir;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

using Options = VerifiedFileWriter::Options;

class VerifiedFileTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  static int Mode(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  }
  // Writes `data` in pieces of up to 1000 bytes.
  static void AppendAll(VerifiedFileWriter& w, const std::string& data) {
    for (size_t at = 0; at < data.size(); at += 1000) {
      ASSERT_THAT(w.Append(absl::string_view(data).substr(at, 1000)), IsOk());
    }
  }

  testing::TempDir dir_;
  const std::string data_ = std::string(25000, 'v') + "the end";
};

TEST_F(VerifiedFileTest, WritesChecksAndNamesTheFile) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("disk.img")));
  EXPECT_EQ(w->final_path(), Path("disk.img"));
  EXPECT_THAT(w->temp_path(),
              AllOf(StartsWith(Path(".disk.img.")), EndsWith(".partial")));
  EXPECT_EQ(Mode(w->temp_path()), 0600);
  EXPECT_EQ(Mode(Path("disk.img")), -1) << "not named before the check";
  AppendAll(*w, data_);
  EXPECT_EQ(w->size(), data_.size());
  EXPECT_THAT(w->Commit(data_.size(), Sha256(data_)),
              IsOkAndHolds(HexEncode(Sha256(data_))));
  EXPECT_THAT(ReadFile(Path("disk.img")), IsOkAndHolds(data_));
  EXPECT_EQ(Mode(Path("disk.img")), 0600);
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("disk.img")) << "no temporary file left";
}

TEST_F(VerifiedFileTest, CommitRenamesTheSyncedTemporaryFile) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("f")));
  AppendAll(*w, data_);
  struct stat temp;
  ASSERT_EQ(::stat(w->temp_path().c_str(), &temp), 0);
  ASSERT_THAT(w->Commit(std::nullopt, Sha256(data_)), IsOk());
  struct stat named;
  ASSERT_EQ(::stat(Path("f").c_str(), &named), 0);
  EXPECT_EQ(named.st_ino, temp.st_ino) << "renamed, not copied";
  EXPECT_EQ(named.st_size, static_cast<off_t>(data_.size()));
  // Once done, the writer takes nothing more.
  EXPECT_THAT(w->Append("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(w->Commit(std::nullopt, Sha256(data_)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(VerifiedFileTest, MakesMissingParentDirectoriesPrivate) {
  const std::string path = Path("exports/2026/case-17/logs.tar");
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(path));
  AppendAll(*w, data_);
  ASSERT_THAT(w->Commit(data_.size(), Sha256(data_)), IsOk());
  EXPECT_THAT(ReadFile(path), IsOkAndHolds(data_));
  for (const char* d : {"exports", "exports/2026", "exports/2026/case-17"}) {
    EXPECT_EQ(Mode(Path(d)), 0700) << d;
  }
  // A parent that is a file is a clear error.
  ASSERT_THAT(WriteFileAtomically(Path("plain"), "x", 0600), IsOk());
  EXPECT_THAT(VerifiedFileWriter::Create(Path("plain/sub/f")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(Path("plain"))));
}

TEST_F(VerifiedFileTest, ASizeMismatchLeavesNoFile) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("short.img")));
  AppendAll(*w, data_);
  EXPECT_THAT(w->Commit(data_.size() + 10, Sha256(data_)),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(Path("short.img")),
                             HasSubstr(absl::StrCat("received ", data_.size(), " bytes")),
                             HasSubstr(absl::StrCat("expected ", data_.size() + 10)))));
  EXPECT_THAT(ListDir(dir_.path()), IsEmpty())
      << "neither the file nor the temporary one";
}

TEST_F(VerifiedFileTest, AHashMismatchLeavesNoFile) {
  std::string damaged = data_;
  damaged[12345] ^= 0x01;
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("damaged.img")));
  AppendAll(*w, damaged);
  EXPECT_THAT(w->Commit(data_.size(), Sha256(data_)),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(Path("damaged.img")), HasSubstr("SHA-256"),
                             HasSubstr(HexEncode(Sha256(damaged))),
                             HasSubstr("expected " + HexEncode(Sha256(data_))))));
  EXPECT_THAT(ListDir(dir_.path()), IsEmpty());
  // The hash alone is checked when the size is not known.
  COMITY_ASSERT_OK_AND_ASSIGN(auto again,
                              VerifiedFileWriter::Create(Path("damaged.img")));
  AppendAll(*again, damaged);
  EXPECT_THAT(again->Commit(std::nullopt, Sha256(data_)),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ListDir(dir_.path()), IsEmpty());
}

TEST_F(VerifiedFileTest, ABadExpectedHashIsRefusedAndLeavesNoFile) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("f")));
  AppendAll(*w, data_);
  EXPECT_THAT(
      w->Commit(data_.size(), HexEncode(Sha256(data_))),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes, not 32")));
  EXPECT_THAT(ListDir(dir_.path()), IsEmpty());
}

TEST_F(VerifiedFileTest, AnUncommittedWriterLeavesNoTemporaryFile) {
  {
    COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("abandoned")));
    AppendAll(*w, data_);
    EXPECT_THAT(ListDir(dir_.path()), ::testing::SizeIs(1));
  }
  EXPECT_THAT(ListDir(dir_.path()), IsEmpty());
}

TEST_F(VerifiedFileTest, RefusesToOverwriteUnlessAsked) {
  ASSERT_THAT(WriteFileAtomically(Path("kept"), "old", 0600), IsOk());
  EXPECT_THAT(VerifiedFileWriter::Create(Path("kept")),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr(Path("kept")), HasSubstr("exists"))));
  // A link planted under the name counts as a file, even a dangling one.
  ASSERT_EQ(::symlink("/nonexistent", Path("link").c_str()), 0);
  EXPECT_THAT(VerifiedFileWriter::Create(Path("link")),
              StatusIs(absl::StatusCode::kAlreadyExists));

  // A file that appears while the writer runs is not replaced either.
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("raced")));
  AppendAll(*w, data_);
  ASSERT_THAT(WriteFileAtomically(Path("raced"), "theirs", 0600), IsOk());
  EXPECT_THAT(w->Commit(data_.size(), Sha256(data_)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(Path("raced"))));
  EXPECT_THAT(ReadFile(Path("raced")), IsOkAndHolds("theirs"));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("kept", "link", "raced"));

  Options replace;
  replace.overwrite = true;
  replace.mode = 0640;
  COMITY_ASSERT_OK_AND_ASSIGN(auto r, VerifiedFileWriter::Create(Path("kept"), replace));
  AppendAll(*r, data_);
  ASSERT_THAT(r->Commit(data_.size(), Sha256(data_)), IsOk());
  EXPECT_THAT(ReadFile(Path("kept")), IsOkAndHolds(data_));
  EXPECT_EQ(Mode(Path("kept")), 0640);
}

TEST_F(VerifiedFileTest, AGivenTemporaryPathIsCreatedExclusively) {
  Options options;
  options.temp_path = Path("partial-1");
  ASSERT_EQ(::symlink(Path("victim").c_str(), options.temp_path.c_str()), 0);
  EXPECT_THAT(VerifiedFileWriter::Create(Path("f"), options),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(options.temp_path)));
  EXPECT_EQ(Mode(Path("victim")), -1) << "the link was not followed";
  ASSERT_EQ(::unlink(options.temp_path.c_str()), 0);
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("f"), options));
  EXPECT_EQ(w->temp_path(), options.temp_path);
}

TEST_F(VerifiedFileTest, SuspendsAndResumesAtAnOffset) {
  Options options;
  options.temp_path = Path("transfer.part");
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("f"), options));
  AppendAll(*w, data_.substr(0, 12000));
  ASSERT_THAT(w->Suspend(), IsOk());
  EXPECT_THAT(w->Append("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  w.reset();
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("transfer.part")) << "kept for Resume";

  // Only the first 10000 bytes were acknowledged: the rest is cut.
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto resumed,
      VerifiedFileWriter::Resume(Path("f"), options.temp_path, 10000, options));
  EXPECT_EQ(resumed->size(), 10000u);
  AppendAll(*resumed, data_.substr(10000));
  EXPECT_THAT(resumed->Commit(data_.size(), Sha256(data_)), IsOk());
  EXPECT_THAT(ReadFile(Path("f")), IsOkAndHolds(data_));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("f"));
}

TEST_F(VerifiedFileTest, ResumeRefusesWhatItCannotContinue) {
  Options options;
  EXPECT_THAT(VerifiedFileWriter::Resume(Path("f"), Path("none.part"), 0, options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("none.part"))));
  ASSERT_THAT(WriteFileAtomically(Path("short.part"), std::string(500, 'a'), 0600),
              IsOk());
  EXPECT_THAT(
      VerifiedFileWriter::Resume(Path("f"), Path("short.part"), 800, options),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("holds 500 bytes"), HasSubstr("resume from 500"))));
  ASSERT_THAT(WriteFileAtomically(Path("f"), "done", 0600), IsOk());
  EXPECT_THAT(VerifiedFileWriter::Resume(Path("f"), Path("short.part"), 500, options),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // A resumed writer that fails its check removes its temporary file too.
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto w, VerifiedFileWriter::Resume(Path("g"), Path("short.part"), 500, options));
  EXPECT_THAT(w->Commit(500, Sha256("something else")),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("f"));
}

TEST_F(VerifiedFileTest, VetSeesTheCheckedFileBeforeItIsNamed) {
  // Called once size and hash checked out, on the whole temporary file.
  COMITY_ASSERT_OK_AND_ASSIGN(auto w, VerifiedFileWriter::Create(Path("ok.img")));
  AppendAll(*w, data_);
  std::string seen;
  ASSERT_THAT(w->Commit(data_.size(), Sha256(data_),
                        [&](const std::string& temp) {
                          EXPECT_EQ(temp, w->temp_path());
                          EXPECT_EQ(Mode(Path("ok.img")), -1) << "not named yet";
                          seen = ReadFile(temp).value_or("");
                          return absl::OkStatus();
                        }),
              IsOk());
  EXPECT_EQ(seen, data_);

  // What it refuses is not named, and leaves nothing.
  COMITY_ASSERT_OK_AND_ASSIGN(auto refused, VerifiedFileWriter::Create(Path("key.pem")));
  AppendAll(*refused, data_);
  EXPECT_THAT(refused->Commit(data_.size(), Sha256(data_),
                              [](const std::string&) {
                                return absl::PermissionDeniedError("a private key");
                              }),
              StatusIs(absl::StatusCode::kPermissionDenied, "a private key"));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("ok.img"));

  // Bytes that fail the hash are never shown to it.
  COMITY_ASSERT_OK_AND_ASSIGN(auto damaged, VerifiedFileWriter::Create(Path("bad.img")));
  AppendAll(*damaged, data_ + "x");
  bool called = false;
  EXPECT_THAT(damaged->Commit(std::nullopt, Sha256(data_),
                              [&](const std::string&) {
                                called = true;
                                return absl::OkStatus();
                              }),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(called);
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("ok.img"));
}

TEST_F(VerifiedFileTest, ResumeMakesMissingParentDirectories) {
  ASSERT_THAT(WriteFileAtomically(Path("t.part"), data_.substr(0, 100), 0600), IsOk());
  const std::string path = Path("objects/ab/abcdef");
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto w, VerifiedFileWriter::Resume(path, Path("t.part"), 100, Options()));
  AppendAll(*w, data_.substr(100));
  ASSERT_THAT(w->Commit(data_.size(), Sha256(data_)), IsOk());
  EXPECT_THAT(ReadFile(path), IsOkAndHolds(data_));
  EXPECT_EQ(Mode(Path("objects/ab")), 0700);
}

TEST_F(VerifiedFileTest, RefusesPathsThatNameNoFile) {
  for (const std::string& p : {std::string(""), Path("dir/"), Path("."), Path("..")}) {
    EXPECT_THAT(VerifiedFileWriter::Create(p),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << p;
  }
}

}  // namespace
}  // namespace comity
