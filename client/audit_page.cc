#include "client/audit_page.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/list_pages.h"
#include "comity/v1/case.pb.h"
#include "server/audit/receipt.h"
#include "server/config/node_config.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/crypto/x509_identity.h"
#include "server/util/files.h"
#include "server/util/hex.h"

namespace comity {
namespace {

// No external fonts, scripts or images: the Content-Security-Policy below
// allows inline styles and data: images only.
constexpr char kCss[] = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;
color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:24px;
align-items:baseline;flex-wrap:wrap}
header a{color:#cfe0ff;text-decoration:none;font-weight:600}
header a:hover{text-decoration:underline}
header .who{margin-left:auto;color:#aab3c5;font-size:12px}
main{padding:16px 24px;max-width:1400px}h1{font-size:20px;margin:8px 0 12px}
h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6}td:nth-child(2){white-space:nowrap}
td.pre{white-space:pre-wrap;word-break:break-word}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;
word-break:break-all}
.ok{color:#0b6b2b;font-weight:700}.bad{color:#b00020;font-weight:700}
.muted{color:#6b7385}
.banner{padding:8px 12px;border-radius:4px;margin:8px 0;background:#fff;
border:1px solid #dde1e8}
.banner.ok{border-color:#0b6b2b;background:#eaf6ee}
.banner.bad{border-color:#b00020;background:#fdecee}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;background:#fff;
padding:8px 12px;border:1px solid #dde1e8}
dt{font-weight:600}dd{margin:0;white-space:pre-wrap;word-break:break-word}
form{background:#fff;border:1px solid #dde1e8;padding:8px 12px;display:flex;gap:12px;
flex-wrap:wrap;align-items:end}
label{display:flex;flex-direction:column;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts svg{background:#fff;border:1px solid #dde1e8}
)";

constexpr char kCsp[] =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

std::string Esc(absl::string_view s) { return HtmlEscape(s); }

std::string TimeText(int64_t unix_micros) {
  if (unix_micros == 0) return "";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

int64_t Micros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

std::string DurationText(double seconds) {
  char buf[64];
  if (seconds < 1) {
    std::snprintf(buf, sizeof(buf), "%.0f ms", seconds * 1000);
  } else if (seconds < 120) {
    std::snprintf(buf, sizeof(buf), "%.1f s", seconds);
  } else if (seconds < 2 * 3600) {
    std::snprintf(buf, sizeof(buf), "%.1f min", seconds / 60);
  } else if (seconds < 48 * 3600) {
    std::snprintf(buf, sizeof(buf), "%.1f h", seconds / 3600);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f days", seconds / 86400);
  }
  return buf;
}

std::string Badge(const absl::Status& status) {
  if (status.ok()) return "<span class=\"ok\">VERIFIED</span>";
  return absl::StrCat("<span class=\"bad\">FAILED</span> <span class=\"muted\">",
                      Esc(status.ToString()), "</span>");
}

std::string CaseLink(absl::string_view id) {
  return absl::StrCat("<a href=\"/case/", Esc(PercentEncode(id)), "\"><code>", Esc(id),
                      "</code></a>");
}

std::unique_ptr<grpc::ClientContext> Context(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(seconds)));
  return ctx;
}

std::string StateName(const v1::RequestRecord& r) {
  return r.case_state() != v1::CASE_STATE_UNSPECIFIED ? v1::CaseState_Name(r.case_state())
                                                      : v1::RequestState_Name(r.state());
}

std::string Partner(const v1::RequestRecord& r, const v1::RequestBody& body) {
  return r.direction() == v1::OUTGOING ? body.requested_party() : body.requesting_party();
}

// The receiver's assessment, from the signed receipt the record holds (not
// verified here: the case page verifies it).
bool ReceiverAssessment(const v1::RequestRecord& r, v1::Assessment* out) {
  if (!r.has_receipt()) return false;
  v1::Receipt receipt;
  if (!receipt.ParseFromString(r.receipt().payload()) ||
      !receipt.has_receiver_assessment()) {
    return false;
  }
  *out = receipt.receiver_assessment();
  return true;
}

std::string Instrument(const v1::RequestRecord& r, const v1::RequestBody& body) {
  v1::Assessment a;
  if (ReceiverAssessment(r, &a) && !a.instrument().empty()) return a.instrument();
  if (body.has_requester_assessment() &&
      !body.requester_assessment().instrument().empty()) {
    return body.requester_assessment().instrument();
  }
  return "(none)";
}

void AddKeys(const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys,
             KeyRing* ring) {
  for (const v1::PublicKey& k : keys) {
    ring->Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
  }
}

bool IsDecision(v1::CaseAction a) {
  return a == v1::ACCEPT || a == v1::REFUSE || a == v1::POSTPONE ||
         a == v1::REQUEST_INFO || a == v1::RESPOND;
}

std::string AssessmentHtml(const v1::Assessment& a) {
  std::vector<std::string> grounds;
  for (int g : a.refusal_grounds()) {
    grounds.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
  }
  std::string out = absl::StrCat("<b>", Esc(v1::Obligation_Name(a.obligation())), "</b>");
  if (!a.instrument().empty()) absl::StrAppend(&out, " under ", Esc(a.instrument()));
  if (!a.basis().empty())
    absl::StrAppend(&out, " (", Esc(absl::StrJoin(a.basis(), "; ")), ")");
  if (!grounds.empty()) {
    absl::StrAppend(&out, "; open refusal grounds: ", Esc(absl::StrJoin(grounds, ", ")));
  }
  if (a.deadline_days() != 0)
    absl::StrAppend(&out, "; deadline ", a.deadline_days(), " days");
  for (const auto& d : a.duties()) absl::StrAppend(&out, "<br>duty: ", Esc(d));
  if (!a.library_version().empty()) {
    absl::StrAppend(&out, " <span class=\"muted\">library ",
                    Esc(a.library_version().substr(0, 12)), "</span>");
  }
  return out;
}

struct Median {
  std::vector<double> values;
  double Get() {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const size_t n = values.size();
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  }
};

std::string RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "";
  return HexEncode(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

bool IsLoopbackHost(absl::string_view host) {
  return host == "localhost" || absl::StartsWith(host, "127.") || host == "::1" ||
         host == "[::1]";
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '\0':
        out += "\xEF\xBF\xBD";
        break;  // U+FFFD: HTML has no NUL.
      default:
        out.push_back(c);
    }
  }
  return out;
}

double AuditLogStats::Percentile(const std::vector<double>& ms, double p) {
  if (ms.empty()) return 0.0;
  return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
}

double AuditLogStats::AcknowledgementPercentile(double p) const {
  return Percentile(acknowledgement_ms, p);
}

namespace {

// The action of a case step entry; entries written before case_action
// existed say it in their detail ("3: REFUSE -> CASE_REFUSED").
std::string StepAction(const v1::AuditEntry& e) {
  if (e.case_action() != 0 && v1::CaseAction_IsValid(e.case_action())) {
    return v1::CaseAction_Name(static_cast<v1::CaseAction>(e.case_action()));
  }
  absl::string_view d = e.detail();
  size_t colon = d.find(": ");
  size_t arrow = d.find(" ->");
  if (colon == absl::string_view::npos || arrow == absl::string_view::npos || arrow < colon) {
    return "(unknown)";
  }
  return std::string(d.substr(colon + 2, arrow - colon - 2));
}

}  // namespace

void AuditLogStatsBuilder::Add(const std::string& bytes) {
  AuditLogStats& s = stats_;
  ++s.entries;
  v1::AuditEntry e;
  e.ParseFromString(bytes);
  switch (e.type()) {
    case v1::REQUEST_SUBMITTED:
      ++s.sent_by_partner[e.party()];
      submitted_at_[e.request_id()] = e.time_unix_micros();
      started_at_.emplace(e.request_id(), e.time_unix_micros());
      break;
    case v1::REQUEST_RECEIVED:
      ++s.received_by_partner[e.party()];
      started_at_.emplace(e.request_id(), e.time_unix_micros());
      break;
    case v1::ASSESSMENT_MADE:
      ++s.assessments_by_instrument[e.instrument().empty() ? "(none)" : e.instrument()];
      ++s.assessments_by_obligation[v1::Obligation_Name(e.obligation())];
      instrument_.emplace(e.request_id(), e.instrument().empty() ? "(none)" : e.instrument());
      break;
    case v1::CASE_DECIDED:
    case v1::CASE_UPDATED: {
      const std::string action = StepAction(e);
      std::string instrument = e.instrument();
      if (instrument.empty()) {
        auto it = instrument_.find(e.request_id());
        instrument = it != instrument_.end() ? it->second : "(none)";
      }
      ++s.outcomes_by_partner[e.party().empty() ? "(none)" : e.party()][action];
      ++s.outcomes_by_instrument[instrument][action];
      if (action == "REFUSE") {
        for (int g : e.refusal_grounds()) {
          ++s.case_refusals_by_ground[v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g))];
        }
        if (e.refusal_grounds().empty()) ++s.case_refusals_by_ground["(none given)"];
      }
      const int bit = action == "ACCEPT" || action == "REFUSE" ? 1 : action == "RESPOND" ? 2 : 0;
      auto start = started_at_.find(e.request_id());
      int& seen = milestones_[e.request_id()];
      if (bit != 0 && (seen & bit) == 0 && start != started_at_.end()) {
        seen |= bit;
        (bit == 1 ? s.decision_ms : s.response_ms)
            .push_back((e.time_unix_micros() - start->second) / 1000.0);
      }
      break;
    }
    case v1::CASE_ESCALATED:
      ++s.deadlines_missed[e.detail().substr(0, e.detail().find(' '))];
      break;
    case v1::DELIVERY_ACKNOWLEDGED: {
      auto it = submitted_at_.find(e.request_id());
      if (it != submitted_at_.end()) {
        s.acknowledgement_ms.push_back((e.time_unix_micros() - it->second) / 1000.0);
      }
      break;
    }
    case v1::DELIVERY_REFUSED:
    case v1::PEER_REQUEST_REFUSED:
      ++s.refusals_by_reason[e.detail().substr(0, e.detail().find(':'))];
      break;
    default:
      break;
  }
}

AuditLogStats AuditLogStatsBuilder::Finish() {
  std::sort(stats_.acknowledgement_ms.begin(), stats_.acknowledgement_ms.end());
  std::sort(stats_.decision_ms.begin(), stats_.decision_ms.end());
  std::sort(stats_.response_ms.begin(), stats_.response_ms.end());
  submitted_at_.clear();
  started_at_.clear();
  instrument_.clear();
  milestones_.clear();
  return std::move(stats_);
}

AuditLogStats ComputeAuditLogStats(
    const google::protobuf::RepeatedPtrField<std::string>& entries) {
  AuditLogStatsBuilder builder;
  for (const std::string& bytes : entries) builder.Add(bytes);
  return builder.Finish();
}

std::string SvgBarChart(absl::string_view title,
                        const std::vector<std::pair<std::string, double>>& bars,
                        const std::function<std::string(double)>& format) {
  constexpr int kWidth = 640, kLabel = 190, kBarArea = 340, kRow = 22, kTop = 30;
  const int height = kTop + static_cast<int>(bars.size()) * kRow + 10;
  double max = 0;
  for (const auto& [label, value] : bars) max = std::max(max, value);
  std::string svg =
      absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", kWidth,
                   "\" height=\"", height, "\" viewBox=\"0 0 ", kWidth, " ", height,
                   "\" role=\"img\" font-family=\"sans-serif\" "
                   "font-size=\"12\"><title>",
                   Esc(title),
                   "</title><text x=\"8\" y=\"18\" font-weight=\"bold\" "
                   "font-size=\"13\">",
                   Esc(title), "</text>");
  if (bars.empty()) {
    absl::StrAppend(&svg, "<text x=\"8\" y=\"", kTop + 12,
                    "\" fill=\"#6b7385\">no data</text>");
  }
  int y = kTop;
  for (const auto& [label, value] : bars) {
    const int w = max > 0 ? std::max(1, static_cast<int>(value / max * kBarArea)) : 1;
    std::string shown = label.size() > 28 ? label.substr(0, 27) + "\xE2\x80\xA6" : label;
    absl::StrAppend(&svg, "<text x=\"", kLabel - 6, "\" y=\"", y + 15,
                    "\" text-anchor=\"end\">", Esc(shown), "</text><rect x=\"", kLabel,
                    "\" y=\"", y + 3, "\" width=\"", w, "\" height=\"", kRow - 6,
                    "\" fill=\"#4a78b5\"><title>", Esc(label), ": ", Esc(format(value)),
                    "</title></rect><text x=\"", kLabel + w + 6, "\" y=\"", y + 15, "\">",
                    Esc(format(value)), "</text>");
    y += kRow;
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string AuditRoute::Path() const {
  switch (page) {
    case kCases:
      return "/";
    case kCase:
      return absl::StrCat("/case/", PercentEncode(case_id));
    case kLog:
      return "/log";
    case kStats:
      return "/stats";
  }
  return "/";
}

absl::StatusOr<AuditRoute> AuditRouteOf(absl::string_view path) {
  if (!absl::StartsWith(path, "/") || absl::StartsWith(path, "//")) {
    return absl::InvalidArgumentError(
        "the path must start with exactly one '/' (\"//host\" names another site)");
  }
  for (char c : path) {
    if (c == '\\') {
      return absl::InvalidArgumentError(
          "a backslash in the path (browsers read it as '/')");
    }
    if (absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError("a control character in the path");
    }
  }
  AuditRoute route;
  absl::string_view id = path;
  if (path == "/") {
    route.page = AuditRoute::kCases;
  } else if (path == "/log") {
    route.page = AuditRoute::kLog;
  } else if (path == "/stats") {
    route.page = AuditRoute::kStats;
  } else if (absl::ConsumePrefix(&id, "/case/") && IsCanonicalUuid(id)) {
    route.page = AuditRoute::kCase;
    route.case_id = std::string(id);
  } else {
    return absl::NotFoundError("no such page");
  }
  return route;
}

HttpResponse AuditPage::BarePage(int status, absl::string_view heading,
                                 absl::string_view body) {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>",
      Esc(heading), "</title></head><body><h1>", Esc(heading), "</h1>", body,
      "</body></html>\n");
  return r;
}

std::string AuditPage::CookieName() const {
  return absl::StrCat("comity_audit_", options_.port);
}

bool AuditPage::Authorized(const HttpRequest& request) const {
  auto matches = [this](absl::string_view candidate) {
    return !options_.token.empty() && candidate.size() == options_.token.size() &&
           CRYPTO_memcmp(candidate.data(), options_.token.data(), candidate.size()) == 0;
  };
  auto token = request.query.find("token");
  if (token != request.query.end()) return matches(token->second);
  auto cookie = request.headers.find("cookie");
  if (cookie == request.headers.end()) return false;
  const std::string name = CookieName();
  for (absl::string_view part : absl::StrSplit(cookie->second, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=") &&
        matches(part)) {
      return true;
    }
  }
  return false;
}

HttpResponse AuditPage::Handle(const HttpRequest& request) const {
  HttpResponse response;
  absl::StatusOr<AuditRoute> route = AuditRouteOf(request.path);
  if (!route.ok() && absl::IsInvalidArgument(route.status())) {
    // Syntax only: nothing about the node, token or not.
    response = BarePage(400, "400: bad request",
                        absl::StrCat("<p>", Esc(route.status().message()), "</p>"));
  } else if (!Authorized(request)) {
    // Nothing about the node or the operator before the token is shown.
    response = BarePage(403, "403: access token needed",
                        "<p>This page needs the access token that <code>comity audit "
                        "serve</code> printed when it started: open the URL it printed "
                        "(<code>http://HOST:PORT/?token=...</code>).</p>");
  } else if (!route.ok()) {
    response = Page(404, "Not found", "<p>No such page: see the links above.</p>");
  } else if (request.query.count("token") != 0) {
    // Trade the token in the URL for a cookie, and drop it from the URL
    // (history, screen shares). The Location is the page's own path, made
    // from the route, never the request's text.
    std::vector<std::string> rest;
    for (const auto& [k, v] : request.query) {
      if (k != "token")
        rest.push_back(absl::StrCat(PercentEncode(k), "=", PercentEncode(v)));
    }
    std::string location = route->Path();
    if (!rest.empty()) absl::StrAppend(&location, "?", absl::StrJoin(rest, "&"));
    response.status = 303;
    response.headers.push_back({"Location", location});
    response.headers.push_back(
        {"Set-Cookie", absl::StrCat(CookieName(), "=", options_.token,
                                    "; Path=/; HttpOnly; SameSite=Strict")});
    response.body =
        absl::StrCat("<p>See <a href=\"", Esc(location), "\">the page</a>.</p>");
  } else {
    switch (route->page) {
      case AuditRoute::kCases:
        response = Cases(request);
        break;
      case AuditRoute::kCase:
        response = Case(route->case_id);
        break;
      case AuditRoute::kLog:
        response = Log(request);
        break;
      case AuditRoute::kStats:
        response = Stats();
        break;
    }
  }
  response.headers.push_back({"Content-Security-Policy", kCsp});
  response.headers.push_back({"X-Frame-Options", "DENY"});
  response.headers.push_back({"X-Content-Type-Options", "nosniff"});
  response.headers.push_back({"Referrer-Policy", "no-referrer"});
  response.headers.push_back({"Cache-Control", "no-store"});
  return response;
}

HttpResponse AuditPage::Page(int status, absl::string_view title,
                             absl::string_view body) const {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>",
      Esc(title), " \xE2\x80\x94 Comity audit</title><style>", kCss,
      "</style></head><body><header><span>Comity audit</span>"
      "<a href=\"/\">Cases</a><a href=\"/log\">Audit log</a><a "
      "href=\"/stats\">Statistics</a>"
      "<span class=\"who\">node ",
      Esc(options_.node_address), " \xC2\xB7 ", Esc(options_.who),
      " \xC2\xB7 read-only</span></header><main><h1>", Esc(title), "</h1>", body,
      "</main></body></html>\n");
  return r;
}

HttpResponse AuditPage::RpcErrorPage(absl::string_view what,
                                     const grpc::Status& status) const {
  int code = 502;
  if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    code = 403;
  } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    code = 404;
  } else if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    code = 400;
  }
  std::string hint =
      code == 403
          ? "The node refuses this operator: the audit page needs a certificate with "
            "the auditor role (urn:comity:role:auditor)."
      : code == 502 ? "Is comityd running, and does the --connect file name it?"
                    : "";
  return Page(code, absl::StrCat("Cannot show ", what),
              absl::StrCat("<p class=\"banner bad\">",
                           Esc(DescribeRpcError(options_.node_address, status)),
                           "</p><p>", Esc(hint), "</p>"));
}

HttpResponse AuditPage::Cases(const HttpRequest& request) const {
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;
  auto dir = request.query.find("dir");
  if (dir != request.query.end() && dir->second == "sent") direction = v1::OUTGOING;
  if (dir != request.query.end() && dir->second == "received") direction = v1::INCOMING;
  // The newest thousand, in as many pages as the node hands out.
  std::vector<v1::RequestRecord> records;
  grpc::Status st = ListRequestPages(*operator_, direction, 1000, absl::Seconds(30), &records);
  if (!st.ok()) return RpcErrorPage("the cases", st);
  v1::ListRequestsResponse resp;
  for (v1::RequestRecord& r : records) *resp.add_records() = std::move(r);
  std::string body = absl::StrCat(
      "<p>", resp.records_size(),
      " request(s), newest first. Show: <a href=\"/\">all</a> \xC2\xB7 <a "
      "href=\"/?dir=sent\">sent"
      "</a> \xC2\xB7 <a href=\"/?dir=received\">received</a>. The obligation is the "
      "requested "
      "party's assessment, from its signed receipt (verified on the case's page).</p>"
      "<table><thead><tr><th>Request</th><th>Stored</th><th>Direction</th><th>Partner</"
      "th>"
      "<th>Assistance type</th><th>Offence</th><th>State</th><th>Obligation</th>"
      "<th>Instrument</th></tr></thead><tbody>");
  for (const v1::RequestRecord& r : resp.records()) {
    v1::RequestBody b;
    b.ParseFromString(r.request().payload());
    v1::Assessment a;
    const bool assessed = ReceiverAssessment(r, &a);
    absl::StrAppend(&body, "<tr><td>", CaseLink(b.id()), "</td><td>",
                    Esc(TimeText(Micros(r.stored_at()))), "</td><td>",
                    r.direction() == v1::OUTGOING ? "sent" : "received", "</td><td>",
                    Esc(Partner(r, b)), "</td><td>",
                    Esc(v1::AssistanceType_Name(b.assistance_type())), "</td><td>",
                    Esc(v1::OffenceCategory_Name(b.offence().category())), "</td><td>",
                    Esc(StateName(r)), "</td><td>",
                    assessed ? Esc(v1::Obligation_Name(a.obligation()))
                             : "<span class=\"muted\">no receipt yet</span>",
                    "</td><td>", assessed ? Esc(a.instrument()) : "", "</td></tr>");
  }
  absl::StrAppend(&body, "</tbody></table>");
  if (resp.records().empty())
    absl::StrAppend(&body, "<p class=\"muted\">(no requests)</p>");
  return Page(200, "Cases", body);
}

HttpResponse AuditPage::Case(const std::string& id) const {
  v1::GetRequestRequest req;
  req.set_id(id);
  v1::GetRequestResponse resp;
  grpc::Status st = operator_->GetRequest(Context(30).get(), req, &resp);
  if (!st.ok()) return RpcErrorPage(absl::StrCat("request ", id), st);
  KeyRing ring;
  AddKeys(resp.signer_keys(), &ring);
  std::string body;
  int verified = 0, failed = 0;
  for (const v1::RequestRecord& r : resp.records()) {
    v1::RequestBody b;
    if (!b.ParseFromString(r.request().payload())) {
      absl::StrAppend(&body,
                      "<p class=\"banner bad\">The node returned a request payload that "
                      "does not parse.</p>");
      continue;
    }
    const v1::Particulars& p = b.particulars();
    std::vector<std::string> related;
    for (const auto& rid : b.related_request_ids()) related.push_back(CaseLink(rid));
    std::vector<std::string> limits(b.handling().use_limits().begin(),
                                    b.handling().use_limits().end());
    absl::StrAppend(
        &body, "<h2>", r.direction() == v1::OUTGOING ? "Sent" : "Received", " request ",
        Esc(b.requesting_party()), " \xE2\x86\x92 ", Esc(b.requested_party()),
        "</h2><dl><dt>id</dt><dd><code>", Esc(b.id()),
        "</code></dd><dt>state</dt><dd><b>", Esc(StateName(r)), "</b> (request ",
        Esc(v1::RequestState_Name(r.state())), ")</dd><dt>assistance type</dt><dd>",
        Esc(v1::AssistanceType_Name(b.assistance_type())), "</dd><dt>offence</dt><dd>",
        Esc(v1::OffenceCategory_Name(b.offence().category())),
        b.offence().description().empty() ? "" : ": ", Esc(b.offence().description()),
        "</dd><dt>urgency</dt><dd>", Esc(v1::Urgency_Name(b.urgency())),
        "</dd><dt>TLP</dt><dd>", Esc(v1::Tlp_Name(b.handling().tlp())),
        b.handling().confidential() ? ", confidential" : "",
        "</dd><dt>use limits</dt><dd>", Esc(absl::StrJoin(limits, "; ")),
        "</dd><dt>requesting authority</dt><dd>", Esc(p.requesting_authority()),
        "</dd><dt>facts</dt><dd>", Esc(p.facts_summary()),
        "</dd><dt>data sought</dt><dd>", Esc(p.data_sought()),
        "</dd><dt>relation to offence</dt><dd>", Esc(p.relation_to_offence()),
        "</dd><dt>custodian or location</dt><dd>", Esc(p.custodian_or_location()),
        "</dd><dt>necessity</dt><dd>", Esc(p.necessity()),
        "</dd><dt>related requests</dt><dd>", absl::StrJoin(related, ", "),
        "</dd><dt>stored</dt><dd>", Esc(TimeText(Micros(r.stored_at()))),
        r.submitted_by().empty() ? "" : " by ", Esc(r.submitted_by()),
        r.approved_by().empty() ? "" : ", approved by ", Esc(r.approved_by()), "</dd>");
    if (b.has_requester_assessment()) {
      absl::StrAppend(&body, "<dt>assessment of ", Esc(b.requesting_party()),
                      " (requester)</dt><dd>", AssessmentHtml(b.requester_assessment()),
                      "</dd>");
    }
    v1::Assessment receiver;
    if (ReceiverAssessment(r, &receiver)) {
      absl::StrAppend(&body, "<dt>assessment of ", Esc(b.requested_party()),
                      " (receiver; the obligation)</dt><dd>", AssessmentHtml(receiver));
      if (b.has_requester_assessment() &&
          (b.requester_assessment().obligation() != receiver.obligation() ||
           b.requester_assessment().instrument() != receiver.instrument())) {
        absl::StrAppend(&body,
                        "<br><span class=\"bad\">DISAGREEMENT</span>: the two parties "
                        "assess this request differently");
      }
      absl::StrAppend(&body, "</dd>");
    }
    absl::StrAppend(&body, "</dl>");

    // The signed steps, oldest first, each signature checked here with the
    // keys the node returned.
    absl::StrAppend(&body,
                    "<h2>Timeline: signed steps</h2><table><thead><tr><th>#</th><th>Time "
                    "(UTC)</th><th>Step</th><th>Signed by</th><th>Details</th>"
                    "<th>Signature</th><th>Hash chain</th></tr></thead><tbody>");
    auto row = [&](absl::string_view seq, int64_t time, absl::string_view step,
                   const v1::SignedEnvelope* env, absl::string_view by,
                   absl::string_view details, const absl::Status* sig,
                   absl::string_view chain) {
      std::string signature = "<span class=\"muted\">not signed yet</span>";
      if (sig != nullptr) {
        signature = Badge(*sig);
        ++(sig->ok() ? verified : failed);
      }
      absl::StrAppend(&body, "<tr><td>", Esc(seq), "</td><td>", Esc(TimeText(time)),
                      "</td><td><b>", Esc(step), "</b></td><td>", Esc(by),
                      env != nullptr ? absl::StrCat(" <span class=\"muted mono\">key ",
                                                    Esc(env->key_id()), "</span>")
                                     : "",
                      "</td><td class=\"pre\">", details, "</td><td>", signature,
                      "</td><td>", chain, "</td></tr>");
    };
    if (r.state() == v1::AWAITING_APPROVAL) {
      row("", Micros(r.stored_at()), "request (draft)", nullptr,
          absl::StrCat(b.requesting_party(), " (", r.submitted_by(), ")"),
          "awaiting approval by a second operator", nullptr, "");
    } else {
      const absl::Status sig = VerifyEnvelope(r.request(), kRequestPayloadType, ring);
      row("", Micros(b.created_at()), "request", &r.request(), r.request().signer_party(),
          Esc(absl::StrCat("sha256 ", HexEncode(Sha256(r.request().payload())))), &sig,
          "");
    }
    if (r.has_receipt()) {
      auto receipt = VerifyReceipt(r.request(), r.receipt(), b.requested_party(), ring);
      std::string details;
      int64_t time = 0;
      if (receipt.ok()) {
        time = Micros(receipt->received_at());
        details = absl::StrCat(
            "received; the receiver's signed tree head and audit entry "
            "checked",
            receipt->has_receiver_assessment()
                ? absl::StrCat(
                      "; assessed ",
                      v1::Obligation_Name(receipt->receiver_assessment().obligation()))
                : "");
      }
      const absl::Status sig = receipt.status();
      row("", time, "receipt", &r.receipt(), r.receipt().signer_party(), Esc(details),
          &sig, "");
    }
    std::string previous = Sha256(r.request().payload());
    uint32_t expected_sequence = 1;
    for (const v1::SignedEnvelope& env : r.transitions()) {
      const absl::Status sig = VerifyEnvelope(env, kTransitionPayloadType, ring);
      v1::Transition t;
      if (!t.ParseFromString(env.payload())) {
        const absl::Status bad = absl::DataLossError("the step does not parse");
        row("?", 0, "transition", &env, env.signer_party(), "", &bad, "");
        continue;
      }
      const bool linked =
          t.previous_sha256() == previous && t.sequence() == expected_sequence;
      previous = Sha256(env.payload());
      expected_sequence = t.sequence() + 1;
      std::vector<std::string> lines;
      std::vector<std::string> grounds;
      for (int g : t.refusal_grounds()) {
        grounds.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
      }
      if (!grounds.empty()) lines.push_back("grounds: " + absl::StrJoin(grounds, ", "));
      if (!t.reasons().empty()) lines.push_back("reasons: " + t.reasons());
      if (!t.consultation().empty()) lines.push_back("consultation: " + t.consultation());
      if (!t.text().empty()) lines.push_back(t.text());
      if (t.final_response()) lines.push_back("final response");
      for (const auto& f : t.evidence()) {
        lines.push_back(absl::StrCat("evidence: ", f.name(), ", ", f.size(),
                                     " bytes, sha256 ", HexEncode(f.sha256())));
      }
      for (const auto& c : t.release_conditions())
        lines.push_back("release condition: " + c);
      for (const auto& c : t.accepted_conditions())
        lines.push_back("accepted condition: " + c);
      for (const auto& d : t.open_duties()) lines.push_back("open duty: " + d);
      row(absl::StrCat(t.sequence()), t.time_unix_micros(),
          absl::StrCat(v1::CaseAction_Name(t.action()), " \xE2\x86\x92 ",
                       v1::CaseState_Name(t.to_state())),
          &env, absl::StrCat(t.party(), " (", t.operator_name(), ")"),
          Esc(absl::StrJoin(lines, "\n")), &sig,
          linked ? "<span class=\"ok\">linked</span>"
                 : "<span class=\"bad\">BROKEN</span> <span class=\"muted\">previous "
                   "hash or "
                   "sequence does not follow</span>");
      if (t.has_proposal()) {
        const absl::Status psig =
            VerifyEnvelope(t.proposal(), kProposalPayloadType, ring);
        v1::TransitionProposal prop;
        prop.ParseFromString(t.proposal().payload());
        row(absl::StrCat(t.sequence(), " (proposal)"), prop.time_unix_micros(),
            absl::StrCat("proposal ", v1::CaseAction_Name(prop.action())), &t.proposal(),
            absl::StrCat(prop.party(), " (", prop.operator_name(), ")"),
            Esc(absl::StrCat("the requesting party's own signed step, numbered by the "
                             "requested party",
                             prop.text().empty() ? "" : ": ", prop.text())),
            &psig, "");
      }
    }
    for (const v1::SignedEnvelope& env : r.queued_proposals()) {
      const absl::Status psig = VerifyEnvelope(env, kProposalPayloadType, ring);
      v1::TransitionProposal prop;
      prop.ParseFromString(env.payload());
      row("queued", prop.time_unix_micros(),
          absl::StrCat("proposal ", v1::CaseAction_Name(prop.action())), &env,
          absl::StrCat(prop.party(), " (", prop.operator_name(), ")"),
          Esc(absl::StrCat("waiting for delivery to the requested party",
                           prop.text().empty() ? "" : ": ", prop.text())),
          &psig, "");
    }
    absl::StrAppend(&body, "</tbody></table>");
    if (!resp.stored_evidence().empty()) {
      absl::StrAppend(&body, "<h2>Evidence held by this node</h2><ul>");
      for (const auto& e : resp.stored_evidence()) {
        absl::StrAppend(&body, "<li><code>", Esc(HexEncode(e.sha256())), "</code> ",
                        Esc(e.path()), "</li>");
      }
      absl::StrAppend(&body, "</ul>");
    }
  }
  const std::string summary =
      failed == 0
          ? absl::StrCat("<p class=\"banner ok\">", verified,
                         " signatures checked here with the keys the node returned: all "
                         "VERIFIED.</p>")
          : absl::StrCat("<p class=\"banner bad\">", failed, " of ", verified + failed,
                         " signatures FAILED: do not rely on those steps.</p>");
  return Page(200, absl::StrCat("Case ", id), summary + body);
}

HttpResponse AuditPage::Log(const HttpRequest& request) const {
  auto q = [&request](const std::string& name) {
    auto it = request.query.find(name);
    return it == request.query.end() ? std::string() : it->second;
  };
  v1::GetAuditEntriesRequest req;
  req.set_request_id(q("request"));
  req.set_party(q("party"));
  req.set_actor(q("actor"));
  std::string problems;
  if (!q("type").empty()) {
    const auto* v = v1::AuditEventType_descriptor()->FindValueByName(q("type"));
    if (v == nullptr || v->number() == 0) {
      absl::StrAppend(&problems, "unknown event type '", q("type"), "'; ");
    } else {
      req.set_type(static_cast<v1::AuditEventType>(v->number()));
    }
  }
  uint64_t from = 0, limit = 100;
  if (!q("from").empty() && !absl::SimpleAtoi(q("from"), &from)) {
    absl::StrAppend(&problems, "from '", q("from"), "' is not an entry index; ");
  }
  if (!q("limit").empty() && (!absl::SimpleAtoi(q("limit"), &limit) || limit == 0)) {
    absl::StrAppend(&problems, "limit '", q("limit"), "' is not a positive number; ");
    limit = 100;
  }
  limit = std::min<uint64_t>(limit, 1000);
  req.set_from_index(from);
  req.set_limit(limit);
  if (!problems.empty()) {
    HttpResponse r =
        Page(400, "Audit log",
             absl::StrCat("<p class=\"banner bad\">", Esc(problems), "</p>"));
    return r;
  }

  // The verification `comity audit verify` runs: the node recomputes every
  // entry and node hash and checks every signed head.
  v1::VerifyAuditLogResponse verify;
  grpc::Status st =
      audit_->Verify(Context(600).get(), v1::VerifyAuditLogRequest(), &verify);
  if (!st.ok()) return RpcErrorPage("the audit log's verification", st);
  // The signed tree heads, checked here too with the node's keys, a page
  // at a time.
  KeyRing ring;
  bool have_keys = false;
  int heads_ok = 0;
  std::string head_error;
  v1::TreeHead latest;
  st = ForEachTreeHeadPage(
      *audit_, absl::Seconds(30), [&](const v1::GetTreeHeadsResponse& heads) {
        if (!have_keys) {
          for (const auto& k : heads.keys()) {
            ring.Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
          }
          have_keys = true;
        }
        for (const auto& env : heads.heads()) {
          absl::Status ok = VerifyEnvelope(env, kTreeHeadPayloadType, ring);
          if (!ok.ok()) {
            if (head_error.empty()) head_error = ok.ToString();
            continue;
          }
          ++heads_ok;
          v1::TreeHead h;
          h.ParseFromString(env.payload());
          if (h.tree_size() >= latest.tree_size()) latest = h;
        }
        return true;
      });
  if (!st.ok()) return RpcErrorPage("the signed tree heads", st);
  v1::GetAuditEntriesResponse resp;
  st = audit_->GetEntries(Context(60).get(), req, &resp);
  if (!st.ok()) return RpcErrorPage("the audit log", st);

  std::string body =
      absl::StrCat("<p class=\"banner ", verify.ok() ? "ok" : "bad", "\"><b>",
                   verify.ok() ? "Log verified" : "Log verification FAILED",
                   "</b>: ", Esc(verify.summary()), "</p>");
  if (head_error.empty()) {
    absl::StrAppend(
        &body, "<p class=\"banner ", heads_ok > 0 ? "ok" : "", "\">", heads_ok,
        " signed tree head(s), every signature VERIFIED here with the node's keys",
        heads_ok > 0
            ? absl::StrCat("; the latest covers ", latest.tree_size(),
                           " entries, root <code>", Esc(HexEncode(latest.root_hash())),
                           "</code>, signed ",
                           Esc(TimeText(latest.timestamp_unix_micros())))
            : "",
        ".</p>");
  } else {
    absl::StrAppend(&body, "<p class=\"banner bad\">A signed tree head FAILED: ",
                    Esc(head_error), "</p>");
  }
  // Filters (a GET form: the page stays read-only).
  std::string options = "<option value=\"\">any</option>";
  const auto* types = v1::AuditEventType_descriptor();
  for (int i = 1; i < types->value_count(); ++i) {
    const std::string& name = types->value(i)->name();
    absl::StrAppend(&options, "<option",
                    req.type() == types->value(i)->number() ? " selected" : "", ">",
                    Esc(name), "</option>");
  }
  absl::StrAppend(
      &body, "<form method=\"get\" action=\"/log\"><label>type<select name=\"type\">",
      options,
      "</select></label><label>request<input name=\"request\" size=\"38\" value=\"",
      Esc(req.request_id()),
      "\"></label><label>party<input name=\"party\" size=\"4\" value=\"",
      Esc(req.party()),
      "\"></label><label>actor<input name=\"actor\" size=\"16\" value=\"",
      Esc(req.actor()),
      "\"></label><label>from entry<input name=\"from\" size=\"6\" value=\"", from,
      "\"></label><label>per page<input name=\"limit\" size=\"4\" value=\"", limit,
      "\"></label><button type=\"submit\">Show</button> <a "
      "href=\"/log\">clear</a></form>");
  absl::StrAppend(
      &body, "<p>", resp.entries_size(), " entries shown of ", resp.tree_size(),
      " in the log.</p><table><thead><tr><th>#</th><th>Time (UTC)</th><th>Event</th>"
      "<th>Actor</th><th>Request</th><th>Party</th><th>Assessment</th>"
      "<th>Detail</th></tr></thead><tbody>");
  uint64_t last = 0;
  for (const std::string& bytes : resp.entries()) {
    v1::AuditEntry e;
    e.ParseFromString(bytes);
    last = e.index();
    std::string assessment;
    if (!e.instrument().empty() || e.obligation() != v1::OBLIGATION_UNSPECIFIED) {
      assessment = absl::StrCat(v1::Obligation_Name(e.obligation()), " ", e.instrument());
    }
    absl::StrAppend(&body, "<tr><td>", e.index(), "</td><td>",
                    Esc(TimeText(e.time_unix_micros())), "</td><td>",
                    Esc(v1::AuditEventType_Name(e.type())), "</td><td>", Esc(e.actor()),
                    "</td><td>", e.request_id().empty() ? "" : CaseLink(e.request_id()),
                    "</td><td>", Esc(e.party()), "</td><td>", Esc(assessment),
                    "</td><td class=\"pre\">", Esc(e.detail()), "</td></tr>");
  }
  absl::StrAppend(&body, "</tbody></table>");
  // Paging keeps the filters.
  auto link = [&](uint64_t start) {
    std::vector<std::string> params;
    for (const char* name : {"type", "request", "party", "actor"}) {
      if (!q(name).empty())
        params.push_back(absl::StrCat(name, "=", PercentEncode(q(name))));
    }
    params.push_back(absl::StrCat("from=", start));
    params.push_back(absl::StrCat("limit=", limit));
    return Esc(absl::StrCat("/log?", absl::StrJoin(params, "&")));
  };
  absl::StrAppend(&body, "<p>");
  if (from > 0)
    absl::StrAppend(&body, "<a href=\"", link(0), "\">\xE2\x86\x90 first page</a> ");
  if (!resp.next_page_token().empty()) {
    absl::StrAppend(&body, "<a href=\"", link(last + 1), "\">next page \xE2\x86\x92</a>");
  }
  absl::StrAppend(&body, "</p>");
  return Page(200, "Audit log", body);
}

HttpResponse AuditPage::Stats() const {
  v1::ListRequestsRequest list_req;
  list_req.set_limit(1000);
  v1::ListRequestsResponse list;
  grpc::Status st = operator_->ListRequests(Context(30).get(), list_req, &list);
  if (!st.ok()) return RpcErrorPage("the statistics", st);
  std::map<std::string, double> by_partner, by_instrument;
  std::map<std::string, Median> time_by_partner, time_by_instrument;
  int decided = 0;
  for (const v1::RequestRecord& listed : list.records()) {
    v1::RequestBody b;
    b.ParseFromString(listed.request().payload());
    const std::string partner = Partner(listed, b);
    const std::string instrument = Instrument(listed, b);
    by_partner[absl::StrCat(
        partner, listed.direction() == v1::OUTGOING ? " (sent)" : " (received)")] += 1;
    by_instrument[instrument] += 1;
    if (listed.case_state() == v1::CASE_STATE_UNSPECIFIED ||
        listed.case_state() == v1::CASE_DELIVERED) {
      continue;  // No step yet (List does not carry them: GetRequest does).
    }
    v1::GetRequestRequest get;
    get.set_id(b.id());
    v1::GetRequestResponse one;
    st = operator_->GetRequest(Context(30).get(), get, &one);
    if (!st.ok()) return RpcErrorPage("the statistics", st);
    for (const v1::RequestRecord& r : one.records()) {
      if (r.direction() != listed.direction()) continue;
      for (const v1::SignedEnvelope& env : r.transitions()) {
        v1::Transition t;
        if (!t.ParseFromString(env.payload()) || !IsDecision(t.action())) continue;
        const double seconds =
            std::max<int64_t>(0, t.time_unix_micros() - Micros(r.stored_at())) / 1e6;
        time_by_partner[partner].values.push_back(seconds);
        time_by_instrument[instrument].values.push_back(seconds);
        ++decided;
        break;
      }
    }
  }
  // The whole log, a page at a time.
  AuditLogStatsBuilder builder;
  st = ReadAuditEntries(*audit_, v1::GetAuditEntriesRequest(), 0, absl::Seconds(60),
                        [&](std::string entry) { builder.Add(entry); });
  if (!st.ok()) return RpcErrorPage("the statistics", st);
  const AuditLogStats log = builder.Finish();

  auto count = [](double v) { return absl::StrCat(static_cast<int64_t>(v)); };
  auto bars = [](const std::map<std::string, double>& m) {
    return std::vector<std::pair<std::string, double>>(m.begin(), m.end());
  };
  auto medians = [](std::map<std::string, Median>& m) {
    std::vector<std::pair<std::string, double>> out;
    for (auto& [k, v] : m) {
      const size_t n = v.values.size();
      out.push_back({absl::StrCat(k, " (n=", n, ")"), v.Get()});
    }
    return out;
  };
  std::string body = absl::StrCat(
      "<p>From ", list.records_size(), " request(s) this node holds and ", log.entries,
      " audit log entries. Response time: from the request being stored on this node to "
      "the "
      "first decision step (accept, refuse, postpone, ask for information, respond), by "
      "the "
      "times in the signed steps; ",
      decided,
      " request(s) decided so far. Bars show the median.</p><div class=\"charts\">",
      SvgBarChart("Requests per partner", bars(by_partner), count),
      SvgBarChart("Requests per instrument (receiver's assessment)", bars(by_instrument),
                  count),
      SvgBarChart("Median response time per partner", medians(time_by_partner),
                  DurationText),
      SvgBarChart("Median response time per instrument", medians(time_by_instrument),
                  DurationText));
  std::map<std::string, double> obligations(log.assessments_by_obligation.begin(),
                                            log.assessments_by_obligation.end());
  absl::StrAppend(
      &body,
      SvgBarChart("Assessments per obligation (audit log)", bars(obligations), count),
      "</div>");
  auto table = [](const char* title, const std::map<std::string, int>& m) {
    std::vector<std::string> items;
    for (const auto& [k, v] : m) items.push_back(absl::StrCat(Esc(k), " ", v));
    return absl::StrCat("<dt>", title, "</dt><dd>",
                        items.empty() ? "none" : absl::StrJoin(items, " \xC2\xB7 "),
                        "</dd>");
  };
  char ack[160];
  std::snprintf(ack, sizeof(ack), "%zu acknowledged, p50 %.1f ms, p90 %.1f ms",
                log.acknowledgement_ms.size(), log.AcknowledgementPercentile(0.5),
                log.AcknowledgementPercentile(0.9));
  absl::StrAppend(&body,
                  "<h2>From the audit log (as <code>comity audit stats</code>)</h2><dl>",
                  table("requests sent, by partner", log.sent_by_partner),
                  table("requests received, by partner", log.received_by_partner),
                  table("assessments, by instrument", log.assessments_by_instrument),
                  table("case refusals, by ground", log.case_refusals_by_ground),
                  table("deliveries refused, by reason", log.refusals_by_reason),
                  table("deadlines missed, by kind", log.deadlines_missed));
  auto nested = [&table](const char* title,
                         const std::map<std::string, std::map<std::string, int>>& m) {
    std::string out;
    if (m.empty()) return table(title, {});
    for (const auto& [key, counts] : m) {
      out += table(absl::StrCat(title, " ", Esc(key)).c_str(), counts);
    }
    return out;
  };
  char times[320];
  std::snprintf(times, sizeof(times),
                "%zu decided, p50 %.1f ms, p90 %.1f ms; %zu responded, p50 %.1f ms, p90 %.1f ms",
                log.decision_ms.size(), AuditLogStats::Percentile(log.decision_ms, 0.5),
                AuditLogStats::Percentile(log.decision_ms, 0.9), log.response_ms.size(),
                AuditLogStats::Percentile(log.response_ms, 0.5),
                AuditLogStats::Percentile(log.response_ms, 0.9));
  absl::StrAppend(&body, nested("case steps, partner", log.outcomes_by_partner),
                  nested("case steps, instrument", log.outcomes_by_instrument),
                  "<dt>time to decide and to respond (from the request)</dt><dd>", times,
                  "</dd><dt>delivery acknowledgement (transport)</dt><dd>", ack, "</dd></dl>");
  return Page(200, "Statistics", body);
}

int RunAuditServe(const ParsedArgs& args, const GetEnv& env, std::ostream& out,
                  std::ostream& err) {
  const bool json = args.switches.count("json") != 0;
  auto fail = [&err, json](int code, absl::string_view message) {
    return ReportError(err, json, "comity", CliError(code, std::string(message)));
  };
  // The role, from the certificate, before anything is served: the node
  // would refuse every page anyway.
  const std::string path = args.Get("connect", env("COMITY_CONNECT"));
  if (path.empty()) {
    return fail(
        kExitUsage,
        "audit serve needs an auditor's client config: pass --connect FILE or set "
        "COMITY_CONNECT");
  }
  auto config = LoadClientConfig(path);
  if (!config.ok()) return fail(kExitUsage, config.status().message());
  auto pem = ReadFile(config->cert_file());
  if (!pem.ok()) return fail(kExitFailure, pem.status().message());
  auto identity = IdentityFromCertPem(*pem);
  if (!identity.ok()) {
    return fail(kExitFailure,
                absl::StrCat(config->cert_file(), ": ", identity.status().message()));
  }
  if (identity->kind != CertIdentity::Kind::kOperator || !identity->HasRole("auditor")) {
    return fail(
        kExitFailure,
        absl::StrCat("refusing to serve the audit page: ",
                     identity->kind == CertIdentity::Kind::kOperator
                         ? absl::StrCat("operator ", identity->operator_name, " of ",
                                        identity->party)
                         : absl::StrCat("the certificate of party ", identity->party),
                     " lacks the auditor role (no urn:comity:role:auditor URI in ",
                     config->cert_file(), "); use an auditor's --connect file"));
  }
  auto connection = ConnectToNode(args, env);
  if (!connection.ok()) return fail(kExitUsage, connection.status().message());
  auto operator_stub = v1::OperatorService::NewStub(connection->channel);
  auto audit_stub = v1::AuditService::NewStub(connection->channel);
  // The node has the last word on the role: ask it once now.
  v1::GetTreeHeadsRequest one;
  one.set_limit(1);
  v1::GetTreeHeadsResponse probe;
  grpc::Status st = audit_stub->GetTreeHeads(Context(15).get(), one, &probe);
  if (!st.ok()) {
    return fail(NodeUnreachable(st) ? kExitUnreachable : kExitFailure,
                absl::StrCat("refusing to serve the audit page: ",
                             DescribeRpcError(connection->address, st)));
  }
  AuditPageOptions options;
  options.token = RandomToken();
  if (options.token.empty())
    return fail(kExitFailure, "no randomness for the access token");
  options.node_address = connection->address;
  options.who = absl::StrCat(identity->operator_name, " (auditor) of ", identity->party);
  const std::string listen = args.Get("listen", "127.0.0.1:0");
  // The port is known only once bound; the page reads it through `page`.
  std::unique_ptr<AuditPage> page;
  auto server = HttpServer::Create(
      listen, [&page](const HttpRequest& request) { return page->Handle(request); });
  if (!server.ok()) {
    return fail(absl::IsInvalidArgument(server.status()) ? kExitUsage : kExitFailure,
                server.status().message());
  }
  options.port = (*server)->port();
  page = std::make_unique<AuditPage>(operator_stub.get(), audit_stub.get(), options);
  // The host to print in the URL: as given, or loopback for a wildcard.
  std::string host = listen.find(':') == std::string::npos
                         ? std::string()
                         : listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  if (!IsLoopbackHost(host) || absl::StartsWith(listen, "0.0.0.0") ||
      absl::StartsWith(listen, "[::]")) {
    err << "comity: warning: " << listen
        << " is not only loopback: the page is plain HTTP, so the token and the pages "
           "cross "
           "the network in clear; prefer 127.0.0.1 and an SSH tunnel\n";
  }
  out << "audit page of the node at " << connection->address << ", as " << options.who
      << ", read-only\n"
      << "open: http://" << host << ":" << options.port << "/?token=" << options.token
      << "\n"
      << "The token is shown only here: anyone who has it can read the page while this "
         "runs. "
         "Stop with Ctrl-C.\n";
  out.flush();
  (*server)->Serve();
  return fail(kExitFailure, "the HTTP server stopped");
}

}  // namespace comity
