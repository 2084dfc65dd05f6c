// Evidence files between parties (docs/lifecycle.md, "Evidence"): the
// requested party serves the files listed in its responses, only to the
// requesting party and only once that party accepted their release
// conditions; the requesting party fetches what responses list, per peer,
// resuming partial transfers and backing off after a failure; operators
// export what is held.
//
//   EvidenceExchange exchange(&ctx, std::move(files));
//   exchange.FetchRound("JP", stopping);  // Run by JP's evidence worker.
//   COMITY_ASSIGN_OR_RETURN(auto reader, exchange.OpenForPeer("FR", id, sha256, 0));
//   while (true) { COMITY_ASSIGN_OR_RETURN(std::string chunk, reader->Next()); if
//   (chunk.empty()) break; }
#ifndef COMITY_SERVER_NODE_EVIDENCE_EXCHANGE_H_
#define COMITY_SERVER_NODE_EVIDENCE_EXCHANGE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/operator.pb.h"
#include "comity/v1/record.pb.h"
#include "server/evidence/evidence_store.h"
#include "server/node/node_context.h"

namespace comity {

// Reads one stored evidence file from an offset, a chunk at a time, so that
// memory stays bounded whatever the file's size. Not thread-safe.
class EvidenceReader {
 public:
  EvidenceReader(const EvidenceStore* files, std::string sha256, uint64_t offset,
                 size_t chunk_bytes)
      : files_(files),
        sha256_(std::move(sha256)),
        offset_(offset),
        chunk_bytes_(chunk_bytes) {}
  // The next chunk; empty at the end.
  absl::StatusOr<std::string> Next();

 private:
  const EvidenceStore* files_;
  std::string sha256_;
  uint64_t offset_;
  size_t chunk_bytes_;
};

// Thread-safe.
class EvidenceExchange {
 public:
  EvidenceExchange(const NodeContext* ctx, std::unique_ptr<EvidenceStore> files);

  // Serving: OK if `peer_party` may fetch file `sha256` of `request_id`:
  // listed in a response to its request, with every release condition
  // accepted. PermissionDenied / FailedPrecondition otherwise.
  absl::Status CheckAccess(const std::string& peer_party, const std::string& request_id,
                           const std::string& sha256);
  // CheckAccess, then a reader from `offset` in chunks of `chunk_bytes`.
  absl::StatusOr<std::unique_ptr<EvidenceReader>> OpenForPeer(
      const std::string& peer_party, const std::string& request_id,
      const std::string& sha256, uint64_t offset, size_t chunk_bytes);
  // An operator saves file `sha256` of `request_id` outside the node.
  // FailedPrecondition for TLP:RED material unless `allow_tlp_red`;
  // NotFound if not held here; audited (EVIDENCE_EXPORTED) when it starts
  // (offset 0).
  absl::StatusOr<std::unique_ptr<EvidenceReader>> OpenForExport(
      const std::string& operator_name, const std::string& request_id,
      const std::string& sha256, uint64_t offset, bool allow_tlp_red, size_t chunk_bytes);

  // Fetches the evidence files due from `peer` (CaseStore::DueEvidence)
  // that this node does not hold: resumed where a transfer stopped,
  // verified by SHA-256, audited (EVIDENCE_RECEIVED). A chunk must arrive
  // within evidence.chunk_timeout_ms (the deadline is per chunk, so a file
  // of any size can arrive and a stalled peer is dropped); a failure backs
  // the file off with jitter, and after evidence.max_fetch_attempts it
  // waits for Retry. Files whose release conditions are not accepted wait for the
  // acceptance. One round per peer at a time; `stopping()` ends it early.
  //
  // The backoff is timed on the monotonic clock while the node runs: a
  // wall clock stepped back does not hold a file back for as long as the
  // step, one stepped forward does not make every backed-off file due at
  // once. The stored retry time (what operators see, and what a restarted
  // node goes by) is its wall-clock equivalent, restated after a step; one
  // further off than evidence.retry_max_ms was set before a step back and
  // counts as due.
  void FetchRound(const std::string& peer, const std::function<bool()>& stopping);

  // An operator asks for the files of `request_id` (sent by this node) not
  // held yet to be fetched again now, attempts counted from 0. Returns how
  // many; NotFound for a request this node did not send.
  absl::StatusOr<int> Retry(const std::string& operator_name, const std::string& request_id);
  // `wake(peer)` starts a fetch round for `peer` soon (its worker).
  void SetWaker(std::function<void(const std::string&)> wake) { wake_ = std::move(wake); }

  // The files of `records`' responses still to fetch, with their attempts.
  std::vector<v1::PendingEvidenceStatus> PendingOf(
      const std::vector<v1::RequestRecord>& records) const;
  // The files of `records`' responses held here, with their paths.
  std::vector<v1::StoredEvidence> HeldOf(
      const std::vector<v1::RequestRecord>& records) const;

  EvidenceStore& files() { return *files_; }

 private:
  const NodeContext* const ctx_;
  const std::unique_ptr<EvidenceStore> files_;
  std::function<void(const std::string&)> wake_;  // Set before the workers start.
  // (request id, SHA-256) of a file.
  using FileKey = std::pair<std::string, std::string>;
  // The files of `peer` to try in this round: those the store holds due
  // (less those still backing off here, whose stored time it restates),
  // then those whose backoff here has ended; at most `limit`.
  std::vector<PendingEvidence> DueFrom(const std::string& peer, int limit);
  // How long `file`'s backoff in this process has still to run (zero: none).
  absl::Duration BackoffLeft(const std::string& peer, const FileKey& file);
  // Backs `file` off until `until` (monotonic); -InfiniteDuration: forgets it.
  void SetBackoff(const std::string& peer, const FileKey& file, absl::Duration until);

  // One fetch round per peer at a time (a worker's and a test's would
  // fetch the same file twice).
  absl::Mutex rounds_mu_;
  std::map<std::string, std::unique_ptr<absl::Mutex>> rounds_ ABSL_GUARDED_BY(rounds_mu_);
  // Per peer, the files whose last fetch in this process failed: when
  // their backoff ends on the monotonic clock. Forgotten once a file is
  // held, given up, waits for conditions or is retried by an operator.
  absl::Mutex backoff_mu_;
  std::map<std::string, std::map<FileKey, absl::Duration>> backoff_
      ABSL_GUARDED_BY(backoff_mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_EVIDENCE_EXCHANGE_H_
