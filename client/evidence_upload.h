// Evidence from the operator's machine (docs/evidence.md, "Files from the
// operator"): `comity respond --file PATH` reads the file here and uploads
// it over the operator channel, resuming where an interrupted upload
// stopped; the node verifies it and stages it for the response.
#ifndef COMITY_CLIENT_EVIDENCE_UPLOAD_H_
#define COMITY_CLIENT_EVIDENCE_UPLOAD_H_

#include <string>

#include "absl/status/statusor.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/operator.grpc.pb.h"

namespace comity {

// Uploads the regular file at `path` (on this machine) for a response to
// `request_id`, under its base name; returns the staged file. Hashes it
// first (one pass), then sends what the node lacks, retrying an
// interrupted stream a few times from where the node says it stands.
// InvalidArgument for anything but a non-empty regular file, or a file that
// changes while it is read; the node's refusals otherwise (each naming its
// rule).
absl::StatusOr<v1::EvidenceFile> UploadEvidenceFile(v1::OperatorService::Stub* stub,
                                                    const std::string& request_id,
                                                    const std::string& path);

}  // namespace comity

#endif  // COMITY_CLIENT_EVIDENCE_UPLOAD_H_
