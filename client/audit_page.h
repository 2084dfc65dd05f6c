// The auditors' review page, `comity audit serve`: a read-only local web
// page rendered on the server side from the node's data, fetched over the
// operator's mutual-TLS channel with an auditor's credentials on each page
// load (docs/audit_page.md):
//   /            the cases, newest first
//   /case/ID     one case: every signed step, each signature verified here
//   /log         the audit log, filtered and paged, with its verification
//   /stats       volumes and response times per partner and instrument (SVG)
// The HTTP listener is plain HTTP on loopback: every page needs a random
// access token (the URL printed at start sets a cookie). Everything shown
// that comes from the node or the other parties is HTML-escaped.
//
//   AuditPageOptions options;
//   options.token = token;  // 64 hex digits, from RAND_bytes.
//   AuditPage page(operator_stub, audit_stub, options);
//   auto server = HttpServer::Create("127.0.0.1:0",
//       [&page](const HttpRequest& r) { return page.Handle(r); });
#ifndef COMITY_CLIENT_AUDIT_PAGE_H_
#define COMITY_CLIENT_AUDIT_PAGE_H_

#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/args.h"
#include "client/cli.h"
#include "client/http_server.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/operator.grpc.pb.h"

namespace comity {

// `comity audit serve [--listen HOST:PORT]`: checks that the --connect
// certificate holds the auditor role and that the node agrees, prints the
// URL with the access token once, and serves until killed. Exit codes as
// RunCli (1 when the role is missing or the node refuses).
int RunAuditServe(const ParsedArgs& args, const GetEnv& env, std::ostream& out,
                  std::ostream& err);

// What `comity audit stats` and the /stats page compute from the log.
struct AuditLogStats {
  int entries = 0;
  std::map<std::string, int> sent_by_partner;
  std::map<std::string, int> received_by_partner;
  std::map<std::string, int> assessments_by_instrument;
  std::map<std::string, int> assessments_by_obligation;
  // Deliveries refused by a peer or refused to a peer (transport and
  // validation: bad signature, replay, ...), by reason.
  std::map<std::string, int> refusals_by_reason;
  // From the signed case steps (CASE_DECIDED, CASE_UPDATED): each action
  // taken ("ACCEPT", "REFUSE", "RESPOND", ...), per partner and per the
  // instrument this node assessed the request under; refusals by the
  // grounds invoked.
  std::map<std::string, std::map<std::string, int>> outcomes_by_partner;
  std::map<std::string, std::map<std::string, int>> outcomes_by_instrument;
  std::map<std::string, int> case_refusals_by_ground;
  // From REQUEST_SUBMITTED to DELIVERY_ACKNOWLEDGED (transport), sorted.
  std::vector<double> acknowledgement_ms;
  // From the request (submitted here, or received) to its first decision
  // (ACCEPT or REFUSE), and to its first RESPOND, in ms, sorted.
  std::vector<double> decision_ms;
  std::vector<double> response_ms;
  // Deadlines missed (CASE_ESCALATED), by kind ("acknowledge", "decide").
  std::map<std::string, int> deadlines_missed;

  // The p-quantile (0..1) of acknowledgement_ms; 0 if there is none.
  double AcknowledgementPercentile(double p) const;
  // The p-quantile (0..1) of sorted `ms`; 0 if empty.
  static double Percentile(const std::vector<double>& ms, double p);
};

// Computes AuditLogStats from serialized AuditEntry messages given one at a
// time, in log order (as pages of the log arrive). Not thread-safe.
class AuditLogStatsBuilder {
 public:
  void Add(const std::string& entry);
  // The statistics of the entries added; the builder is spent.
  AuditLogStats Finish();

 private:
  AuditLogStats stats_;
  std::map<std::string, int64_t> submitted_at_;  // By request id.
  std::map<std::string, int64_t> started_at_;    // Submitted or received, by request id.
  std::map<std::string, std::string> instrument_;  // This node's assessment, by request id.
  std::map<std::string, int> milestones_;        // Bit 0 decided, bit 1 responded.
};

// `entries` are serialized AuditEntry messages, in log order.
AuditLogStats ComputeAuditLogStats(
    const google::protobuf::RepeatedPtrField<std::string>& entries);

// Escapes & < > " ' for HTML text and quoted attribute values.
std::string HtmlEscape(absl::string_view text);

// A horizontal bar chart as inline SVG: one bar per (label, value), the
// value shown beside it through `format`. Labels are escaped.
std::string SvgBarChart(absl::string_view title,
                        const std::vector<std::pair<std::string, double>>& bars,
                        const std::function<std::string(double)>& format);

// A page of the review site, as a request path names it.
struct AuditRoute {
  enum Page { kCases, kCase, kLog, kStats };
  Page page = kCases;
  std::string case_id;  // kCase only: a canonical (lower-case) UUID.

  // The page's path ("/", "/case/ID", "/log", "/stats"), made of constants
  // and the checked case id: always a path of this site, never text from a
  // request. What a redirect may name.
  std::string Path() const;
};

// The page that `path` (percent-decoded, without the query) names.
// InvalidArgument (answered 400) for a path no page has and a browser could
// read as another site or a header: not starting with '/', starting with
// "//" ("//host", "///host", "/%2F%2Fhost" name another host), holding a
// backslash ("/\host": browsers read '\' as '/') or a control character
// (CR, LF). NotFound (404) for any other path that names no page.
absl::StatusOr<AuditRoute> AuditRouteOf(absl::string_view path);

struct AuditPageOptions {
  std::string token;         // The access token (hex); required.
  int port = 0;              // The HTTP port: names the cookie.
  std::string node_address;  // Shown in the header.
  std::string who;           // "carol (auditor) of FR", shown in the header.
};

// Renders the pages. Thread-safe (gRPC stubs are); the stubs must outlive it.
class AuditPage {
 public:
  AuditPage(v1::OperatorService::StubInterface* operator_stub,
            v1::AuditService::StubInterface* audit_stub, AuditPageOptions options)
      : operator_(operator_stub), audit_(audit_stub), options_(std::move(options)) {}

  // A malformed path (AuditRouteOf) gets 400 first, then access control: a
  // request without a valid token or cookie gets 403; a path that names no
  // page, 404; a valid ?token= on a page's path answers 303 to that page's
  // own path (AuditRoute::Path, the other query parameters re-encoded) and
  // sets the cookie. Then the page.
  HttpResponse Handle(const HttpRequest& request) const;

  // The cookie's name: per port, since browsers share cookies across ports.
  std::string CookieName() const;

 private:
  HttpResponse Cases(const HttpRequest& request) const;
  HttpResponse Case(const std::string& id) const;
  HttpResponse Log(const HttpRequest& request) const;
  HttpResponse Stats() const;
  HttpResponse Page(int status, absl::string_view title, absl::string_view body) const;
  // A page that shows nothing of the node: `heading` (escaped), then `body`
  // (HTML).
  static HttpResponse BarePage(int status, absl::string_view heading,
                               absl::string_view body);
  HttpResponse RpcErrorPage(absl::string_view what, const grpc::Status& status) const;
  bool Authorized(const HttpRequest& request) const;

  v1::OperatorService::StubInterface* operator_;
  v1::AuditService::StubInterface* audit_;
  const AuditPageOptions options_;
};

}  // namespace comity

#endif  // COMITY_CLIENT_AUDIT_PAGE_H_
