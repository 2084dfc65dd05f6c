#include "server/audit/verifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/audit/merkle.h"
#include "server/crypto/ed25519.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"

namespace comity {

std::string VerifyReport::Summary() const {
  if (!ok) return absl::StrCat("FAILED: ", error);
  std::string out =
      absl::StrCat(entries, " entries, root ", HexEncode(root), ", consistent (", heads,
                   " signed tree heads and ", nodes_checked, " stored hashes checked");
  if (items_checked > 0) {
    absl::StrAppend(&out, "; ", items_checked,
                    " stored requests, receipts, steps and files match their entries");
  }
  absl::StrAppend(&out, ")");
  if (items_uncovered > 0) {
    absl::StrAppend(&out, "; ", items_uncovered,
                    " stored items predate the log and are not covered by it");
  }
  if (signed_size < entries) {
    absl::StrAppend(&out, "; entries ", signed_size, "..", entries - 1,
                    " are not covered by a signed tree head yet");
  }
  return out;
}

// A head whose signature is checked on a worker; the rest was checked when
// it was added.
struct LogVerifier::PendingHead {
  v1::SignedEnvelope signed_head;
  std::string what;   // "tree head for size N".
  std::string error;  // Found when added: it does not parse, ...
  bool parsed = false;
  uint64_t size = 0;
  std::string signed_root;
  std::string root;           // Recomputed at its size (if within the log).
  bool beyond_log = false;    // Its size exceeds the entries.
  bool claims_match = false;  // The claimed leaf hashes give its signed root.
  absl::Status signature;
  bool done = false;  // Guarded by mu_ once queued.
};

namespace {
// Heads added but not applied yet: bounds memory whatever the log's size.
constexpr size_t kMaxPendingHeads = 1024;
}  // namespace

LogVerifier::LogVerifier(std::string party, const KeyRing* keys, int signature_threads)
    : party_(std::move(party)), keys_(keys) {
  for (int i = 0; i < signature_threads; ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
}

LogVerifier::~LogVerifier() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void LogVerifier::WorkerLoop() {
  for (;;) {
    PendingHead* h = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &LogVerifier::HasWorkOrStop));
      if (work_.empty()) return;  // Stopped.
      h = work_.front();
      work_.pop_front();
    }
    absl::Status sig = VerifyEnvelope(h->signed_head, kTreeHeadPayloadType, *keys_);
    absl::MutexLock lock(&mu_);
    h->signature = std::move(sig);
    h->done = true;
  }
}

void LogVerifier::Fail(std::string message) {
  if (!report_.ok) return;  // Keep the first problem.
  report_.ok = false;
  report_.error = std::move(message);
}

void LogVerifier::FailNode(int level, uint64_t index, std::string message) {
  // The first by (level, index), as a scan of the stored hashes finds it.
  const std::pair<int, uint64_t> at{level, index};
  if (!node_error_.empty() && node_error_at_ <= at) return;
  node_error_ = std::move(message);
  node_error_at_ = at;
}

void LogVerifier::FailHead(std::string message) {
  if (head_error_.empty()) head_error_ = std::move(message);
}

void LogVerifier::AddClaimedLeafHash(absl::string_view hash) {
  claimed_.Append(hash, nullptr);
  last_claim_ = std::string(hash);
}

void LogVerifier::AddEntry(uint64_t position, absl::string_view bytes) {
  auto fail = [&](std::string message) {
    if (entry_error_.empty()) entry_error_ = std::move(message);
  };
  if (position != expected_position_) {
    fail(absl::StrCat("entry ", expected_position_,
                      " is missing: the next stored entry is at ", position,
                      " (entries were deleted)"));
    // Go on over the entries that are there, in order: the first problem is
    // what the report names.
  }
  v1::AuditEntry entry;
  if (!entry.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    fail(absl::StrCat("entry ", position, " does not parse: its bytes were changed"));
  } else if (entry.index() != position && position == expected_position_) {
    fail(absl::StrCat("entry at position ", position, " says it is entry ", entry.index(),
                      ": entries were reordered, moved or replaced"));
  }
  const std::string hash = merkle::LeafHash(bytes);
  const uint64_t leaf = frontier_.size();
  if (claimed_.size() == leaf + 1 && first_claim_differs_ == UINT64_MAX &&
      last_claim_ != hash) {
    first_claim_differs_ = leaf;
  }
  std::vector<merkle::NodeRef> created;
  frontier_.Append(hash, &created);
  completed_.clear();
  for (merkle::NodeRef& n : created) completed_.push_back(std::move(n.hash));
  ++expected_position_;
  report_.entries = expected_position_;
}

void LogVerifier::CheckNode(int level, uint64_t index, absl::string_view hash) {
  ++report_.nodes_checked;
  const uint64_t size = frontier_.size();
  // Completed by the last entry: its last leaf is the log's last.
  const bool just_completed = level >= 0 && level < static_cast<int>(completed_.size()) &&
                              size > 0 && index == ((size - 1) >> level);
  if (level < 0 || level >= 64 || index >= (UINT64_MAX >> level) ||
      ((index + 1) << level) > size) {
    FailNode(
        level, index,
        absl::StrCat("stored hash (level ", level, ", index ", index,
                     ") covers entries the log does not have: the log was truncated"));
    return;
  }
  if (!just_completed) return;  // Misuse: it was to be checked when completed.
  if (completed_[level] == hash) return;
  if (level == 0) {
    FailNode(
        level, index,
        absl::StrCat("entry ", index,
                     " does not match its stored leaf hash: it was changed after it was "
                     "logged"));
  } else {
    FailNode(
        level, index,
        absl::StrCat("stored hash (level ", level, ", index ", index, ") over entries ",
                     index << level, "..", ((index + 1) << level) - 1,
                     " does not match the entries: an entry or the hash was changed"));
  }
}

void LogVerifier::CheckHead(const v1::SignedEnvelope& signed_head) {
  ++report_.heads;
  auto h = std::make_unique<PendingHead>();
  h->signed_head = signed_head;
  v1::TreeHead head;
  if (!head.ParseFromString(signed_head.payload())) {
    h->error = "a stored tree head does not parse";
  } else {
    h->parsed = true;
    h->size = head.tree_size();
    h->signed_root = head.root_hash();
    h->what = absl::StrCat("tree head for size ", head.tree_size());
    if (signed_head.signer_party() != party_ || head.party() != party_) {
      h->error = absl::StrCat(h->what, ": signed by ", signed_head.signer_party(),
                              ", not by ", party_);
    } else if (head.tree_size() > frontier_.size()) {
      h->beyond_log = true;
    } else if (head.tree_size() == frontier_.size()) {
      h->root = frontier_.Root();
      h->claims_match =
          claimed_.size() == head.tree_size() && claimed_.Root() == head.root_hash();
    } else {
      // Out of order: the root at a smaller size is not at hand.
      h->error = absl::StrCat(h->what, ": checked after ", frontier_.size(),
                              " entries, out of tree-size order");
    }
  }
  if (!h->parsed) {
    // Nothing to check a signature of.
    h->done = true;
    pending_.push_back(std::move(h));
  } else if (workers_.empty()) {
    h->signature = VerifyEnvelope(h->signed_head, kTreeHeadPayloadType, *keys_);
    h->done = true;
    pending_.push_back(std::move(h));
  } else {
    PendingHead* raw = h.get();
    absl::MutexLock lock(&mu_);
    pending_.push_back(std::move(h));
    work_.push_back(raw);
  }
  Settle(false);
}

void LogVerifier::Settle(bool all) {
  for (;;) {
    if (pending_.empty()) return;
    PendingHead* front = pending_.front().get();
    {
      absl::MutexLock lock(&mu_);
      if (!front->done) {
        if (!all && pending_.size() < kMaxPendingHeads) return;
        mu_.Await(absl::Condition(&front->done));
      }
    }
    Apply(*front);
    pending_.pop_front();
  }
}

void LogVerifier::Apply(PendingHead& h) {
  if (!h.parsed) {
    FailHead(h.error);
    return;
  }
  // As before the checks ran in parallel: the signature first.
  if (!h.signature.ok()) {
    FailHead(absl::StrCat(h.what, ": ", h.signature.message(),
                          " (the head was replaced or forged)"));
    return;
  }
  if (!h.error.empty()) {
    FailHead(h.error);
    return;
  }
  if (h.beyond_log) {
    FailHead(absl::StrCat(h.what, " covers ", h.size, " entries but the log has only ",
                          frontier_.size(), ": entries ", frontier_.size(), "..",
                          h.size - 1, " were removed (truncated)"));
    return;
  }
  report_.signed_size = std::max<uint64_t>(report_.signed_size, h.size);
  if (h.size != group_size_ && !mismatch_) {
    if (group_matched_) matched_below_ = std::max(matched_below_, group_size_);
    group_size_ = h.size;
    group_matched_ = false;
  }
  if (h.root != h.signed_root) {
    if (!mismatch_) {
      mismatch_ = true;
      mismatch_size_ = h.size;
      mismatch_named_by_claims_ = h.claims_match;
      first_mismatch_ = absl::StrCat(
          h.what, ": signed root ", HexEncode(h.signed_root),
          " differs from the root recomputed from the entries, ", HexEncode(h.root));
    }
    return;
  }
  if (!mismatch_) group_matched_ = true;
}

VerifyReport LogVerifier::Finish() {
  Settle(true);
  report_.root = frontier_.Root();
  report_.entries = frontier_.size();
  for (std::string* error : {&entry_error_, &node_error_, &head_error_}) {
    if (!error->empty()) Fail(*error);
  }
  if (mismatch_) {
    // The entries below the largest head that still matches are as signed;
    // the smallest head that does not match covers the changed entry.
    const uint64_t hi = mismatch_size_;
    // Leaf hashes given beside the entries that recompute the signed root
    // are as good as signed: the first entry that differs from them is it.
    if (mismatch_named_by_claims_ && first_claim_differs_ < hi) {
      Fail(absl::StrCat("entry ", first_claim_differs_,
                        " was changed: its hash differs from the one the "
                        "signed head for size ",
                        hi, " covers (", first_mismatch_, ")"));
      return report_;
    }
    const uint64_t lo = matched_below_;
    Fail(hi == lo + 1
             ? absl::StrCat(
                   "entry ", lo, " was changed: ", first_mismatch_,
                   "; the head for size ", hi, " no longer matches",
                   lo > 0 ? absl::StrCat(", the head for size ", lo, " still does") : "")
             : absl::StrCat("an entry in ", lo, "..", hi - 1,
                            " was changed (the first at or after ", lo,
                            "): ", first_mismatch_, "; no signed head between sizes ", lo,
                            " and ", hi, " narrows it further"));
  }
  // Heads that verified are consistent with each other: each one's root was
  // recomputed from the same entries.
  return report_;
}

namespace {

// The parts of a bundle, each in order, as a verification reads them.
class BundleParts {
 public:
  virtual ~BundleParts() = default;
  // False at the end.
  virtual bool NextEntry(std::string* bytes) = 0;
  virtual bool NextLeafHash(std::string* hash) = 0;
  virtual bool NextHead(std::string* bytes) = 0;
};

VerifyReport Bad(std::string error) {
  VerifyReport bad;
  bad.ok = false;
  bad.error = std::move(error);
  return bad;
}

// The size of a serialized signed head, or nullopt if it does not parse
// (the verifier reports the payload); false if the envelope does not.
bool HeadSize(const std::string& bytes, v1::SignedEnvelope* env,
              std::optional<uint64_t>* size) {
  if (!env->ParseFromString(bytes)) return false;
  v1::TreeHead head;
  if (head.ParseFromString(env->payload())) {
    *size = head.tree_size();
  } else {
    size->reset();
  }
  return true;
}

// Heads must come in size order (an export writes them so).
VerifyReport VerifyParts(const std::string& party, const KeyRing& keys,
                         BundleParts& parts) {
  LogVerifier verifier(party, &keys);
  v1::SignedEnvelope head;
  std::optional<uint64_t> head_size;
  std::string bytes;
  bool have_head = false;
  auto next_head = [&]() -> bool {
    if (!parts.NextHead(&bytes)) {
      have_head = false;
      return true;
    }
    have_head = true;
    return HeadSize(bytes, &head, &head_size);
  };
  // Heads up to the entries added so far (all of them at the end).
  auto pump = [&](bool all) -> bool {
    while (have_head &&
           (all || !head_size.has_value() || *head_size <= verifier.size())) {
      verifier.CheckHead(head);
      if (!next_head()) return false;
    }
    return true;
  };
  const char* kUnparsed = "a tree head in the bundle does not parse";
  if (!next_head() || !pump(false)) return Bad(kUnparsed);
  std::string entry, leaf_hash;
  for (uint64_t i = 0; parts.NextEntry(&entry); ++i) {
    if (parts.NextLeafHash(&leaf_hash)) verifier.AddClaimedLeafHash(leaf_hash);
    verifier.AddEntry(i, entry);
    if (!pump(false)) return Bad(kUnparsed);
  }
  if (!pump(true)) return Bad(kUnparsed);
  return verifier.Finish();
}

absl::Status AddKeys(
    const google::protobuf::RepeatedPtrField<v1::PublicKeyEntry>& entries,
    KeyRing* keys) {
  for (const v1::PublicKeyEntry& k : entries) {
    absl::Status st = keys->Add(k.party(), k.key_id(), k.ed25519_public_key());
    if (!st.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("bundle key ", k.key_id(), ": ", st.message()));
  }
  return absl::OkStatus();
}

// Heads sorted by size (stable), whatever order the bundle holds them in.
std::vector<std::string> SortedHeads(std::vector<std::string> heads) {
  std::vector<std::pair<uint64_t, size_t>> order;
  for (size_t i = 0; i < heads.size(); ++i) {
    v1::SignedEnvelope env;
    std::optional<uint64_t> size;
    HeadSize(heads[i], &env, &size);
    order.emplace_back(size.value_or(0), i);
  }
  std::stable_sort(order.begin(), order.end());
  std::vector<std::string> out;
  out.reserve(heads.size());
  for (const auto& [size, i] : order) out.push_back(std::move(heads[i]));
  return out;
}

class MemoryParts final : public BundleParts {
 public:
  MemoryParts(const v1::AuditBundle& bundle, std::vector<std::string> heads)
      : bundle_(bundle), heads_(std::move(heads)) {}
  bool NextEntry(std::string* bytes) override {
    if (entry_ >= bundle_.entries_size()) return false;
    *bytes = bundle_.entries(entry_++);
    return true;
  }
  bool NextLeafHash(std::string* hash) override {
    if (leaf_ >= bundle_.leaf_hashes_size()) return false;
    *hash = bundle_.leaf_hashes(leaf_++);
    return true;
  }
  bool NextHead(std::string* bytes) override {
    if (head_ >= heads_.size()) return false;
    *bytes = heads_[head_++];
    return true;
  }

 private:
  const v1::AuditBundle& bundle_;
  std::vector<std::string> heads_;
  int entry_ = 0, leaf_ = 0;
  size_t head_ = 0;
};

// One repeated length-delimited field of a serialized AuditBundle read from
// a file, value by value: a file of any size in a buffer's memory.
class FieldCursor {
 public:
  static absl::StatusOr<std::unique_ptr<FieldCursor>> Open(const std::string& path,
                                                           int field) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    return std::unique_ptr<FieldCursor>(new FieldCursor(fd, field));
  }
  ~FieldCursor() { ::close(fd_); }

  // The next value of the field, or of any length-delimited field if it is
  // 0 (then *field_number says which). False at the end; *ok false if the
  // file is not a serialized message.
  bool Next(std::string* value, bool* ok, int* field_number = nullptr) {
    for (;;) {
      // One CodedInputStream per value: its 2 GiB limit counts from here.
      google::protobuf::io::CodedInputStream in(&stream_);
      const uint32_t tag = in.ReadTag();
      if (tag == 0) {
        if (!in.ConsumedEntireMessage()) *ok = false;  // Not the end: a bad tag.
        return false;
      }
      const int number = static_cast<int>(tag >> 3);
      using google::protobuf::internal::WireFormatLite;
      if (WireFormatLite::GetTagWireType(tag) ==
              WireFormatLite::WIRETYPE_LENGTH_DELIMITED &&
          (number == field_ || field_ == 0)) {
        uint32_t length = 0;
        if (!in.ReadVarint32(&length) ||
            !in.ReadString(value, static_cast<int>(length))) {
          *ok = false;
          return false;
        }
        if (field_number != nullptr) *field_number = number;
        return true;
      }
      if (!WireFormatLite::SkipField(&in, tag)) {
        *ok = false;
        return false;
      }
    }
  }

 private:
  FieldCursor(int fd, int field) : fd_(fd), field_(field), stream_(fd, 1 << 16) {}
  int fd_;
  int field_;
  google::protobuf::io::FileInputStream stream_;
};

class FileParts final : public BundleParts {
 public:
  FileParts(std::unique_ptr<FieldCursor> entries,
            std::unique_ptr<FieldCursor> leaf_hashes, std::unique_ptr<FieldCursor> heads,
            const std::vector<std::string>* sorted_heads)
      : entries_(std::move(entries)),
        leaf_hashes_(std::move(leaf_hashes)),
        heads_(std::move(heads)),
        sorted_heads_(sorted_heads) {}
  bool NextEntry(std::string* bytes) override { return entries_->Next(bytes, &ok_); }
  bool NextLeafHash(std::string* hash) override { return leaf_hashes_->Next(hash, &ok_); }
  bool NextHead(std::string* bytes) override {
    if (sorted_heads_ == nullptr) return heads_->Next(bytes, &ok_);
    if (next_sorted_ >= sorted_heads_->size()) return false;
    *bytes = (*sorted_heads_)[next_sorted_++];
    return true;
  }
  bool ok() const { return ok_; }

 private:
  std::unique_ptr<FieldCursor> entries_, leaf_hashes_, heads_;
  const std::vector<std::string>* sorted_heads_;
  size_t next_sorted_ = 0;
  bool ok_ = true;
};

constexpr int kPartyField = 1;
constexpr int kEntriesField = 2;
constexpr int kHeadsField = 3;
constexpr int kKeysField = 4;
constexpr int kLeafHashesField = 6;

}  // namespace

VerifyReport VerifyBundle(const v1::AuditBundle& bundle) {
  KeyRing keys;
  if (absl::Status st = AddKeys(bundle.public_keys(), &keys); !st.ok()) {
    return Bad(std::string(st.message()));
  }
  MemoryParts parts(bundle, SortedHeads(std::vector<std::string>(
                                bundle.tree_heads().begin(), bundle.tree_heads().end())));
  return VerifyParts(bundle.party(), keys, parts);
}

absl::StatusOr<VerifyReport> VerifyBundleFile(const std::string& path, BundleInfo* info) {
  const std::string not_a_bundle =
      absl::StrCat(path, " is not an audit bundle (comity audit export)");
  // First pass: the party and keys (in the first message of an export, but
  // a later one would override or add to them), and whether the heads come
  // in size order.
  bool heads_sorted = true;
  {
    COMITY_ASSIGN_OR_RETURN(std::unique_ptr<FieldCursor> all, FieldCursor::Open(path, 0));
    std::string value;
    bool ok = true;
    int number = 0;
    uint64_t last_size = 0;
    while (all->Next(&value, &ok, &number)) {
      if (number == kPartyField) {
        info->party = value;
      } else if (number == kKeysField) {
        v1::PublicKeyEntry key;
        if (!key.ParseFromString(value)) return absl::InvalidArgumentError(not_a_bundle);
        info->public_keys.push_back(std::move(key));
      } else if (number == kHeadsField && heads_sorted) {
        v1::SignedEnvelope env;
        std::optional<uint64_t> size;
        if (HeadSize(value, &env, &size) && size.has_value()) {
          if (*size < last_size) heads_sorted = false;
          last_size = *size;
        }
      }
    }
    if (!ok) return absl::InvalidArgumentError(not_a_bundle);
  }
  KeyRing keys;
  for (const v1::PublicKeyEntry& k : info->public_keys) {
    absl::Status st = keys.Add(k.party(), k.key_id(), k.ed25519_public_key());
    if (!st.ok()) return Bad(absl::StrCat("bundle key ", k.key_id(), ": ", st.message()));
  }
  std::vector<std::string> sorted;
  if (!heads_sorted) {
    // Not as an export writes it: the heads are held to be sorted.
    COMITY_ASSIGN_OR_RETURN(std::unique_ptr<FieldCursor> heads,
                            FieldCursor::Open(path, kHeadsField));
    std::string value;
    bool ok = true;
    std::vector<std::string> all;
    while (heads->Next(&value, &ok)) all.push_back(value);
    sorted = SortedHeads(std::move(all));
  }
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<FieldCursor> entries,
                          FieldCursor::Open(path, kEntriesField));
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<FieldCursor> leaf_hashes,
                          FieldCursor::Open(path, kLeafHashesField));
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<FieldCursor> heads,
                          FieldCursor::Open(path, kHeadsField));
  FileParts parts(std::move(entries), std::move(leaf_hashes), std::move(heads),
                  heads_sorted ? nullptr : &sorted);
  VerifyReport report = VerifyParts(info->party, keys, parts);
  if (!parts.ok()) return absl::InvalidArgumentError(not_a_bundle);
  return report;
}

}  // namespace comity
