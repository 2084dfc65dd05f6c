// The custody package of a request (docs/custody.md), for an operator's
// `comity export ID --out DIR`: the signed request and receipt, every
// signed step and acknowledgement, the evidence files the operator saved
// with the RESPOND steps that list them and the acceptance of their use
// conditions, the keys, and this node's log entries about the request, each
// with an inclusion proof in a head signed for the package. The export is
// audited (CUSTODY_PACKAGE_EXPORTED) with the package's SHA-256 and the
// destination the operator named, which the node records and never opens.
//
//   COMITY_ASSIGN_OR_RETURN(CustodyExport::Package p,
//                           node->custody().Export("alice", id, "/cases/17", {sha}, false));
//   // p.bytes go to DIR/package.pb as they are.
#ifndef COMITY_SERVER_NODE_CUSTODY_EXPORT_H_
#define COMITY_SERVER_NODE_CUSTODY_EXPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/node/evidence_exchange.h"
#include "server/node/log_witness.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class CustodyExport {
 public:
  CustodyExport(const NodeContext* ctx, LogWitness* witness, EvidenceExchange* evidence)
      : ctx_(ctx), witness_(witness), evidence_(evidence) {}

  struct Package {
    std::string bytes;   // A serialized comity.v1.CustodyPackage.
    std::string sha256;  // Of `bytes`, raw: what the audit entry records.
  };

  static constexpr size_t kMaxDestinationBytes = 4096;
  static constexpr int kMaxFiles = 1000;

  // `files`: SHA-256s (raw) of evidence files of the request's responses
  // held here. NotFound for an unknown request or file; InvalidArgument for
  // a destination or file list out of bounds; FailedPrecondition for a
  // TLP:RED request without `allow_tlp_red`; ResourceExhausted for a
  // package over limits.max_message_bytes.
  absl::StatusOr<Package> Export(const std::string& operator_name,
                                 const std::string& request_id,
                                 const std::string& destination,
                                 const std::vector<std::string>& files, bool allow_tlp_red);

 private:
  const NodeContext* const ctx_;
  LogWitness* const witness_;
  EvidenceExchange* const evidence_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_CUSTODY_EXPORT_H_
