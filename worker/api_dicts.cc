// /v1/dicts: byte values under string keys, with content type, ETag (= version) and If-Match CAS.
#include <optional>
#include <string>

#include "api_util.h"
#include "proxy_cache.h"
#include "shm/api.h"
#include "shm/dict.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;

constexpr std::string_view kDefaultContentType = "application/octet-stream";
constexpr size_t kDefaultKeyLimit = 100;

api::ProxyCache<Dict>& Dicts() {
  static api::ProxyCache<Dict> cache;
  return cache;
}

// Runs `op` on the dict named by the first capture; `create` makes a missing one (defaults).
template <typename Op>
Status WithDict(RequestContext& context, bool create, Op&& op) {
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(api::CheckName(name));
  Segment* segment = context.segment;
  OpenMode mode = create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
  auto open = [&](Dict* dict) { return Dict::Open(segment, name, mode, DictOptions(), dict); };
  return Dicts().With(segment, name, open, std::forward<Op>(op));
}

// Keys come from the path: percent-decoded, 1..kMaxKey bytes of UTF-8 so listings stay JSON.
Status CheckKey(std::string_view key) {
  if (key.empty() || key.size() > Dict::kMaxKey) {
    return Status::InvalidArgument("key must be 1-" + std::to_string(Dict::kMaxKey) + " bytes");
  }
  if (!api::IsUtf8(key)) return Status::InvalidArgument("key must be UTF-8");
  return Status::OK();
}

std::string ETag(uint64_t version) { return "\"" + std::to_string(version) + "\""; }

// If-Match: "<version>" (or a bare number). `*` is not a version: the caller treats it.
Status ParseETag(std::string_view text, uint64_t* version) {
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    text = text.substr(1, text.size() - 2);
  }
  int64_t parsed = 0;
  if (!api::ParseInt64(text, &parsed).ok() || parsed < 0) {
    return Status::InvalidArgument("If-Match must be an ETag this server gave, e.g. \"12\"");
  }
  *version = static_cast<uint64_t>(parsed);
  return Status::OK();
}

// The If-Match header as a version, `*` as "must exist", or nothing.
Status IfMatch(const RequestContext& context, std::optional<uint64_t>* version, bool* any) {
  *any = false;
  auto it = context.request.find(http::field::if_match);
  if (it == context.request.end()) return Status::OK();
  if (it->value() == "*") {
    *any = true;
    return Status::OK();
  }
  uint64_t parsed = 0;
  SHM_RETURN_IF_ERROR(ParseETag(it->value(), &parsed));
  *version = parsed;
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
  bool any = false;
  SHM_RETURN_IF_ERROR(IfMatch(context, &options.if_version, &any));
  if (any) options.mode = SetMode::kReplace;
  auto type = context.request.find(http::field::content_type);
  options.content_type =
      type == context.request.end() ? kDefaultContentType : std::string_view(type->value());
  uint64_t version = 0;
  const std::string& body = context.request.body();
  SHM_RETURN_IF_ERROR(
      WithDict(context, true, [&](Dict& dict) { return dict.Set(key, body, options, &version); }));
  response->set(http::field::etag, ETag(version));
  api::SetJsonInteger(response, "version", version);
  return Status::OK();
}

Status GetKey(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  const std::string& key = context.params[1];
  SHM_RETURN_IF_ERROR(CheckKey(key));
  DictValue value;
  SHM_RETURN_IF_ERROR(WithDict(context, false, [&](Dict& dict) { return dict.Get(key, &value); }));
  std::string etag = ETag(value.version);
  response->set(http::field::etag, etag);
  auto none_match = context.request.find(http::field::if_none_match);
  if (none_match != context.request.end() && none_match->value() == etag) {
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
  std::optional<uint64_t> if_version;
  bool any = false;
  SHM_RETURN_IF_ERROR(IfMatch(context, &if_version, &any));
  SHM_RETURN_IF_ERROR(
      WithDict(context, false, [&](Dict& dict) { return dict.Delete(key, if_version); }));
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
