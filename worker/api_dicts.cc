// /v1/dicts: byte values under string keys, with content type, ETag (= version) and If-Match CAS.
#include <algorithm>
#include <boost/range/iterator_range.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api_util.h"
#include "shm/api.h"
#include "shm/dict.h"
#include "shm/integer.h"
#include "shm/keyspace.h"
#include "shm/limits.h"
#include "shm/utf8.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;

constexpr std::string_view kDefaultContentType = "application/octet-stream";
constexpr size_t kDefaultKeyLimit = 100;

// Runs `op` on the dict named by the first capture; `create` makes a missing one (defaults).
template <typename Op>
Status WithDict(RequestContext& context, bool create, Op&& op) {
  OpenMode mode = create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
  auto open = [&](Segment* segment, std::string_view name, Dict* dict) {
    return Dict::Open(segment, name, mode, DictOptions(), dict);
  };
  return api::WithObject<Dict>(context, open, std::forward<Op>(op));
}

// A Redis database's keyspace ("redis:<n>", kind keyspace) reads like a dict of its string keys
// (docs/resp.md); its lists and hashes are the objects its entries name, and it is written only
// through the Redis protocol (any other write is 409 WrongType, as for every kind mismatch).
Status GetFromKeyspace(RequestContext& context, const std::string& key, DictValue* value) {
  std::string_view name = context.params[0];
  int db = -1;
  if (name.substr(0, 6) == "redis:" && name.size() >= 7 && name.size() <= 8) {
    int64_t n = 0;
    if (ParseInt64(name.substr(6), &n, IntSyntax::kRedisStrict)) db = static_cast<int>(n);
  }
  Keyspace keyspace;
  if (db < 0 || !Keyspace::Open(context.segment, db, &keyspace, OpenMode::kOpenExisting).ok()) {
    return Status::WrongType("not a dict");
  }
  SHM_RETURN_IF_ERROR(keyspace.Get(key, &value->data, &value->expires_at_ms));
  return keyspace.Version(key, &value->version);
}

// Keys come from the path: percent-decoded, 1..limits::kMaxKey bytes of UTF-8 so listings stay
// JSON (the request head limit, 8 KiB by default, bounds a key in the URL first).
Status CheckKey(std::string_view key) {
  if (key.empty() || key.size() > limits::kMaxKey) {
    return Status::InvalidArgument("key must be 1-" + std::to_string(limits::kMaxKey) + " bytes");
  }
  if (!IsUtf8(key)) return Status::InvalidArgument("key must be UTF-8");
  return Status::OK();
}

std::string ETag(uint64_t version) { return "\"" + std::to_string(version) + "\""; }

// An If-Match or If-None-Match header (RFC 9110 §13.1.1-2): `*`, or a list of entity tags.
struct TagCondition {
  bool present = false;
  bool any = false;  // `*`: true when the key exists.
  struct Tag {
    bool weak;
    std::string opaque;  // Between the quotes.
  };
  std::vector<Tag> tags;

  // Strong comparison (If-Match): only a strong tag matches our (strong) ETag.
  bool MatchesStrongly(uint64_t version) const {
    std::string ours = std::to_string(version);
    return any || std::any_of(tags.begin(), tags.end(),
                              [&](const Tag& t) { return !t.weak && t.opaque == ours; });
  }
  // Weak comparison (If-None-Match): W/"v" and "v" both match.
  bool MatchesWeakly(uint64_t version) const {
    std::string ours = std::to_string(version);
    return any ||
           std::any_of(tags.begin(), tags.end(), [&](const Tag& t) { return t.opaque == ours; });
  }
};

// Every `field` line of the request, as one list. A tag is W/"x" or "x"; a bare number is taken
// as the strong tag "n" (what earlier clients of this server sent).
Status ParseTagCondition(const RequestContext& context, http::field field, TagCondition* out) {
  const std::string name(http::to_string(field));
  auto bad = [&] {
    return Status::InvalidArgument(name + " must be * or a list of ETags such as \"12\", W/\"12\"");
  };
  for (const auto& line : boost::make_iterator_range(context.request.equal_range(field))) {
    out->present = true;
    std::string_view rest = line.value();
    while (true) {
      size_t begin = rest.find_first_not_of(" \t");
      if (begin == std::string_view::npos) break;
      rest.remove_prefix(begin);
      if (rest.front() == ',') {  // An empty list element (RFC 9110 §5.6.1).
        rest.remove_prefix(1);
        continue;
      }
      if (rest.front() == '*') {
        out->any = true;
        rest.remove_prefix(1);
      } else {
        bool weak = rest.substr(0, 2) == "W/";
        if (weak) rest.remove_prefix(2);
        size_t length = 0;
        std::string_view opaque;
        if (!rest.empty() && rest.front() == '"') {
          size_t close = rest.find('"', 1);
          if (close == std::string_view::npos) return bad();
          opaque = rest.substr(1, close - 1);
          length = close + 1;
        } else if (!weak) {
          length = std::min(rest.find_first_not_of("0123456789"), rest.size());
          opaque = rest.substr(0, length);
        }
        if (length == 0) return bad();
        out->tags.push_back({weak, std::string(opaque)});
        rest.remove_prefix(length);
      }
      size_t next = rest.find_first_not_of(" \t");
      if (next == std::string_view::npos) break;
      if (rest[next] != ',') return bad();
      rest.remove_prefix(next + 1);
    }
  }
  if (out->present && !out->any && out->tags.empty()) return bad();
  return Status::OK();
}

// The request's If-Match and If-None-Match.
struct Preconditions {
  TagCondition if_match;
  TagCondition if_none_match;
};

Status ParsePreconditions(const RequestContext& context, Preconditions* out) {
  SHM_RETURN_IF_ERROR(ParseTagCondition(context, http::field::if_match, &out->if_match));
  return ParseTagCondition(context, http::field::if_none_match, &out->if_none_match);
}

// Conflict is what the router answers 412 for a conditional request.
Status PreconditionFailed(std::string_view why) {
  return Status::Conflict(std::string("precondition failed: ") + std::string(why));
}

constexpr std::string_view kIfMatchMissing = "If-Match on a key that does not exist";

// `s`, the result of an operation on a key, except that a missing key fails an If-Match (412)
// rather than being NotFound (RFC 9110 §13.1.1: no current representation matches).
Status UnderPreconditions(const Preconditions& pre, Status s) {
  if (s.IsNotFound() && pre.if_match.present) return PreconditionFailed(kIfMatchMissing);
  return s;
}

// The version a write must find for the preconditions to hold (RFC 9110 §13.2.2, If-Match first),
// or nothing when they allow any state. A single strong If-Match tag is passed to the dict as is,
// so the check and the write are one atomic compare-and-set; otherwise the key's current version
// is read, checked, and then required by the write (a change in between is a 412 as well).
Status WriteCondition(RequestContext& context, const std::string& key, const Preconditions& pre,
                      std::optional<uint64_t>* if_version) {
  const TagCondition& match = pre.if_match;
  const TagCondition& none_match = pre.if_none_match;
  uint64_t single = 0;
  if (match.present && !match.any && match.tags.size() == 1 && !match.tags[0].weak &&
      !none_match.present && api::ParseUint64(match.tags[0].opaque, &single).ok()) {
    *if_version = single;
    return Status::OK();
  }
  if (!match.present && !none_match.present) return Status::OK();
  DictValue current;
  Status s = WithDict(context, false, [&](Dict& dict) { return dict.Get(key, &current); });
  if (!s.ok() && !s.IsNotFound()) return s;
  bool exists = s.ok();
  if (match.present && !(exists && match.MatchesStrongly(current.version))) {
    return PreconditionFailed(exists ? "If-Match does not match the current ETag"
                                     : kIfMatchMissing);
  }
  if (none_match.present && exists && none_match.MatchesWeakly(current.version)) {
    return PreconditionFailed("If-None-Match matches the current ETag");
  }
  // A key that must be absent is created with mode=add, so a racing create still fails.
  if (exists) *if_version = current.version;
  return Status::OK();
}

Status ParseMode(std::string_view text, SetMode* mode) {
  if (text == "set")
    *mode = SetMode::kSet;
  else if (text == "add")
    *mode = SetMode::kAdd;
  else if (text == "replace")
    *mode = SetMode::kReplace;
  else
    return Status::InvalidArgument("mode must be set, add or replace");
  return Status::OK();
}

Status PutKey(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"ttl", "mode"}));
  const std::string& key = context.params[1];
  SHM_RETURN_IF_ERROR(CheckKey(key));
  SetOptions options;
  SHM_RETURN_IF_ERROR(ParseMode(api::QueryString(context, "mode", "set"), &options.mode));
  SHM_RETURN_IF_ERROR(api::QuerySecondsMs(context, "ttl", 0, Dict::kMaxTtlMs, &options.ttl_ms));
  Preconditions pre;
  SHM_RETURN_IF_ERROR(ParsePreconditions(context, &pre));
  SHM_RETURN_IF_ERROR(WriteCondition(context, key, pre, &options.if_version));
  bool must_be_new = pre.if_none_match.present && !options.if_version;
  if (must_be_new) options.mode = SetMode::kAdd;
  auto type = context.request.find(http::field::content_type);
  options.content_type =
      type == context.request.end() ? kDefaultContentType : std::string_view(type->value());
  uint64_t version = 0;
  const std::string& body = context.request.body();
  Status s =
      WithDict(context, true, [&](Dict& dict) { return dict.Set(key, body, options, &version); });
  if (must_be_new && s.IsAlreadyExists())
    return PreconditionFailed("the key was created meanwhile");
  SHM_RETURN_IF_ERROR(s);
  response->set(http::field::etag, ETag(version));
  api::SetJsonInteger(response, "version", version);
  return Status::OK();
}

// If-Match (strong) is checked first, then If-None-Match (weak): a match is 304 (RFC 9110 §13.2.2).
Status GetKey(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  const std::string& key = context.params[1];
  SHM_RETURN_IF_ERROR(CheckKey(key));
  Preconditions pre;
  SHM_RETURN_IF_ERROR(ParsePreconditions(context, &pre));
  DictValue value;
  Status s = WithDict(context, false, [&](Dict& dict) { return dict.Get(key, &value); });
  if (s.IsWrongType()) s = GetFromKeyspace(context, key, &value);
  SHM_RETURN_IF_ERROR(UnderPreconditions(pre, std::move(s)));
  response->set(http::field::etag, ETag(value.version));
  if (pre.if_match.present && !pre.if_match.MatchesStrongly(value.version)) {
    return PreconditionFailed("If-Match does not match the current ETag");
  }
  if (pre.if_none_match.present && pre.if_none_match.MatchesWeakly(value.version)) {
    response->result(http::status::not_modified);
    return Status::OK();
  }
  response->set(http::field::content_type,
                value.content_type.empty() ? kDefaultContentType : value.content_type);
  response->body() = std::move(value.data);
  return Status::OK();
}

Status DeleteKey(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  const std::string& key = context.params[1];
  SHM_RETURN_IF_ERROR(CheckKey(key));
  Preconditions pre;
  SHM_RETURN_IF_ERROR(ParsePreconditions(context, &pre));
  std::optional<uint64_t> if_version;
  SHM_RETURN_IF_ERROR(WriteCondition(context, key, pre, &if_version));
  Status s = WithDict(context, false, [&](Dict& dict) { return dict.Delete(key, if_version); });
  SHM_RETURN_IF_ERROR(UnderPreconditions(pre, std::move(s)));
  response->result(http::status::no_content);
  return Status::OK();
}

// Keys in table order, SCAN-style: pass "cursor" back until it is 0.
Status ListKeys(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"prefix", "limit", "cursor"}));
  size_t limit = 0;
  SHM_RETURN_IF_ERROR(
      api::QueryCount(context, "limit", kDefaultKeyLimit, api::kMaxListLimit, &limit));
  if (limit == 0) return Status::InvalidArgument("limit must be at least 1");
  // Cursors are opaque uint64s, sent as decimal strings (JSON numbers lose bits in JavaScript).
  uint64_t cursor = 0;
  std::string_view cursor_text = api::QueryString(context, "cursor", "0");
  if (!api::ParseUint64(cursor_text, &cursor).ok()) {
    return Status::InvalidArgument("cursor must be the decimal string a listing answered");
  }
  std::string prefix(api::QueryString(context, "prefix"));
  std::vector<std::string> keys;
  uint64_t next = 0;
  SHM_RETURN_IF_ERROR(WithDict(context, false, [&](Dict& dict) {
    return dict.ListKeys(prefix, limit, cursor, &keys, &next);
  }));
  array list;
  for (std::string& key : keys) list.push_back(api::json::string(key));
  api::SetJson(response, object{{"keys", std::move(list)}, {"cursor", std::to_string(next)}});
  return Status::OK();
}

Status ParseDictOptions(const object& body, DictOptions* options) {
  if (const auto* max_bytes = body.if_contains("max_bytes")) {
    if (!max_bytes->is_int64() || max_bytes->as_int64() < 0) {
      return Status::InvalidArgument("max_bytes must be a non-negative integer");
    }
    options->max_bytes = static_cast<uint64_t>(max_bytes->as_int64());
  }
  if (const auto* eviction = body.if_contains("eviction")) {
    if (*eviction == "clock") {
      options->eviction = DictEviction::kClock;
    } else if (*eviction == "none") {
      options->eviction = DictEviction::kNone;
    } else {
      return Status::InvalidArgument("eviction must be \"clock\" or \"none\"");
    }
  }
  if (const auto* ttl = body.if_contains("default_ttl")) {
    // Seconds; a JSON number with at most millisecond precision.
    if (!ttl->is_number()) return Status::InvalidArgument("default_ttl must be seconds");
    double seconds = ttl->to_number<double>();
    if (!(seconds >= 0) || seconds * 1000 > static_cast<double>(Dict::kMaxTtlMs)) {
      return Status::InvalidArgument("default_ttl is out of range");
    }
    options->default_ttl_ms = static_cast<int64_t>(seconds * 1000 + 0.5);
  }
  return Status::OK();
}

// Creates the dict with options; 409 AlreadyExists if it exists (its options are fixed).
Status CreateDict(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(api::CheckName(name));
  object body;
  if (!context.request.body().empty()) {
    SHM_RETURN_IF_ERROR(
        api::ParseJsonObject(context, {"max_bytes", "eviction", "default_ttl"}, &body));
  }
  DictOptions options;
  SHM_RETURN_IF_ERROR(ParseDictOptions(body, &options));
  Dict dict;
  bool created = false;
  SHM_RETURN_IF_ERROR(
      Dict::Open(context.segment, name, OpenMode::kCreateIfMissing, options, &dict, &created));
  if (!created) return Status::AlreadyExists("dict '" + name + "' exists");
  api::SetJson(response, object{{"created", true}}, http::status::created);
  return Status::OK();
}

}  // namespace

void RegisterDictRoutes(Router* router) {
  router->Add(http::verb::put, "/v1/dicts/{dict}/{key}", PutKey);
  router->Add(http::verb::get, "/v1/dicts/{dict}/{key}", GetKey);
  router->Add(http::verb::delete_, "/v1/dicts/{dict}/{key}", DeleteKey);
  router->Add(http::verb::get, "/v1/dicts/{dict}", ListKeys);
  router->Add(http::verb::post, "/v1/dicts/{dict}", CreateDict);
}

}  // namespace shm
