#include "server/store/store.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<VerifyReport> VerifyStoredLog(Store& store, const std::string& party,
                                             const KeyRing& keys) {
  LogVerifier verifier(party, &keys);
  COMITY_RETURN_IF_ERROR(store.ForEachAuditEntry([&](uint64_t pos, const std::string& bytes) {
    verifier.AddEntry(pos, bytes);
    return absl::OkStatus();
  }));
  COMITY_RETURN_IF_ERROR(
      store.ForEachAuditNode([&](int level, uint64_t index, const std::string& hash) {
        verifier.CheckNode(level, index, hash);
        return absl::OkStatus();
      }));
  COMITY_ASSIGN_OR_RETURN(std::vector<StoredTreeHead> heads, store.TreeHeads());
  for (const StoredTreeHead& h : heads) verifier.CheckHead(h.signed_head);
  return verifier.Finish();
}

}  // namespace comity
