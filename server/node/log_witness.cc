#include "server/node/log_witness.h"

#include "absl/strings/str_cat.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {

absl::Status LogWitness::RecordStart() {
  const NodeSetup& setup = ctx_->setup();
  // The key this node signs with, to notice a change since the last start.
  const std::string key_hash = Sha256(absl::StrCat(setup.config.signing_key().key_id(),
                                                   ":", setup.signing_key->public_key()));
  AuditFilter started;
  started.type = v1::NODE_STARTED;
  COMITY_ASSIGN_OR_RETURN(std::vector<std::string> starts,
                          ctx_->store().audit().Entries(started));
  std::string previous_key;
  if (!starts.empty()) {
    v1::AuditEntry last;
    if (last.ParseFromString(starts.back()) && last.hashes_size() > 1)
      previous_key = last.hashes(1);
  }
  const std::string config_hash = Sha256(setup.config.SerializeAsString());
  return ctx_->store().audit().Append([&](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e = ctx_->Event(v1::NODE_STARTED, "node");
    e.add_hashes(config_hash);
    e.add_hashes(key_hash);
    e.set_detail(absl::StrCat("party ", ctx_->party(), "; signing key ",
                              setup.config.signing_key().key_id(), "; treaty library ",
                              setup.treaties->version(), "; ", setup.peers.size(),
                              " peers"));
    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
    if (!previous_key.empty() && previous_key != key_hash) {
      v1::AuditEntry k = ctx_->Event(v1::KEY_CHANGED, "node");
      k.add_hashes(previous_key);
      k.add_hashes(key_hash);
      k.set_detail(
          absl::StrCat("signing key is now ", setup.config.signing_key().key_id()));
      COMITY_RETURN_IF_ERROR(w.Append(&k).status());
    }
    return ctx_->SignHead(w).status();
  });
}

absl::StatusOr<v1::SignedEnvelope> LogWitness::SignTreeHead() {
  // One signer at a time: gossip workers asking together sign one head.
  absl::MutexLock lock(&sign_mu_);
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> latest,
                          ctx_->store().audit().LatestTreeHead());
  COMITY_ASSIGN_OR_RETURN(uint64_t size, ctx_->store().audit().Size());
  if (latest.has_value() && latest->head.tree_size() == size) return latest->signed_head;
  v1::SignedEnvelope head;
  COMITY_RETURN_IF_ERROR(
      ctx_->store().audit().Append([&](AuditWriter& w) -> absl::Status {
        COMITY_ASSIGN_OR_RETURN(head, ctx_->SignHead(w));
        return absl::OkStatus();
      }));
  return head;
}

void LogWitness::GossipWith(const std::string& peer) {
  // A peer the outbox cannot reach is its lane's concern: a gossip call
  // would only wait for the timeout.
  if (!reachable_(peer)) return;
  absl::StatusOr<v1::SignedEnvelope> ours = SignTreeHead();
  if (!ours.ok()) {
    LogEvent(LogLevel::kError, "audit_error", {{"error", ours.status().ToString()}});
    return;
  }
  auto theirs = ctx_->transport().ExchangeTreeHeads(peer, *ours, ctx_->attempt_timeout());
  ctx_->NoteContact(peer, theirs.status());
  if (!theirs.ok() || theirs->signer_party() != peer) return;
  CheckPeerHead(peer, *theirs).IgnoreError();  // Logged and audited inside.
}

void LogWitness::GossipRound() {
  for (const auto& [peer, unused] : ctx_->setup().peers) GossipWith(peer);
}

absl::StatusOr<v1::SignedEnvelope> LogWitness::ExchangeTreeHeads(
    const std::string& peer_party, const v1::SignedEnvelope& their_head) {
  if (their_head.signer_party() != peer_party) {
    return absl::PermissionDeniedError(
        absl::StrCat("tree head is signed as '", their_head.signer_party().substr(0, 8),
                     "' but the TLS peer is ", peer_party));
  }
  absl::Status checked = CheckPeerHead(peer_party, their_head);
  if (!checked.ok() && !absl::IsUnavailable(checked) &&
      !absl::IsDeadlineExceeded(checked)) {
    return checked;
  }
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> ours,
                          ctx_->store().audit().LatestTreeHead());
  if (!ours.has_value()) return SignTreeHead();
  return ours->signed_head;
}

void LogWitness::MaybeCheckPeerHead(const std::string& party,
                                    const v1::SignedEnvelope& head) {
  {
    absl::MutexLock lock(&mu_);
    auto [it, first] = last_receipt_check_.try_emplace(party, -absl::InfiniteDuration());
    const absl::Duration now = ctx_->MonotonicNow();
    if (!first && now - it->second < absl::Seconds(1)) return;
    it->second = now;
  }
  CheckPeerHead(party, head).IgnoreError();  // Logged inside.
}

absl::Status LogWitness::CheckPeerHead(const std::string& party_code,
                                       const v1::SignedEnvelope& signed_head) {
  COMITY_RETURN_IF_ERROR(
      VerifyEnvelope(signed_head, kTreeHeadPayloadType, ctx_->key_ring()));
  StoredTreeHead now;
  now.signed_head = signed_head;
  if (!now.head.ParseFromString(signed_head.payload()) ||
      now.head.party() != party_code || signed_head.signer_party() != party_code ||
      now.head.root_hash().size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat("not a tree head of ", party_code));
  }
  const absl::Time signed_at = absl::FromUnixMicros(now.head.timestamp_unix_micros());
  const absl::Duration skew = ctx_->setup().max_clock_skew();
  COMITY_RETURN_IF_ERROR(CheckSignedTime(absl::StrCat(party_code, "'s tree head"), signed_at,
                                         ctx_->Now(), skew, absl::InfinitePast()));
  AuditStore& audit = ctx_->store().audit();
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> last,
                          audit.LatestPeerHead(party_code));
  if (!last.has_value()) return audit.PutPeerHead(party_code, now, ctx_->Now());
  const uint64_t old_size = last->head.tree_size();
  const uint64_t new_size = now.head.tree_size();
  // A larger log is signed later, a smaller one earlier.
  const absl::Time last_at = absl::FromUnixMicros(last->head.timestamp_unix_micros());
  if (new_size > old_size) {
    COMITY_RETURN_IF_ERROR(CheckSignedTime(
        absl::StrCat(party_code, "'s head of size ", new_size), signed_at, ctx_->Now(), skew,
        last_at));
  } else if (new_size < old_size && signed_at > last_at + skew) {
    // Two heads signed by the party: its log shrank (a rollback, a restore
    // it did not check), or its clock was off by more than the skew. Either
    // way its partners must hear of it.
    return RaiseSplitView(
        party_code, last->signed_head, signed_head,
        absl::StrCat("its head of size ", new_size, " is dated after its head of size ",
                     old_size, " held here; a party's log does not shrink"),
        "");
  }
  if (new_size == old_size) {
    if (now.head.root_hash() == last->head.root_hash()) return absl::OkStatus();
    return RaiseSplitView(party_code, last->signed_head, signed_head,
                          absl::StrCat("two different roots for size ", new_size), "");
  }
  // The smaller head must be a prefix of the larger: ask the peer to prove it.
  const StoredTreeHead& small = new_size < old_size ? now : *last;
  const StoredTreeHead& large = new_size < old_size ? *last : now;
  auto proof = ctx_->transport().GetConsistencyProof(party_code, small.head.tree_size(),
                                                     large.head.tree_size(),
                                                     ctx_->attempt_timeout());
  if (!proof.ok()) {
    // Unreachable, or refusing (misconfigured, busy): not evidence of a split
    // view. Checked again with the next head.
    LogEvent(
        LogLevel::kWarning, "peer_head_unchecked",
        {{"party", party_code},
         {"sizes", absl::StrCat(small.head.tree_size(), "..", large.head.tree_size())},
         {"error", proof.status().ToString()}});
    return proof.status();
  }
  absl::Status consistent =
      merkle::VerifyConsistency(small.head.tree_size(), large.head.tree_size(),
                                small.head.root_hash(), large.head.root_hash(), *proof);
  if (!consistent.ok()) {
    return RaiseSplitView(party_code, small.signed_head, large.signed_head,
                          std::string(consistent.message()), "");
  }
  if (new_size > old_size) return audit.PutPeerHead(party_code, now, ctx_->Now());
  return absl::OkStatus();
}

absl::Status LogWitness::RaiseSplitView(const std::string& party_code,
                                        const v1::SignedEnvelope& first,
                                        const v1::SignedEnvelope& second,
                                        const std::string& why,
                                        const std::string& reporter) {
  const bool report_to_peer = reporter.empty();
  // Both were verified and parsed by the caller.
  v1::TreeHead a, b;
  if (!a.ParseFromString(first.payload()) || !b.ParseFromString(second.payload())) {
    return absl::InternalError("RaiseSplitView: a head does not parse");
  }
  std::string detail = absl::StrCat(
      party_code, "'s log: heads of size ", a.tree_size(), " (root ",
      HexEncode(a.root_hash()).substr(0, 16), ") and ", b.tree_size(), " (root ",
      HexEncode(b.root_hash()).substr(0, 16), ") are inconsistent: ", why);
  LogEvent(LogLevel::kError, "split_view_detected",
           {{"party", party_code}, {"detail", detail}});
  ctx_->AuditOrLog([&](AuditWriter& w) {
    v1::AuditEntry e =
        ctx_->Event(v1::SPLIT_VIEW_DETECTED, report_to_peer ? "node" : "peer:" + reporter,
                    "", report_to_peer ? party_code : reporter);
    e.add_hashes(Sha256(first.payload()));
    e.add_hashes(Sha256(second.payload()));
    e.set_detail(detail);
    return w.Append(&e).status();
  });
  if (report_to_peer) {
    absl::Status reported = ctx_->transport().ReportSplitView(party_code, first, second,
                                                              ctx_->attempt_timeout());
    if (!reported.ok()) {
      LogEvent(LogLevel::kWarning, "split_view_report_failed",
               {{"party", party_code}, {"error", reported.ToString()}});
    }
  }
  return absl::DataLossError(detail);
}

absl::Status LogWitness::HandleSplitViewReport(const std::string& peer_party,
                                               const v1::SignedEnvelope& first,
                                               const v1::SignedEnvelope& second) {
  // Both heads must be ours, and must really contradict each other.
  v1::TreeHead heads[2];
  const v1::SignedEnvelope* envs[2] = {&first, &second};
  for (int i = 0; i < 2; ++i) {
    if (envs[i]->signer_party() != ctx_->party()) {
      return absl::InvalidArgumentError("a reported head is not signed by this party");
    }
    COMITY_RETURN_IF_ERROR(
        VerifyEnvelope(*envs[i], kTreeHeadPayloadType, ctx_->key_ring()));
    if (!heads[i].ParseFromString(envs[i]->payload())) {
      return absl::InvalidArgumentError("a reported head does not parse");
    }
  }
  bool contradict = false;
  const v1::TreeHead& smaller = heads[0].tree_size() < heads[1].tree_size() ? heads[0] : heads[1];
  const v1::TreeHead& larger = heads[0].tree_size() < heads[1].tree_size() ? heads[1] : heads[0];
  if (heads[0].tree_size() == heads[1].tree_size()) {
    contradict = heads[0].root_hash() != heads[1].root_hash();
  } else if (absl::FromUnixMicros(smaller.timestamp_unix_micros()) >
             absl::FromUnixMicros(larger.timestamp_unix_micros()) +
                 ctx_->setup().max_clock_skew()) {
    contradict = true;  // This log shrank: it signed the smaller one later.
  } else {
    // Our own log decides: each head must match our root at its size.
    for (const v1::TreeHead& h : heads) {
      auto root = ctx_->store().audit().RootAt(h.tree_size());
      if (!root.ok() || *root != h.root_hash()) contradict = true;
    }
  }
  if (!contradict) {
    return absl::InvalidArgumentError(
        "the reported heads are consistent with this node's log; no split view");
  }
  RaiseSplitView(
      ctx_->party(), first, second,
      absl::StrCat("reported by ", peer_party, ": this party's key signed both"),
      peer_party)
      .IgnoreError();  // DataLoss by design: the alert is raised.
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> LogWitness::ConsistencyProof(uint64_t old_size,
                                                                      uint64_t new_size) {
  return ctx_->store().audit().ConsistencyProofAt(old_size, new_size);
}

absl::StatusOr<std::optional<v1::SignedEnvelope>> LogWitness::HeldHeadOf(
    const std::string& peer_party) {
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> held,
                          ctx_->store().audit().LatestPeerHead(peer_party));
  if (!held.has_value()) return std::optional<v1::SignedEnvelope>();
  return std::optional<v1::SignedEnvelope>(held->signed_head);
}

absl::StatusOr<VerifyReport> LogWitness::Verify() {
  // A long verify says how far it got (docs/audit_log.md, "Verification").
  const absl::Time start = absl::Now();
  auto progress = [start](uint64_t done, uint64_t total) {
    LogEvent(LogLevel::kInfo, "audit_verify_progress",
             {{"entries", absl::StrCat(done)},
              {"of", absl::StrCat(total)},
              {"seconds", absl::StrCat(absl::ToInt64Seconds(absl::Now() - start))}});
  };
  absl::StatusOr<VerifyReport> report =
      VerifyStoredLog(ctx_->store().audit(), ctx_->party(), ctx_->key_ring(), progress);
  if (report.ok()) {
    LogEvent(LogLevel::kInfo, "audit_verified",
             {{"entries", absl::StrCat(report->entries)},
              {"ok", report->ok ? "true" : "false"},
              {"seconds", absl::StrCat(absl::ToInt64Seconds(absl::Now() - start))}});
  }
  return report;
}

void LogWitness::RecordAuditExport(const std::string& actor) {
  ctx_->AuditOrLog([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::AUDIT_EXPORTED, actor);
    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
    return ctx_->SignHead(w).status();
  });
}

}  // namespace comity
