// /v1/session/{key}: fields of the calling client's server-side session, found by the shmsid
// cookie. A write without a live session starts one (a fresh random id, never the client's
// choice, so a planted cookie cannot fix the session id) and sets the cookie.
#include <string>

#include "api_util.h"
#include "shm/api.h"
#include "shm/sessions.h"
#include "shm/utf8.h"

namespace shm {
namespace {

using api::json::object;

constexpr std::string_view kObjectName = "shm:sessions";
constexpr std::string_view kCookie = "shmsid";

template <typename Op>
Status WithSessions(RequestContext& context, Op&& op) {
  Segment* segment = context.segment;
  auto open = [](Segment* seg, Sessions* sessions) {
    return Sessions::Open(seg, kObjectName, OpenMode::kCreateIfMissing, Sessions::kDefaultIdleTtlMs,
                          sessions);
  };
  return api::CacheOf<Sessions>().Run(segment, kObjectName, open, std::forward<Op>(op));
}

// The well-formed shmsid cookie of the request, or "".
std::string CookieId(const RequestContext& context) {
  for (const auto& field : context.request) {
    if (field.name() != http::field::cookie) continue;
    std::string_view rest = field.value();
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != kCookie) continue;
      std::string_view id = pair.substr(eq + 1);
      if (Sessions::ValidateId(id).ok()) return std::string(id);
    }
  }
  return "";
}

Status CheckField(std::string_view field) {
  if (field.empty() || field.size() > Sessions::kMaxFieldName || !IsUtf8(field)) {
    return Status::InvalidArgument("session key must be 1-" +
                                   std::to_string(Sessions::kMaxFieldName) + " bytes of UTF-8");
  }
  return Status::OK();
}

// Loads the caller's session into `session` (NotFound when it has none).
Status LoadSession(RequestContext& context, std::string* id, object* session) {
  *id = CookieId(context);
  if (id->empty()) return Status::NotFound("no session (no shmsid cookie)");
  return WithSessions(context, [&](Sessions& s) { return s.Get(*id, session); });
}

// The caller's live session, or a new empty one with its cookie set on `response`.
Status LoadOrStartSession(RequestContext& context, HttpResponse* response, std::string* id,
                          object* session) {
  Status s = LoadSession(context, id, session);
  if (!s.IsNotFound()) return s;
  session->clear();
  SHM_RETURN_IF_ERROR(Sessions::NewId(id));
  response->set(http::field::set_cookie,
                std::string(kCookie) + "=" + *id + "; Path=/; HttpOnly; SameSite=Lax");
  return Status::OK();
}

Status GetField(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  SHM_RETURN_IF_ERROR(CheckField(context.params[0]));
  std::string id;
  object session;
  SHM_RETURN_IF_ERROR(LoadSession(context, &id, &session));
  const api::json::value* value = session.if_contains(context.params[0]);
  if (value == nullptr) return Status::NotFound("session has no key '" + context.params[0] + "'");
  api::SetJson(response, object{{"value", *value}});
  return Status::OK();
}

// Body {"value": any JSON}. One read-modify-write of the session under its lock, so writes of
// different keys from several workers at once all land.
Status PutField(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  SHM_RETURN_IF_ERROR(CheckField(context.params[0]));
  object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"value"}, &body));
  if (!body.contains("value")) return Status::InvalidArgument("missing member 'value'");
  std::string id;
  object session;
  SHM_RETURN_IF_ERROR(LoadOrStartSession(context, response, &id, &session));
  SHM_RETURN_IF_ERROR(WithSessions(
      context, [&](Sessions& s) { return s.SetField(id, context.params[0], body["value"]); }));
  api::SetJson(response, object{{"value", body["value"]}});
  return Status::OK();
}

Status DeleteField(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  SHM_RETURN_IF_ERROR(CheckField(context.params[0]));
  std::string id = CookieId(context);
  if (id.empty()) return Status::NotFound("no session (no shmsid cookie)");
  SHM_RETURN_IF_ERROR(
      WithSessions(context, [&](Sessions& s) { return s.EraseField(id, context.params[0]); }));
  response->result(http::status::no_content);
  return Status::OK();
}

// Atomic across workers (one read-modify-write under the object's lock).
Status IncrField(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"by"}));
  SHM_RETURN_IF_ERROR(CheckField(context.params[0]));
  int64_t by = 1;
  SHM_RETURN_IF_ERROR(api::QueryInt64(context, "by", 1, &by));
  std::string id;
  object session;
  SHM_RETURN_IF_ERROR(LoadOrStartSession(context, response, &id, &session));
  int64_t value = 0;
  SHM_RETURN_IF_ERROR(WithSessions(
      context, [&](Sessions& s) { return s.Incr(id, context.params[0], by, &value); }));
  api::SetValue(response, value);
  return Status::OK();
}

}  // namespace

Status WithClientSession(RequestContext& context, HttpResponse* response,
                         const std::function<Status(Sessions&, const std::string&)>& fn) {
  return WithSessions(context, [&](Sessions& sessions) -> Status {
    std::string id = CookieId(context);
    object existing;
    if (id.empty() || sessions.Get(id, &existing).IsNotFound()) {
      SHM_RETURN_IF_ERROR(Sessions::NewId(&id));
      response->set(http::field::set_cookie,
                    std::string(kCookie) + "=" + id + "; Path=/; HttpOnly; SameSite=Lax");
    }
    return fn(sessions, id);
  });
}

void RegisterSessionRoutes(Router* router) {
  router->Add(http::verb::get, "/v1/session/{key}", GetField);
  router->Add(http::verb::put, "/v1/session/{key}", PutField);
  router->Add(http::verb::delete_, "/v1/session/{key}", DeleteField);
  router->Add(http::verb::post, "/v1/session/{key}/incr", IncrField);
}

}  // namespace shm
