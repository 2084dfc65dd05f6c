#include "client/evidence_upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/crypto/sha256.h"
#include "server/util/posix_file.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 20;

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}
constexpr int kAttempts = 5;

// The SHA-256 of the `size` bytes of `fd`, read from the start; an error if
// the file does not hold exactly that many.
absl::StatusOr<std::string> HashFile(int fd, uint64_t size, const std::string& path) {
  Sha256Stream hash;
  std::unique_ptr<char[]> buffer(new char[kBufferBytes]);
  uint64_t pos = 0;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(size_t got, ReadFull(fd, buffer.get(), kBufferBytes, pos, path));
    if (got == 0) break;
    hash.Update(absl::string_view(buffer.get(), got));
    pos += got;
    if (pos > size) break;
  }
  if (pos != size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--file ", path, " changed while it was read (", size, " bytes when opened, ", pos,
        " read): upload a file that is not being written"));
  }
  return hash.Finish();
}

// One upload stream from `offset` to the end. OK with the staged file, or
// the stream's error (the node keeps what it received).
absl::StatusOr<v1::EvidenceFile> Send(v1::OperatorService::Stub* stub, int fd,
                                      const std::string& path, const std::string& request_id,
                                      const std::string& sha256, uint64_t size,
                                      uint64_t offset, uint64_t chunk_bytes) {
  grpc::ClientContext ctx;
  v1::UploadEvidenceResponse response;
  auto writer = stub->UploadEvidence(&ctx, &response);
  v1::EvidenceUploadChunk chunk;
  chunk.set_request_id(request_id);
  chunk.set_sha256(sha256);
  chunk.set_offset(offset);
  std::string buffer(chunk_bytes, '\0');
  bool sent = true;
  // The first message opens the upload even with nothing left to send (the
  // node holds every byte already: the same content for another request,
  // or an upload cut after its last chunk).
  if (offset >= size) sent = writer->Write(chunk);
  while (sent && offset < size) {
    auto got = ReadFull(fd, buffer.data(), buffer.size(), offset, path);
    if (!got.ok()) {
      ctx.TryCancel();
      writer->Finish().ok();
      return got.status();
    }
    if (*got == 0) break;
    chunk.set_data(buffer.data(), *got);
    sent = writer->Write(chunk);
    offset += *got;
    chunk.clear_request_id();
    chunk.clear_sha256();
    chunk.clear_offset();
  }
  if (sent) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  if (!response.has_file()) {
    return absl::UnavailableError(absl::StrCat("the node holds ", response.received(), " of ",
                                               size, " bytes of ", path));
  }
  return response.file();
}

}  // namespace

absl::StatusOr<v1::EvidenceFile> UploadEvidenceFile(v1::OperatorService::Stub* stub,
                                                    const std::string& request_id,
                                                    const std::string& path) {
  // Not blocking on a FIFO or a device: they are refused below.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return OpenError(errno, path);
  ScopedFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return OpenError(errno, path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--file ", path,
        " is not a regular file (a directory, device, FIFO or socket): evidence is a file"));
  }
  if (st.st_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--file ", path, " is empty (or a virtual file such as /proc's): nothing to send"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  COMITY_ASSIGN_OR_RETURN(std::string sha256, HashFile(fd, size, path));
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);

  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    v1::BeginEvidenceUploadRequest begin;
    begin.set_request_id(request_id);
    begin.set_name(name);
    begin.set_size(size);
    begin.set_sha256(sha256);
    v1::BeginEvidenceUploadResponse started;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::Status status = stub->BeginEvidenceUpload(&ctx, begin, &started);
    if (!status.ok()) {
      last = FromGrpcStatus(status);
      if (!absl::IsUnavailable(last)) return last;
      continue;
    }
    const uint64_t chunk_bytes = started.max_chunk_bytes() == 0
                                     ? uint64_t{256} << 10
                                     : std::min<uint64_t>(started.max_chunk_bytes(), kBufferBytes);
    auto sent = Send(stub, fd, path, request_id, sha256, size, started.offset(), chunk_bytes);
    if (sent.ok()) return sent;
    last = sent.status();
    // A dropped stream resumes; a refusal is final.
    if (!absl::IsUnavailable(last) && !absl::IsCancelled(last) &&
        !absl::IsDeadlineExceeded(last)) {
      return last;
    }
  }
  return absl::Status(last.code(), absl::StrCat("uploading ", path, " failed ", kAttempts,
                                                " times; run the command again to resume: ",
                                                last.message()));
}

}  // namespace comity
