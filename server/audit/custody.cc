#include "server/audit/custody.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/request.pb.h"
#include "server/audit/merkle.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

std::string Short(absl::string_view sha256) { return HexEncode(sha256).substr(0, 16); }

// The checks of one package, in order; each adds one CustodyCheck.
class PackageChecker {
 public:
  PackageChecker(const v1::CustodyPackage& p, const FileDigestFn& digest, CustodyReport* r)
      : p_(p), digest_(digest), report_(r) {}

  void Run() {
    report_->request_id = p_.request_id();
    report_->exporting_party = p_.party();
    if (!Keys()) return;
    if (!Request()) return;
    Receipt();
    Steps();
    Acknowledgements();
    Files();
    Log();
  }

 private:
  void Add(std::string what, absl::Status status, std::string detail = "") {
    report_->checks.push_back({std::move(what), std::move(status), std::move(detail)});
  }
  static absl::Status Bad(absl::string_view message) {
    return absl::InvalidArgumentError(message);
  }

  bool Keys() {
    std::vector<std::string> shown;
    for (const v1::PublicKey& k : p_.keys()) {
      absl::Status added = ring_.Add(k.party(), k.key_id(), k.ed25519_public_key());
      if (!added.ok()) {
        Add(absl::StrCat("key ", k.party(), "/", k.key_id()), added);
        return false;
      }
      shown.push_back(absl::StrCat(k.party(), "/", k.key_id(), " ",
                                   KeyFingerprint(k.ed25519_public_key())));
    }
    if (p_.keys_size() == 0) {
      Add("keys", Bad("the package carries no public key: nothing in it can be checked"));
      return false;
    }
    Add("keys", absl::OkStatus(), absl::StrJoin(shown, ", "));
    return true;
  }

  bool Request() {
    absl::Status st = VerifyEnvelope(p_.request(), kRequestPayloadType, ring_);
    if (st.ok() && !body_.ParseFromString(p_.request().payload())) {
      st = Bad("the request's payload is not a comity.v1.RequestBody");
    }
    if (st.ok() && body_.id() != p_.request_id()) {
      st = Bad(absl::StrCat("the signed request is ", body_.id(), ", the package says ",
                            p_.request_id()));
    }
    if (st.ok() && p_.request().signer_party() != body_.requesting_party()) {
      st = absl::UnauthenticatedError(absl::StrCat("the request is signed by ",
                                                   p_.request().signer_party(),
                                                   ", not by its requesting party ",
                                                   body_.requesting_party()));
    }
    if (st.ok() && p_.party() != body_.requesting_party() &&
        p_.party() != body_.requested_party()) {
      st = Bad(absl::StrCat("the package was exported by ", p_.party(),
                            ", a party to neither side of the request"));
    }
    report_->requesting_party = body_.requesting_party();
    report_->requested_party = body_.requested_party();
    Add("request", st,
        st.ok() ? absl::StrCat(body_.id(), " from ", body_.requesting_party(), " to ",
                               body_.requested_party(), ", ",
                               v1::AssistanceType_Name(body_.assistance_type()),
                               ", signed by ", body_.requesting_party())
                : "");
    request_sha_ = Sha256(p_.request().payload());
    return st.ok();
  }

  void Receipt() {
    if (!p_.has_receipt()) {
      Add("receipt", Bad(absl::StrCat("no receipt of ", body_.requested_party(),
                                      ": nothing shows the request was received")));
      return;
    }
    absl::StatusOr<v1::Receipt> r =
        VerifyReceipt(p_.request(), p_.receipt(), body_.requested_party(), ring_);
    if (!r.ok()) {
      Add("receipt", r.status());
      return;
    }
    v1::TreeHead head;
    head.ParseFromString(r->tree_head().payload());
    Add("receipt", absl::OkStatus(),
        absl::StrCat("signed by ", body_.requested_party(), ", its log entry ",
                     r->received_entry_proof().leaf_index(), " proven in its head of size ",
                     head.tree_size()));
  }

  void Steps() {
    std::string previous = request_sha_;
    for (int i = 0; i < p_.transitions_size(); ++i) {
      const v1::SignedEnvelope& env = p_.transitions(i);
      const std::string what = absl::StrCat("step ", i + 1);
      v1::Transition t;
      absl::Status st = VerifyEnvelope(env, kTransitionPayloadType, ring_);
      if (st.ok() && !t.ParseFromString(env.payload())) {
        st = Bad("its payload is not a comity.v1.Transition");
      }
      if (st.ok() && env.signer_party() != body_.requested_party()) {
        st = absl::UnauthenticatedError(absl::StrCat(
            "signed by ", env.signer_party(), ": the requested party ",
            body_.requested_party(), " numbers and signs every step"));
      }
      if (st.ok() && (t.request_id() != body_.id() ||
                      t.sequence() != static_cast<uint32_t>(i + 1))) {
        st = Bad(absl::StrCat("it is step ", t.sequence(), " of request ", t.request_id()));
      }
      if (st.ok() && t.previous_sha256() != previous) {
        st = Bad(i == 0 ? "it does not follow the request (previous_sha256)"
                        : "it does not follow the step before it (previous_sha256)");
      }
      if (st.ok() && t.has_proposal()) st = Proposal(t);
      Add(what, st,
          st.ok() ? absl::StrCat(v1::CaseAction_Name(t.action()), " by ", t.party(),
                                 t.operator_name().empty() ? "" : " (", t.operator_name(),
                                 t.operator_name().empty() ? "" : ")")
                  : "");
      if (!st.ok()) return;  // Later steps chain from this one.
      previous = Sha256(env.payload());
      steps_.push_back(std::move(t));
      step_hashes_.push_back(previous);
    }
    report_->steps = static_cast<uint32_t>(steps_.size());
  }

  // A step the requesting party took: its own signed proposal, the same.
  absl::Status Proposal(const v1::Transition& t) {
    COMITY_RETURN_IF_ERROR(
        VerifyEnvelope(t.proposal(), kProposalPayloadType, ring_));
    v1::TransitionProposal prop;
    if (!prop.ParseFromString(t.proposal().payload())) {
      return Bad("its proposal is not a comity.v1.TransitionProposal");
    }
    if (t.proposal().signer_party() != body_.requesting_party() ||
        t.party() != body_.requesting_party()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "its proposal is signed by ", t.proposal().signer_party(),
          ", not by the requesting party ", body_.requesting_party()));
    }
    if (prop.request_id() != body_.id() || prop.action() != t.action() ||
        std::vector<std::string>(prop.accepted_conditions().begin(),
                                 prop.accepted_conditions().end()) !=
            std::vector<std::string>(t.accepted_conditions().begin(),
                                     t.accepted_conditions().end())) {
      return Bad("the step differs from the requesting party's signed proposal");
    }
    return absl::OkStatus();
  }

  void Acknowledgements() {
    for (const v1::SignedEnvelope& env : p_.acknowledgements()) {
      v1::Acknowledgement a;
      absl::Status st = VerifyEnvelope(env, kAckPayloadType, ring_);
      if (st.ok() && !a.ParseFromString(env.payload())) {
        st = Bad("its payload is not a comity.v1.Acknowledgement");
      }
      const std::string what = absl::StrCat("acknowledgement of step ", a.sequence());
      if (st.ok() && (a.party() != env.signer_party() || a.request_id() != body_.id())) {
        st = Bad("it is not the signer's acknowledgement of this request");
      }
      if (st.ok() && (a.sequence() == 0 || a.sequence() > step_hashes_.size() ||
                      step_hashes_[a.sequence() - 1] != a.payload_sha256())) {
        st = Bad("it acknowledges a step the package does not hold");
      }
      Add(what, st, st.ok() ? absl::StrCat("signed by ", a.party()) : "");
    }
  }

  void Files() {
    std::set<std::string> paths;
    for (const v1::CustodyFile& f : p_.files()) {
      const std::string what = f.path().empty() ? f.name() : f.path();
      absl::Status st = absl::OkStatus();
      if (f.path() != CustodyPath(f.name(), f.sha256()) || !paths.insert(f.path()).second) {
        st = Bad(absl::StrCat("its path is not the package's place for '", f.name(), "'"));
      }
      const v1::Transition* respond =
          f.respond_step() >= 1 && f.respond_step() <= steps_.size()
              ? &steps_[f.respond_step() - 1]
              : nullptr;
      bool listed = false;
      if (respond != nullptr && respond->action() == v1::RESPOND) {
        for (const v1::EvidenceFile& e : respond->evidence()) {
          listed |= e.sha256() == f.sha256() && e.name() == f.name() && e.size() == f.size();
        }
      }
      if (st.ok() && !listed) {
        st = absl::UnauthenticatedError(absl::StrCat(
            "no signed RESPOND step lists it (the package names step ", f.respond_step(),
            ")"));
      }
      if (st.ok()) st = Conditions(f, *respond);
      if (st.ok()) {
        absl::StatusOr<FileDigest> d = digest_(f.path());
        if (!d.ok()) {
          st = d.status();
        } else if (d->size != f.size()) {
          st = absl::DataLossError(absl::StrCat(
              "it is ", d->size, " bytes; the signed response (step ", f.respond_step(),
              ") says ", f.size()));
        } else if (d->sha256 != f.sha256()) {
          st = absl::DataLossError(absl::StrCat(
              "its SHA-256 is ", HexEncode(d->sha256), "; the signed response (step ",
              f.respond_step(), ") says ", HexEncode(f.sha256()),
              ": the file was changed after it was released"));
        }
      }
      Add(what, st,
          st.ok() ? absl::StrCat(f.size(), " bytes, SHA-256 ", HexEncode(f.sha256()),
                                 ", released by ", body_.requested_party(), " in step ",
                                 f.respond_step(),
                                 f.release_conditions_size() == 0
                                     ? ", no use conditions"
                                     : absl::StrCat(", conditions accepted by ",
                                                    body_.requesting_party(), " in step ",
                                                    f.accepted_in_step()))
                  : "");
      if (st.ok()) ++report_->files;
    }
  }

  // The conditions the RESPOND step attached, and the signed step of the
  // requesting party that accepted them, verbatim, after it.
  absl::Status Conditions(const v1::CustodyFile& f, const v1::Transition& respond) {
    const std::vector<std::string> attached(respond.release_conditions().begin(),
                                            respond.release_conditions().end());
    if (std::vector<std::string>(f.release_conditions().begin(),
                                 f.release_conditions().end()) != attached) {
      return Bad("its conditions differ from those of the signed response");
    }
    if (attached.empty()) {
      return f.accepted_in_step() == 0
                 ? absl::OkStatus()
                 : Bad("it names an acceptance of conditions that were never attached");
    }
    const uint32_t at = f.accepted_in_step();
    if (at <= f.respond_step() || at > steps_.size() ||
        steps_[at - 1].action() != v1::ACCEPT_CONDITIONS) {
      if (at == 0 && p_.party() == body_.requested_party()) {
        // The requested party's own copy: its conditions are still open.
        return absl::FailedPreconditionError(absl::StrCat(
            "released under conditions ", body_.requesting_party(),
            " has not accepted (ETS185 Art 28(2)): ", absl::StrJoin(attached, "; ")));
      }
      return absl::UnauthenticatedError(absl::StrCat(
          "no ACCEPT_CONDITIONS step of ", body_.requesting_party(),
          " after the response accepts its conditions"));
    }
    std::set<std::string> accepted(steps_[at - 1].accepted_conditions().begin(),
                                   steps_[at - 1].accepted_conditions().end());
    for (const std::string& c : attached) {
      if (accepted.count(c) == 0) {
        return Bad(absl::StrCat("step ", at, " does not accept the condition '", c, "'"));
      }
    }
    return absl::OkStatus();
  }

  void Log() {
    v1::TreeHead head;
    absl::Status st = VerifyEnvelope(p_.tree_head(), kTreeHeadPayloadType, ring_);
    if (st.ok() && (p_.tree_head().signer_party() != p_.party() ||
                    !head.ParseFromString(p_.tree_head().payload()) ||
                    head.party() != p_.party())) {
      st = Bad(absl::StrCat("the tree head is not a head of ", p_.party(), "'s log"));
    }
    Add(absl::StrCat(p_.party(), "'s tree head"), st,
        st.ok() ? absl::StrCat("size ", head.tree_size(), ", root ",
                               HexEncode(head.root_hash()), ", signed by ", p_.party())
                : "");
    if (!st.ok()) return;
    // What the entries that proved in the head logged.
    std::set<std::string> logged;
    for (const v1::ProvenEntry& pe : p_.entries()) {
      v1::AuditEntry e;
      absl::Status est = absl::OkStatus();
      if (!e.ParseFromString(pe.entry())) est = Bad("it is not a comity.v1.AuditEntry");
      const std::string what = absl::StrCat("log entry ", e.index());
      if (est.ok() && e.request_id() != body_.id()) {
        est = Bad(absl::StrCat("it is about request ", e.request_id()));
      }
      if (est.ok()) {
        est = merkle::VerifyInclusion(
            e.index(), head.tree_size(), merkle::LeafHash(pe.entry()),
            std::vector<std::string>(pe.proof().begin(), pe.proof().end()),
            head.root_hash());
      }
      Add(what, est,
          est.ok() ? absl::StrCat(v1::AuditEventType_Name(e.type()), " by ", e.actor(),
                                  ", proven in the head")
                   : "");
      if (!est.ok()) continue;
      ++report_->log_entries;
      if (e.hashes_size() > 0) logged.insert(absl::StrCat(e.type(), ":", e.hashes(0)));
    }
    // The exporting party logged the request, every step and every file.
    const bool sent = p_.party() == body_.requesting_party();
    auto has = [&](std::initializer_list<v1::AuditEventType> types, const std::string& h) {
      for (v1::AuditEventType t : types) {
        if (logged.count(absl::StrCat(t, ":", h)) > 0) return true;
      }
      return false;
    };
    absl::Status cover = absl::OkStatus();
    if (!has(sent ? std::initializer_list<v1::AuditEventType>{v1::REQUEST_SUBMITTED,
                                                              v1::REQUEST_APPROVED}
                  : std::initializer_list<v1::AuditEventType>{v1::REQUEST_RECEIVED},
             request_sha_)) {
      cover = absl::NotFoundError("no proven entry logs the request");
    }
    for (size_t i = 0; cover.ok() && i < step_hashes_.size(); ++i) {
      if (!has({v1::CASE_DECIDED, v1::CASE_UPDATED}, step_hashes_[i])) {
        cover = absl::NotFoundError(absl::StrCat("no proven entry logs step ", i + 1));
      }
    }
    for (const v1::CustodyFile& f : p_.files()) {
      if (cover.ok() &&
          !has({v1::EVIDENCE_RECEIVED, v1::EVIDENCE_IMPORTED}, f.sha256())) {
        cover = absl::NotFoundError(absl::StrCat("no proven entry logs the file ", f.path(),
                                                 " (", Short(f.sha256()), "...) held"));
      }
    }
    Add(absl::StrCat(p_.party(), "'s log"), cover,
        cover.ok() ? absl::StrCat("holds the request, its ", step_hashes_.size(),
                                  " steps and ", p_.files_size(), " files")
                   : "");
  }

  const v1::CustodyPackage& p_;
  const FileDigestFn& digest_;
  CustodyReport* report_;
  KeyRing ring_;
  v1::RequestBody body_;
  std::string request_sha_;
  std::vector<v1::Transition> steps_;
  std::vector<std::string> step_hashes_;
};

}  // namespace

std::string CustodyPath(absl::string_view name, absl::string_view sha256) {
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(absl::string_view("/\0", 2)) != absl::string_view::npos) {
    return absl::StrCat("evidence/", HexEncode(sha256));
  }
  return absl::StrCat("evidence/", name);
}

bool CustodyReport::ok() const {
  if (checks.empty()) return false;
  for (const CustodyCheck& c : checks) {
    if (!c.status.ok()) return false;
  }
  return true;
}

std::string CustodyReport::FirstFailure() const {
  for (const CustodyCheck& c : checks) {
    if (!c.status.ok()) return absl::StrCat(c.what, ": ", c.status.message());
  }
  return checks.empty() ? "the package was not checked" : "";
}

CustodyReport VerifyCustodyPackage(absl::string_view package_bytes,
                                   const FileDigestFn& digest) {
  CustodyReport report;
  v1::CustodyPackage p;
  if (!p.ParseFromString(std::string(package_bytes))) {
    report.checks.push_back(
        {"package", absl::InvalidArgumentError("it is not a comity.v1.CustodyPackage"), ""});
    return report;
  }
  if (p.format_version() != kCustodyFormatVersion) {
    report.checks.push_back(
        {"package",
         absl::InvalidArgumentError(absl::StrCat(
             "format version ", p.format_version(), "; this verifier reads version ",
             kCustodyFormatVersion, " (a newer comity reads newer packages)")),
         ""});
    return report;
  }
  report.checks.push_back({"package", absl::OkStatus(),
                           absl::StrCat("format ", p.format_version(), ", exported by ",
                                        p.exported_by(), " of ", p.party())});
  PackageChecker(p, digest, &report).Run();
  return report;
}

}  // namespace comity
