// The HTML every page of the audit site is built from: escaping, the page
// frame (style sheet, header, navigation), the error page for a refused or
// failed call, the SVG bar chart, and the table cells the pages share.
#include "client/audit_page.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/audit_page_internal.h"
#include "client/connection.h"
#include "client/http_server.h"

namespace comity {
namespace {

using audit_page_internal::Esc;

// No external fonts, scripts or images: the Content-Security-Policy (kCsp,
// audit_page.cc) allows inline styles and data: images only.
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

}  // namespace

namespace audit_page_internal {

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

}  // namespace audit_page_internal

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

}  // namespace comity
