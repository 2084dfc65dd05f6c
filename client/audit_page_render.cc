// What each page of the audit site shows, from the node's data: the cases
// (/), one case with every signed step verified here (/case/ID), the audit
// log with its verification (/log) and the statistics (/stats). The HTML
// they share: audit_page_html.cc; routing and access: audit_page.cc.
#include "client/audit_page.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/audit_page_internal.h"
#include "client/http_server.h"
#include "client/list_pages.h"
#include "comity/v1/case.pb.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"

namespace comity {
namespace {

using audit_page_internal::Badge;
using audit_page_internal::CaseLink;
using audit_page_internal::Context;
using audit_page_internal::DurationText;
using audit_page_internal::Esc;
using audit_page_internal::Micros;
using audit_page_internal::TimeText;

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
  if (!ParseReceipt(r.receipt(), &receipt) ||
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

}  // namespace

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

}  // namespace comity
