#include "client/usage.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/args.h"
#include "comity/v1/assessment.pb.h"
#include "comity/v1/request.pb.h"
#include "server/util/version.h"

namespace comity {
namespace {

// The enum's value names but the UNSPECIFIED one, `prefix` removed.
std::string EnumNames(const google::protobuf::EnumDescriptor* desc, const std::string& prefix,
                      const std::string& sep) {
  std::vector<std::string> names;
  for (int i = 0; i < desc->value_count(); ++i) {
    if (desc->value(i)->number() == 0) continue;
    std::string n = desc->value(i)->name();
    if (!prefix.empty() && n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
    names.push_back(n);
  }
  return absl::StrJoin(names, sep);
}

constexpr char kConnect[] =
    "  --connect FILE   your client config (node address, CA, operator certificate and key);\n"
    "                   default $COMITY_CONNECT\n"
    "  --json           machine-readable output\n";

std::string Global() {
  return R"(usage: comity [--connect FILE] [--json] COMMAND [ARGS]
       comity COMMAND --help      that command's flags and examples
       comity --version

Talks to your own Comity node as an operator (mutual TLS with your operator
certificate). --connect names a comity.v1.ClientConfig file (node address, CA,
your certificate and key); default: $COMITY_CONNECT.

commands:
  submit --to XX --type TYPE --offence CATEGORY --authority TEXT --facts TEXT
         [--offence-description TEXT] [--penalty-months N] [--urgency ROUTINE|URGENT|EMERGENCY]
         [--data-sought TEXT] [--relation TEXT] [--custodian TEXT] [--necessity TEXT]
         [--intent-mla] [--confidential] [--use-limit TEXT]... [--tlp CLEAR|GREEN|AMBER|AMBER_STRICT|RED]
         [--related ID]...
  submit --file DRAFT.txtpb    a comity.v1.RequestBody draft in protobuf text format
      Signs the request, stores it and delivers it; prints the verified receipt.
  approve ID
      Approve a colleague's draft that needs two-person approval (approver role);
      it is then signed and delivered.
  inbox
      The worklist: every open case, whom it waits on, the commands to run next,
      urgency, deadline and time left, pending conditions; this party's work first.
  peers
      Each peer: reachable or not, what waits for it (requests, case steps), last error.
  keys [--party XX]
      Every signing key this node knows, its own and its peers': validity window,
      revocation, state, and which peers acknowledged this node's new keys.
  admin backup --out FILE
      A consistent copy of the node's database while it runs (admin role);
      restore as in docs/backup.md.
  health [--service NAME] [--timeout-ms N]
      Whether the node serves (grpc.health.v1); exit 0 only if SERVING. For probes:
      any operator certificate will do, no role needed.
  overdue
      Late acknowledgements and decisions on both sides (BINDING ones are escalated),
      and preservations about to lapse (ETS185 Art 29(7)).
  ack|review|accept|refuse|postpone|ask|respond|close ID [--ground G]... [--reasons TEXT]
      [--consultation TEXT] [--text TEXT] [--final] [--file PATH]... [--import NAME]...
      [--condition TEXT]...
      A step of the case of a request this node received (reviewer role), signed and
      delivered to the requesting party. A refusal must cite grounds the governing
      instrument leaves open (comity show ID) and give --reasons (ETS185 Art 27(7)).
      respond --file reads PATH on this machine and uploads it to the node (resumable,
      SHA-256 checked); --import NAME stages a file of the node's evidence.import_dir.
  withdraw|answer|accept-conditions|close ID [--text TEXT]
      A step of the case of a request this node sent (submitter role): withdraw it,
      answer a request for information, accept the conditions attached to released
      data (ETS185 Art 28(2): evidence is released only then), close a finished case.
      Signed, and numbered into the case by the requested party at once.
  fetch ID
      Fetch the evidence of a sent request again now, after the node gave up on a
      file (evidence.max_fetch_attempts; comity show ID says why).
  export ID --out DIR [--allow-tlp-red]
      A custody package for court in DIR (made if missing; no file is replaced): the
      case's evidence files, each checked against its SHA-256 and the size the signed
      response declares, with package.pb (the signed request, receipt, steps and
      accepted conditions, keys, and this node's log entries proven in a signed head)
      and manifest.json; checked before it is reported. TLP:RED material needs
      --allow-tlp-red; every export is audited with the package's SHA-256.
  verify-package DIR
      Checks a custody package offline, on any machine, with the keys it carries.
  list [--sent | --received] [--limit N]
      Requests this node sent or received, newest first, with their state.
  show ID [--chain]
      One request: its body, its signature and receipt verified, its case. With
      --chain, first the whole chain of linked requests (submit --related ID).
  audit verify|log|prove|consistency|export|stats|head|serve ...
      The node's tamper-evident audit log (auditor role); 'audit serve' opens a
      read-only review page in a browser; see 'comity audit help'.
  treaty check|matrix|parties|show ...
      The treaty library and rules engine, offline; see 'comity treaty help'.
  help [COMMAND]
      This text, or COMMAND's (as 'comity COMMAND --help').

Every command takes --json for machine-readable output (errors too: one JSON
object on stderr). Exit status: 0 done, 1 refused (by the node, or a check
failed, or held back), 2 wrong arguments, 3 the node did not answer
(docs/cli.md). A request ID may be given by its first 4 or more characters.
)";
}

// A case step: `who` takes it; `flags` and `what` describe it.
std::string Step(const std::string& verb, const std::string& flags, const std::string& what,
                 const std::string& examples) {
  return absl::StrCat("usage: comity [--connect FILE] [--json] ", verb, " ID", flags, "\n\n",
                      what, "\n", kConnect, "\nexamples:\n", examples);
}

std::vector<CommandUsage> Build() {
  // One ground a line under the flag: the list is long.
  const std::string grounds = absl::StrCat(
      "\n                           ",
      EnumNames(v1::RefusalGround_descriptor(), "", "\n                           "));
  const std::string types = EnumNames(v1::AssistanceType_descriptor(), "", ", ");
  const std::string offences = EnumNames(v1::OffenceCategory_descriptor(), "", ", ");
  const std::string tlps = EnumNames(v1::Tlp_descriptor(), "TLP_", "|");
  std::vector<CommandUsage> u;
  u.push_back({"submit", absl::StrCat(R"(usage: comity [--connect FILE] [--json] submit --to XX --type TYPE --offence CATEGORY
                     --authority TEXT --facts TEXT [FLAGS]
       comity [--connect FILE] [--json] submit --file DRAFT.txtpb

Signs a request to another party, stores it and delivers it (retrying until the
party acknowledges); prints the verified receipt and both treaty assessments.
A type that needs two-person approval (e.g. EXTRADITION) waits for 'comity approve'.
Submitter role.

  --to XX                      the requested party (ISO 3166 code)
  --type TYPE                  )", types, R"(
  --offence CATEGORY           )", offences, R"(
  --authority TEXT             the requesting authority
  --facts TEXT                 summary of the facts
  --offence-description TEXT   the offence as the law describes it
  --penalty-months N           maximum penalty, in months
  --urgency U                  ROUTINE, URGENT or EMERGENCY
  --data-sought TEXT, --relation TEXT, --custodian TEXT, --necessity TEXT
                               the particulars a preservation needs (ETS185 Art 29(2))
  --intent-mla                 a mutual assistance request will follow (Art 29(2)(d))
  --confidential               ask for confidentiality (Art 27(8))
  --use-limit TEXT             a limitation on use (repeatable)
  --tlp LEVEL                  )", tlps, R"(
  --related ID                 a request this one follows (repeatable)
  --file DRAFT.txtpb           a comity.v1.RequestBody in protobuf text format instead of
                               the flags (docs/examples/draft.txtpb)
)", kConnect, R"(
examples:
  comity --connect FR/alice.conf submit --to JP --type PRESERVATION --offence DATA_INTERFERENCE \
      --authority "Parquet de Paris" --facts "..." --data-sought "..." --custodian "..." \
      --relation "..." --necessity "..." --intent-mla --tlp AMBER
  comity --connect FR/alice.conf submit --file docs/examples/draft.txtpb
)")});
  u.push_back({"approve", R"(usage: comity [--connect FILE] [--json] approve ID

Approves a colleague's draft that needs two-person approval (approver role, not the
operator who submitted it); the request is then signed and delivered.
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/bob.conf approve 6f1c...
)"});
  u.push_back({"inbox", R"(usage: comity [--connect FILE] [--json] inbox

The worklist: every case this node holds that is not closed, with whom it waits on
("you" or the partner), the case state, the commands this party may run now, urgency,
the next deadline and the time left, and release conditions not yet accepted (they
hold back the evidence); drafts awaiting approval and requests a peer refused for
good too. This party's work first, then by deadline. --json: one array
(docs/lifecycle.md, "The worklist").
)" + std::string(kConnect) + R"(
example:
  comity --connect JP/bob.conf inbox
)"});
  u.push_back({"overdue", R"(usage: comity [--connect FILE] [--json] overdue

Late acknowledgements and decisions on both sides (BINDING ones are escalated) and
preservations about to lapse (ETS185 Art 29(7)).
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/alice.conf overdue
)"});
  u.push_back({"peers", R"(usage: comity [--connect FILE] [--json] peers

Each peer this node delivers to: its address, reachable or not, what waits for it
(requests, case steps), evidence still to fetch, the last error and the next retry.
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/alice.conf peers
)"});
  u.push_back({"keys", R"(usage: comity [--connect FILE] [--json] keys [--party XX]

Every signing key this node knows, its own and its peers': key id, validity window,
revocation, state now, where it came from (config or a signed announcement), its
fingerprint (sha256:HEX of the raw Ed25519 public key, docs/keys.md), and for this
node's keys which peers acknowledged them.

  --party XX       only that party's keys
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/alice.conf keys
  comity --connect FR/alice.conf keys --party JP --json
)"});
  u.push_back({"health", R"(usage: comity [--connect FILE] [--json] health [--service NAME] [--timeout-ms N]

Asks the node (grpc.health.v1.Health/Check on the operator listener) whether it
serves: the node as a whole, or one service (comity.v1.OperatorService,
comity.v1.AuditService). Exit 0 only for SERVING. Needs an operator certificate,
no role: made for probes.

  --service NAME     one service instead of the node
  --timeout-ms N     give up after N ms (default 5000)
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/carol.conf health
  comity --connect FR/carol.conf health --service comity.v1.AuditService --timeout-ms 2000
)"});
  u.push_back({"admin", R"(usage: comity [--connect FILE] [--json] admin COMMAND ...

Node administration (admin role).

  backup --out FILE   a consistent copy of the node's database while it runs

See 'comity admin backup --help'.

example:
  comity --connect FR/admin.conf admin backup --out fr.db
)"});
  u.push_back({"admin backup", R"(usage: comity [--connect FILE] [--json] admin backup --out FILE

A consistent copy of the node's database, taken while it runs (admin role),
saved to FILE (mode 0600; FILE must not exist; missing directories are made)
once its size and SHA-256 match what the node sent. Restore: docs/backup.md.

  --out FILE       where the copy goes
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/admin.conf admin backup --out /var/backups/comity/fr-2024-06-01.db
)"});
  // Case steps, requested party's (reviewer role).
  const std::string received = "A step of the case of a request this node received (reviewer role), signed\nand delivered to the requesting party.\n";
  u.push_back({"ack", Step("ack", " [--text TEXT]",
                           received + "ack: acknowledge receipt of the request.\n\n  --text TEXT      a note to the requesting party\n",
                           "  comity --connect JP/bob.conf ack 6f1c...\n")});
  u.push_back({"review", Step("review", " [--text TEXT]",
                              received + "review: start reviewing the request.\n\n  --text TEXT      a note to the requesting party\n",
                              "  comity --connect JP/bob.conf review 6f1c...\n")});
  u.push_back({"accept", Step("accept", " [--text TEXT]",
                              absl::StrCat("Accept: as the requested party (reviewer role), execute the request; as the\n"
                                           "requesting party, nothing (use accept-conditions). Signed and delivered.\n\n"
                                           "  --text TEXT      a note to the other party\n"),
                              "  comity --connect JP/bob.conf accept 6f1c...\n")});
  u.push_back({"refuse", Step("refuse", " --ground GROUND [--ground GROUND]... --reasons TEXT [--consultation TEXT]",
                              absl::StrCat(received,
                                           "refuse: refuse the request. The grounds must be ones the governing instrument\n"
                                           "leaves open (comity show ID lists them; e.g. a fiscal-offence refusal of an\n"
                                           "Art 2-11 offence is rejected, ETS185 Art 25(4)), and the reasons are required\n"
                                           "(Art 27(7)).\n\n"
                                           "  --ground GROUND        repeatable; one of: ", grounds, "\n"
                                           "  --reasons TEXT         why, for the requesting party\n"
                                           "  --consultation TEXT    the consultation held before refusing (Art 27(7))\n"),
                              "  comity --connect JP/bob.conf refuse 6f1c... --ground ESSENTIAL_INTERESTS \\\n"
                              "      --reasons \"the data concern national security\" --consultation \"call of 3 June\"\n")});
  u.push_back({"postpone", Step("postpone", " --ground GROUND... --reasons TEXT",
                                absl::StrCat(received,
                                             "postpone: postpone execution (e.g. PREJUDICE_TO_INVESTIGATION, ETS185 Art 27(5)).\n\n"
                                             "  --ground GROUND        repeatable; one of: ", grounds, "\n"
                                             "  --reasons TEXT         why, and for how long\n"),
                                "  comity --connect JP/bob.conf postpone 6f1c... --ground PREJUDICE_TO_INVESTIGATION \\\n"
                                "      --reasons \"a domestic investigation; until 1 September\"\n")});
  u.push_back({"ask", Step("ask", " --text TEXT",
                           received + "ask: ask the requesting party for more information (it answers with\n'comity answer').\n\n  --text TEXT      what is needed\n",
                           "  comity --connect JP/bob.conf ask 6f1c... --text \"which accounts, and which dates?\"\n")});
  u.push_back({"respond", Step("respond", " [--text TEXT] [--file PATH]... [--import NAME]... [--condition TEXT]... [--final]",
                               received + "respond: send data or evidence. Files are uploaded to the node (resumable,\n"
                                          "SHA-256 checked) and fetched by the requesting party, which receives them only\n"
                                          "once it accepted the conditions (ETS185 Art 28(2)).\n\n"
                                          "  --text TEXT         the response\n"
                                          "  --file PATH         a file on this machine (repeatable)\n"
                                          "  --import NAME       a file of the node's evidence.import_dir (repeatable)\n"
                                          "  --condition TEXT    a condition on use (repeatable)\n"
                                          "  --final             the last response: the case can be closed\n",
                               "  comity --connect JP/bob.conf respond 6f1c... --text \"logs of 1-3 May\" --file disk.img \\\n"
                               "      --condition \"use only for the investigation named\" --final\n")});
  u.push_back({"close", Step("close", " [--text TEXT]",
                             "close: close a finished case (either party, when the case allows it). Signed and\n"
                             "delivered to the other party.\n\n  --text TEXT      a closing note\n",
                             "  comity --connect FR/alice.conf close 6f1c...\n")});
  const std::string sent = "A step of the case of a request this node sent (submitter role), signed and\nnumbered into the case by the requested party at once.\n";
  u.push_back({"withdraw", Step("withdraw", " [--text TEXT]",
                                sent + "withdraw: withdraw the request.\n\n  --text TEXT      why\n",
                                "  comity --connect FR/alice.conf withdraw 6f1c... --text \"the suspect was identified\"\n")});
  u.push_back({"answer", Step("answer", " --text TEXT",
                              sent + "answer: answer the requested party's request for information ('comity ask').\n\n  --text TEXT      the answer\n",
                              "  comity --connect FR/alice.conf answer 6f1c... --text \"accounts x and y, 1-3 May\"\n")});
  u.push_back({"accept-conditions", Step("accept-conditions", " [--text TEXT]",
                                         sent + "accept-conditions: accept the conditions attached to a response (ETS185\n"
                                                "Art 28(2)); its evidence is released only then.\n\n  --text TEXT      a note\n",
                                         "  comity --connect FR/alice.conf accept-conditions 6f1c...\n")});
  u.push_back({"fetch", R"(usage: comity [--connect FILE] [--json] fetch ID

Fetches the evidence of a sent request again now, after the node gave up on a file
(evidence.max_fetch_attempts; 'comity show ID' says why).
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/alice.conf fetch 6f1c...
)"});
  u.push_back({"export", R"(usage: comity [--connect FILE] [--json] export ID --out DIR [--allow-tlp-red]

Writes a custody package of the case into DIR (made if missing; no file is replaced,
and a directory that holds a package already is refused):
  DIR/evidence/NAME   each evidence file this node holds, checked against its SHA-256
                      and the size the signed response declares before it is named
  DIR/package.pb      the signed request and receipt (with the receiver's log proof),
                      every signed step (responses, accepted conditions) and
                      acknowledgement, the keys, and this node's log entries about the
                      case with inclusion proofs in a head it signed for the package
  DIR/manifest.json   the same for people, formed from package.pb
The package is verified as a court would before the command reports it; the export
is audited (CUSTODY_PACKAGE_EXPORTED) with package.pb's SHA-256 and DIR. Format:
docs/custody.md.

  --out DIR           where the package goes
  --allow-tlp-red     also export TLP:RED material
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/alice.conf export 6f1c... --out case-6f1c
  comity verify-package case-6f1c
)"});
  u.push_back({"verify-package", R"(usage: comity [--json] verify-package DIR

Checks a custody package that comity export wrote, offline: no node, no
configuration. Every signature with the keys the package carries (their
fingerprints are printed: compare them with those each party publishes), the
receipt and its proof in the receiver's log, the chain of steps from the request,
that each file in DIR/evidence has the SHA-256 and size a signed RESPOND step lists
and that its use conditions were accepted in a step the requesting party signed,
the exporting node's log entries against its signed head, that manifest.json is
the one package.pb gives, and that DIR/evidence holds nothing else. Exit 0 when
every check passes, 1 otherwise (the first failure is named).

example:
  comity verify-package /media/usb/case-6f1c
)"});
  u.push_back({"list", R"(usage: comity [--connect FILE] [--json] list [--sent | --received] [--limit N]

Requests this node sent or received, newest first, with their state.

  --sent | --received   only one direction (default both)
  --limit N             the newest N (default 100)
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/alice.conf list
  comity --connect FR/alice.conf list --received --limit 10 --json
)"});
  u.push_back({"show", R"(usage: comity [--connect FILE] [--json] show ID [--chain]

One request: its body, its signature and receipt verified, both treaty assessments,
its case (every signed step verified) and its evidence. Exit 1 if a check fails.

  --chain     first the whole chain of linked requests (submit --related ID)
)" + std::string(kConnect) + R"(
examples:
  comity --connect JP/alice.conf show 6f1c...
  comity --connect FR/alice.conf show 6f1c... --chain
)"});
  // The audit group.
  u.push_back({"audit", R"(usage: comity audit COMMAND [--connect FILE] [--json] ...

The node's tamper-evident audit log (RFC 6962 Merkle tree, signed tree heads).
Every command but 'verify --bundle' needs an operator certificate with the
auditor role. 'comity audit COMMAND --help' for each.

  verify                     recompute every entry and node hash, check every signed
                             tree head and their consistency: "N entries, root R,
                             consistent", or the first entry that is wrong and why
  verify --bundle FILE       the same, offline, on an exported bundle (no node needed)
  log [--request ID] [--party XX] [--type TYPE] [--actor A] [--since YYYY-MM-DD]
      [--until YYYY-MM-DD] [--from N] [--limit N]
                             the entries, filtered
  prove ENTRY [--size N]     inclusion proof of an entry in the latest signed head
                             (or in the tree of size N), verified here
  consistency OLD NEW        consistency proof between two sizes, verified here
  export --out PREFIX        PREFIX.jsonl (entries, one JSON object a line) and
                             PREFIX.bundle (entries, signed heads and keys, for verify --bundle)
  stats                      requests per partner, per instrument and obligation,
                             acknowledgement times, refusals: computed from the log
  head                       sign a tree head of the log now
  serve [--listen HOST:PORT] a read-only review page (cases with every signed step
                             verified, the log and its verification, statistics) on a
                             local HTTP port (default 127.0.0.1, a free port); prints the
                             URL with a one-time access token (docs/audit_page.md)

examples:
  comity --connect FR/carol.conf audit verify
  comity --connect FR/carol.conf audit serve
)"});
  u.push_back({"audit verify", R"(usage: comity [--connect FILE] [--json] audit verify
       comity [--json] audit verify --bundle FILE

Recomputes every entry and node hash of the node's audit log and checks every signed
tree head and their consistency: "N entries, root R, consistent", or the first entry
that is wrong and why. Exit 1 if the log does not verify. Auditor role.

  --bundle FILE    check an exported bundle offline instead (no node, no certificate);
                   prints the fingerprints (sha256:HEX) of the keys it was checked with
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/carol.conf audit verify
  comity audit verify --bundle fr-log.bundle
)"});
  u.push_back({"audit log", R"(usage: comity [--connect FILE] [--json] audit log [FILTERS]

The log's entries, oldest first, filtered (JSON: one object a line). Auditor role.

  --request ID         entries of one request
  --party XX           entries about one party
  --type TYPE          one event type (REQUEST_SUBMITTED, AUTH_FAILURE, ...)
  --actor A            who acted: "operator:alice", "peer:JP", "node"; a bare
                       name ("alice") matches "operator:alice" and "auditor:alice"
  --since YYYY-MM-DD   from that day (or an RFC 3339 time)
  --until YYYY-MM-DD   before that day (or an RFC 3339 time)
  --from N             from entry index N
  --limit N            at most N entries
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/carol.conf audit log --request 6f1c...
  comity --connect FR/carol.conf audit log --actor alice --since 2024-06-01 --json
)"});
  u.push_back({"audit prove", R"(usage: comity [--connect FILE] [--json] audit prove ENTRY [--size N]

The inclusion proof of entry ENTRY (0-based index) in the latest signed tree head
that covers it, or in the signed head of size N; verified here. Auditor role.

  --size N     the signed head of that tree size
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/carol.conf audit prove 12
)"});
  u.push_back({"audit consistency", R"(usage: comity [--connect FILE] [--json] audit consistency OLD NEW

The consistency proof between tree sizes OLD <= NEW, verified here, and checked
against the signed heads of those sizes where there are some. Auditor role.
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/carol.conf audit consistency 10 40
)"});
  u.push_back({"audit export", R"(usage: comity [--connect FILE] audit export --out PREFIX

Writes PREFIX.jsonl (the entries, one JSON object a line) and PREFIX.bundle (the
entries, signed tree heads and keys) and verifies the bundle; check it offline with
'comity audit verify --bundle PREFIX.bundle'. Auditor role.

  --out PREFIX     the files' path without extension
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/carol.conf audit export --out fr-log
)"});
  u.push_back({"audit stats", R"(usage: comity [--connect FILE] [--json] audit stats

Computed from the log: requests per partner, assessments per instrument and
obligation, refusals by reason, acknowledgement times. Auditor role.
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/carol.conf audit stats --json
)"});
  u.push_back({"audit head", R"(usage: comity [--connect FILE] audit head

Signs a tree head of the log now and prints its size, root and key. Auditor role.
)" + std::string(kConnect) + R"(
example:
  comity --connect FR/carol.conf audit head
)"});
  u.push_back({"audit serve", R"(usage: comity [--connect FILE] audit serve [--listen HOST:PORT]

A read-only review page in a browser: the cases with every signed step verified,
the log and its verification, statistics (docs/audit_page.md). Served on a local
HTTP port; prints the URL with a one-time access token and serves until killed.
Auditor role.

  --listen HOST:PORT   where to listen (default 127.0.0.1:0, a free port); a
                       non-loopback address draws a warning
)" + std::string(kConnect) + R"(
examples:
  comity --connect FR/carol.conf audit serve
  comity --connect FR/carol.conf audit serve --listen 127.0.0.1:8080
)"});
  // The treaty group (offline).
  const std::string treaties =
      "  --treaties DIR   the treaty library (default $COMITY_TREATIES, e.g. deploy/treaties)\n"
      "  --json           machine-readable output\n";
  u.push_back({"treaty", R"(usage: comity treaty COMMAND [--treaties DIR] [--json] ...

The treaty library (default: $COMITY_TREATIES) and the rules engine, offline.
'comity treaty COMMAND --help' for each.

  check --from XX --to YY --type TYPE --offence CATEGORY [--date YYYY-MM-DD]
        [--dual-criminality yes|no|unknown] [--penalty-months N]
        [--requested-penalty-months N] [--urgency ROUTINE|URGENT|EMERGENCY]
        [--follows-preservation] [--request FILE]
      Whether a request is BINDING, DISCRETIONARY, VOLUNTARY, NOT_COVERED or INVALID:
      the governing instrument and the ones that supplement it, are replaced or do
      not apply (and why), the articles, the refusal and postponement grounds left
      open, dual criminality, deadlines, duties, the channel and authority to send
      it to, and the reasoning; UNKNOWN_PARTY (no conclusion) when a state is not in
      the library or its standing on the date is not known. A territory with its
      own code (CW, FO, GL) is assessed under its state's territorial declarations.
      --follows-preservation: the request follows a preservation (ETS185 Art 30
      applies only then). --request FILE (a comity.v1.RequestBody in text format)
      also checks the request's contents and supplies what the flags leave out.
  matrix --from XX --type TYPE --offence CATEGORY [--date YYYY-MM-DD] [...check flags]
      The same assessment for every partner in the library, one line each.
  parties [--date YYYY-MM-DD]
      Every party and the instruments that bind it on the date.
  show ID
      One instrument: kind, dates, provisions, reservations, parties.

examples:
  comity treaty check --from FR --to JP --type PRESERVATION --offence DATA_INTERFERENCE
  comity treaty parties
)"});
  const std::string check_flags = absl::StrCat(
      "  --from XX, --to YY          requesting and requested party\n"
      "  --type TYPE                 ", types, "\n"
      "  --offence CATEGORY          ", offences, "\n"
      "  --date YYYY-MM-DD           the date to assess on (default today)\n"
      "  --dual-criminality D        yes, no or unknown\n"
      "  --penalty-months N          maximum penalty in the requesting party\n"
      "  --requested-penalty-months N   the same in the requested party (extradition)\n"
      "  --urgency U                 ROUTINE, URGENT or EMERGENCY\n"
      "  --follows-preservation      the request follows a preservation (ETS185 Art 30)\n"
      "  --request FILE              a comity.v1.RequestBody (text format): its contents are\n"
      "                              checked too, and it supplies what the flags leave out\n");
  u.push_back({"treaty check", absl::StrCat(
      "usage: comity treaty check --from XX --to YY --type TYPE --offence CATEGORY [FLAGS]\n\n"
      "Whether a request is BINDING, DISCRETIONARY, VOLUNTARY, NOT_COVERED, INVALID or\n"
      "UNKNOWN_PARTY, under which instrument and articles, with the refusal grounds left\n"
      "open, deadlines, duties, the channel and the reasoning (docs/treaties.md). Offline.\n\n",
      check_flags, treaties,
      "\nexamples:\n"
      "  comity treaty check --from FR --to JP --type PRESERVATION --offence DATA_INTERFERENCE\n"
      "  comity treaty check --from FR --to JP --request docs/examples/draft.txtpb --json\n")});
  u.push_back({"treaty matrix", absl::StrCat(
      "usage: comity treaty matrix --from XX --type TYPE --offence CATEGORY [FLAGS]\n\n"
      "The 'treaty check' assessment for every partner in the library, one line each.\n\n",
      check_flags, treaties,
      "\nexample:\n"
      "  comity treaty matrix --from FR --type PRESERVATION --offence OTHER\n")});
  u.push_back({"treaty parties", absl::StrCat(
      "usage: comity treaty parties [--date YYYY-MM-DD]\n\n"
      "Every party in the library and the instruments that bind it on the date.\n\n"
      "  --date YYYY-MM-DD   default today\n",
      treaties, "\nexample:\n  comity treaty parties --date 2024-06-01\n")});
  u.push_back({"treaty show", absl::StrCat(
      "usage: comity treaty show ID\n\n"
      "One instrument: kind, dates, provisions, reservations, parties.\n\n",
      treaties, "\nexample:\n  comity treaty show ETS185\n")});
  u.push_back({"help", R"(usage: comity help [COMMAND...]

Without COMMAND, every command in a line or two; with it, COMMAND's usage (the
same as 'comity COMMAND --help').

examples:
  comity help
  comity help audit log
)"});
  return u;
}

bool IsGroup(absl::string_view word) {
  return word == "audit" || word == "treaty" || word == "admin";
}

// Flags of any command that take a value and may come before the command
// words ("comity --connect F audit --treaties D check").
const std::set<std::string>& LeadingValueFlags() {
  static const auto* flags = new std::set<std::string>{"connect", "treaties", "from", "date"};
  return *flags;
}

}  // namespace

const std::vector<CommandUsage>& Commands() {
  static const auto* commands = new std::vector<CommandUsage>(Build());
  return *commands;
}

const CommandUsage* FindUsage(absl::string_view name) {
  for (const CommandUsage& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const std::string& GlobalUsage() {
  static const auto* text = new std::string(Global());
  return *text;
}

const std::string& UsageText(absl::string_view name) {
  const CommandUsage* c = FindUsage(name);
  return c == nullptr ? GlobalUsage() : c->text;
}

std::string TopLevelCommandList() {
  std::vector<std::string> names;
  for (const CommandUsage& c : Commands()) {
    if (c.name.find(' ') == std::string::npos) names.push_back(c.name);
  }
  return absl::StrJoin(names, ", ");
}

std::optional<int> HandleHelpOrVersion(const std::vector<std::string>& args,
                                       std::ostream& out) {
  const std::string command = FindCommand(args, LeadingValueFlags());
  const bool help_flag =
      std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end();
  if (command.empty()) {
    if (std::find(args.begin(), args.end(), "--version") != args.end()) {
      out << "comity " << VersionString() << "\n";
      return 0;
    }
    if (help_flag) {
      out << GlobalUsage();
      return 0;
    }
    return std::nullopt;
  }
  // The words after the command: a group's subcommand, or what `help` names.
  std::vector<std::string> rest = args;
  rest.erase(std::find(rest.begin(), rest.end(), command));
  if (command == "help") {
    std::vector<std::string> words;
    for (const std::string& a : rest) {
      if (a.rfind("-", 0) != 0) words.push_back(a);
    }
    if (words.empty()) {
      out << (help_flag ? FindUsage("help")->text : GlobalUsage());
      return 0;
    }
    const std::string name = absl::StrJoin(words, " ");
    const CommandUsage* c = FindUsage(name);
    if (c == nullptr && IsGroup(words[0])) c = FindUsage(words[0]);
    out << (c == nullptr ? GlobalUsage() : c->text);
    return 0;
  }
  if (!help_flag) return std::nullopt;
  std::string name = command;
  if (IsGroup(command)) {
    const std::string sub = FindCommand(rest, LeadingValueFlags());
    if (!sub.empty()) {
      if (FindUsage(command + " " + sub) == nullptr) return std::nullopt;  // Unknown: the group says so.
      name = command + " " + sub;
    }
  }
  const CommandUsage* c = FindUsage(name);
  if (c == nullptr) return std::nullopt;  // An unknown command: the parser says so.
  out << c->text;
  return 0;
}

}  // namespace comity
