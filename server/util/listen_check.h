// Whether a TCP listener could bind an address of the node configuration
// now, and if not why: for the listeners to refuse a port another process
// holds before anything starts, and to say which port and why.
//
//   absl::Status free = CheckCanListen("127.0.0.1:7443");
//   // kUnavailable: "127.0.0.1:7443 is in use by another process"
#ifndef COMITY_SERVER_UTIL_LISTEN_CHECK_H_
#define COMITY_SERVER_UTIL_LISTEN_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace comity {

// Binds a TCP socket to each address `address` ("host:port", host a name, an
// IPv4 address or a bracketed IPv6 one) resolves to, as gRPC's listener
// binds it (SO_REUSEADDR, no SO_REUSEPORT; a wildcard host as [::]
// dual-stack, else 0.0.0.0), and closes it at once. OK if every bind
// succeeds, and always for port 0. Errors, each message starting with
// `address`:
//   kUnavailable: a socket of another process holds the port ("... is in
//     use by another process"), so the bind would succeed once it closes;
//   kFailedPrecondition: not an address of this machine, a port below 1024
//     without the privilege, a host that does not resolve, another bind
//     error;
//   kInvalidArgument: not host:port.
// A check, not a reservation: another process may bind the port right
// after it. Thread-safe.
absl::Status CheckCanListen(const std::string& address);

// The port of "host:port" ("" if there is none).
absl::string_view PortOf(absl::string_view address);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_LISTEN_CHECK_H_
