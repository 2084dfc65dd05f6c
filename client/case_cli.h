// The verbs of `comity` that work the cases (docs/cli.md):
//   comity ack|review|accept|refuse|postpone|ask|respond|close|withdraw|answer|
//          accept-conditions ID [--ground G]... [--reasons ...] [--file F]...
//                    sign a step of the case (DecideRequest)
//   comity fetch ID  fetch the case's evidence files again now
//   comity inbox     what waits, on whom, and what to run next (worklist.h)
//   comity overdue   late and expiring deadlines
// RunCli parses the command line, resolves an id prefix and connects; then
// it calls these.
//
//   v1::CaseAction action = CaseActionForCommand("answer");  // v1::PROVIDE_INFO
//   return RunCaseAction(*stub, address, parsed, action, json, out, err);
#ifndef COMITY_CLIENT_CASE_CLI_H_
#define COMITY_CLIENT_CASE_CLI_H_

#include <ostream>
#include <string>

#include "client/args.h"
#include "comity/v1/operator.grpc.pb.h"

namespace comity {

// The case action a command names ("accept" -> ACCEPT, "ask" ->
// REQUEST_INFO, "answer" -> PROVIDE_INFO, ...), or CASE_ACTION_UNSPECIFIED
// for any other command.
v1::CaseAction CaseActionForCommand(const std::string& command);

// Signs `action` on the case args.positional[0] (a full id) with the flags
// of `args`, uploading --file evidence first, through `stub` to the node at
// `address` (named in errors); reports the new state on `out` (one JSON
// object under `json`) or the error on `err`. Returns the exit code
// (output.h).
int RunCaseAction(v1::OperatorService::Stub& stub, const std::string& address,
                  const ParsedArgs& args, v1::CaseAction action, bool json,
                  std::ostream& out, std::ostream& err);

// `comity fetch ID`: asks the node to fetch the evidence files of the case
// args.positional[0] (a full id) again now (RetryEvidence). Same reporting
// and exit codes as RunCaseAction.
int RunFetchEvidence(v1::OperatorService::Stub& stub, const std::string& address,
                     const ParsedArgs& args, bool json, std::ostream& out,
                     std::ostream& err);

// `comity inbox`: every request the node holds, page after page, as a
// worklist (BuildWorklist). Same reporting and exit codes as RunCaseAction.
int RunInbox(v1::OperatorService::Stub& stub, const std::string& address, bool json,
             std::ostream& out, std::ostream& err);

// `comity overdue`: every late and expiring deadline (ListOverdue). Same
// reporting and exit codes as RunCaseAction.
int RunOverdue(v1::OperatorService::Stub& stub, const std::string& address, bool json,
               std::ostream& out, std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_CASE_CLI_H_
