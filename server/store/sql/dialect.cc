#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/store/sql/database.h"

namespace comity::sql {

std::string Translate(absl::string_view sql, const Dialect& d) {
  std::string out;
  out.reserve(sql.size() + 16);
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == '$' && i + 1 < sql.size() && absl::ascii_isdigit(sql[i + 1])) {
      out.push_back(d.placeholder);
      ++i;
      continue;
    }
    if (c == '{') {
      const size_t end = sql.find('}', i);
      if (end != absl::string_view::npos) {
        const absl::string_view token = sql.substr(i + 1, end - i - 1);
        const char* with = nullptr;
        if (token == "int64") with = d.int64;
        if (token == "blob") with = d.blob;
        if (token == "autoid") with = d.autoid;
        if (token == "without_rowid") with = d.without_rowid;
        if (token == "collate_c") with = d.collate_c;
        if (token == "for_update") with = d.for_update;
        if (with != nullptr) {
          out += with;
          i = end + 1;
          continue;
        }
        if (absl::StartsWith(token, "indexed_by:")) {
          if (d.index_hints) absl::StrAppend(&out, "INDEXED BY ", token.substr(11));
          i = end + 1;
          continue;
        }
      }
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

}  // namespace comity::sql
