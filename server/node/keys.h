// Keys over time (docs/keys.md): this node announces its key rotations and
// revocations to its peers, signed by the key they already trust, until each
// acknowledges them; it checks, applies and keeps (data_dir/peer_keys.pb)
// the announcements its peers send, and lists every key it knows.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Keys> keys, Keys::Create(&ctx));
//   keys->AnnounceTo("JP");  // Run by JP's worker; backs off per peer.
#ifndef COMITY_SERVER_NODE_KEYS_H_
#define COMITY_SERVER_NODE_KEYS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/peer.pb.h"
#include "comity/v1/record.pb.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class Keys {
 public:
  // Replays the peers' announcements accepted before a restart into the key
  // ring and decides this node's own announcements (what to announce, which
  // key vouches for it). DataLoss if the file of accepted announcements is
  // damaged; the signing error if a key cannot sign.
  static absl::StatusOr<std::unique_ptr<Keys>> Create(const NodeContext* ctx);

  // A peer's signed announcement of a new key of its own, or of the
  // revocation of one: checked, added to the key ring, kept in data_dir
  // and audited. Returns whether it taught this node anything. Errors as
  // documented on PeerService.AnnounceKey in proto/comity/v1/peer.proto.
  absl::StatusOr<bool> ReceiveAnnouncement(const std::string& peer_party,
                                           const v1::AnnounceKeyRequest& request);
  // Sends this node's announcements to `peer` unless it acknowledged them
  // since the node started, with backoff after a failure (timed on the
  // monotonic clock). Each attempt signs them afresh, dated now: a peer
  // accepts an announcement only within its replay window of the time it
  // claims, and may be down for longer. Each peer has its own worker, so
  // that a silent peer delays no other's announcements.
  void AnnounceTo(const std::string& peer);
  // AnnounceTo every peer in turn (tests).
  void AnnounceRound();
  // Every key in the key ring with its window and state at the node's
  // clock, and for this node's own keys, which peers acknowledged them.
  std::vector<v1::KeyStatus> List();

 private:
  explicit Keys(const NodeContext* ctx) : ctx_(ctx) {}
  absl::Status Prepare();
  absl::Status LoadAccepted();
  // Checks `request` from `peer_party` and applies it to the key ring;
  // `live` for one arriving now (time window, revocation grace), not for
  // one replayed from data_dir. Sets *changed if the ring changed.
  absl::StatusOr<v1::KeyAnnouncement> Apply(const std::string& peer_party,
                                            const v1::AnnounceKeyRequest& request,
                                            bool live, bool* changed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One of this node's announcements, decided at start and signed at each
  // attempt.
  struct OwnAnnouncement {
    v1::KeyAnnouncement content;  // time_unix_micros is set when it is signed.
    std::string signer_key_id;
    const SigningKey* signer;  // Owned by the setup.
    // Also signed by the announced key (the current one), as proof of
    // possession.
    bool prove_possession;
  };
  // `a` dated `now` and signed.
  absl::StatusOr<v1::AnnounceKeyRequest> Sign(const OwnAnnouncement& a,
                                              absl::Time now) const;

  const NodeContext* const ctx_;
  // Fixed after Create.
  std::vector<OwnAnnouncement> own_announcements_;
  struct Announcing {
    size_t next = 0;  // Index into own_announcements_ of the next one to send.
    uint32_t failures = 0;
    // On ctx_->MonotonicNow(): no attempt before it.
    absl::Duration retry_at = -absl::InfiniteDuration();
    std::string last_error;
  };
  absl::Mutex mu_;
  std::map<std::string, Announcing> announcing_ ABSL_GUARDED_BY(mu_);
  v1::AcceptedKeyAnnouncements accepted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_KEYS_H_
