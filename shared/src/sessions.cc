#include "shm/sessions.h"

#include <sys/random.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "boundary.h"

namespace shm {
namespace {

constexpr std::string_view kJsonContentType = "application/json";

Status SessionTooLarge(size_t bytes) {
  return Status::InvalidArgument("session of " + std::to_string(bytes) +
                                 " bytes (serialized) is larger than the limit of " +
                                 std::to_string(Sessions::kMaxSessionBytes));
}

// Sessions are written only by this file, always as JSON objects: anything else is a bug.
Status ParseSession(std::string_view text, boost::json::object* session) {
  boost::json::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (ec || !value.is_object()) return Status::Internal("stored session is not a JSON object");
  *session = std::move(value.as_object());
  return Status::OK();
}

Status ReadInt64Field(const boost::json::object& session, std::string_view field, int64_t* value) {
  *value = 0;
  const boost::json::value* found = session.if_contains(field);
  if (found == nullptr) return Status::OK();
  if (found->is_int64()) {
    *value = found->get_int64();
    return Status::OK();
  }
  if (found->is_uint64() && found->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    *value = static_cast<int64_t>(found->get_uint64());
    return Status::OK();
  }
  return Status::InvalidArgument("session field is not an int64, cannot increment it");
}

}  // namespace

Status Sessions::Open(Segment* segment, std::string_view name, OpenMode mode, int64_t idle_ttl_ms,
                      Sessions* result, bool* created) {
  if (idle_ttl_ms <= 0 || idle_ttl_ms > Dict::kMaxTtlMs) {
    return Status::InvalidArgument("session idle timeout must be between 1 and " +
                                   std::to_string(Dict::kMaxTtlMs) + " ms");
  }
  DictOptions options;
  options.default_ttl_ms = idle_ttl_ms;
  Dict dict;
  SHM_RETURN_IF_ERROR(
      Dict::OpenKind(segment, name, ObjectKind::kSessions, mode, options, &dict, created));
  // An existing object keeps its own timeout.
  SHM_RETURN_IF_ERROR(dict.GetOptions(&options));
  *result = Sessions(dict, options.default_ttl_ms);
  return Status::OK();
}

Status Sessions::NewId(std::string* id) {
  unsigned char random[kIdLength / 2];
  size_t filled = 0;
  while (filled < sizeof random) {
    ssize_t n = getrandom(random + filled, sizeof random - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Internal(std::string("getrandom: ") + strerror(errno));
    filled += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  id->resize(kIdLength);
  for (size_t i = 0; i < sizeof random; ++i) {
    (*id)[2 * i] = kHex[random[i] >> 4];
    (*id)[2 * i + 1] = kHex[random[i] & 0xf];
  }
  return Status::OK();
}

Status Sessions::ValidateId(std::string_view id) {
  if (id.size() != kIdLength) {
    return Status::InvalidArgument("session id must be " + std::to_string(kIdLength) +
                                   " lowercase hex digits");
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Status::InvalidArgument("session id must be lowercase hex digits");
    }
  }
  return Status::OK();
}

Status Sessions::Get(std::string_view id, boost::json::object* session) {
  SHM_RETURN_IF_ERROR(ValidateId(id));
  return CatchAtBoundary("sessions", [&] {
    std::string text;
    int64_t now = WallNowMs();
    int64_t refresh_before = now + idle_ttl_ms_ - idle_ttl_ms_ / 16;
    SHM_RETURN_IF_ERROR(dict_.Update(id, [&](const DictValue* current, DictUpdate* update) {
      if (current == nullptr) return Status::NotFound("no such session");
      text = current->data;
      update->write = current->expires_at_ms != 0 && current->expires_at_ms < refresh_before;
      if (update->write) {
        update->data = current->data;
        update->content_type = kJsonContentType;
        update->ttl_ms = idle_ttl_ms_;
      }
      return Status::OK();
    }));
    return ParseSession(text, session);
  });
}

Status Sessions::Put(std::string_view id, const boost::json::object& session) {
  SHM_RETURN_IF_ERROR(ValidateId(id));
  return CatchAtBoundary("sessions", [&] {
    std::string text = boost::json::serialize(session);
    if (text.size() > kMaxSessionBytes) return SessionTooLarge(text.size());
    SetOptions options;
    options.ttl_ms = idle_ttl_ms_;
    options.content_type = kJsonContentType;
    return dict_.Set(id, text, options);
  });
}

Status Sessions::Delete(std::string_view id) {
  SHM_RETURN_IF_ERROR(ValidateId(id));
  Status s = dict_.Delete(id);
  if (s.IsNotFound()) return Status::NotFound("no such session");
  return s;
}

Status Sessions::Modify(std::string_view id, std::string_view field, bool create,
                        const std::function<Status(boost::json::object&)>& fn) {
  SHM_RETURN_IF_ERROR(ValidateId(id));
  if (field.empty() || field.size() > kMaxFieldName) {
    return Status::InvalidArgument("session field name must be 1 to " +
                                   std::to_string(kMaxFieldName) + " bytes");
  }
  return CatchAtBoundary("sessions", [&] {
    return dict_.Update(id, [&](const DictValue* current, DictUpdate* update) {
      if (current == nullptr && !create) return Status::NotFound("no such session");
      boost::json::object session;
      if (current != nullptr) SHM_RETURN_IF_ERROR(ParseSession(current->data, &session));
      SHM_RETURN_IF_ERROR(fn(session));
      update->data = boost::json::serialize(session);
      if (update->data.size() > kMaxSessionBytes) return SessionTooLarge(update->data.size());
      update->content_type = kJsonContentType;
      update->ttl_ms = idle_ttl_ms_;
      return Status::OK();
    });
  });
}

Status Sessions::Incr(std::string_view id, std::string_view field, int64_t by, int64_t* result) {
  int64_t next = 0;
  SHM_RETURN_IF_ERROR(Modify(id, field, /*create=*/true, [&](boost::json::object& session) {
    int64_t value = 0;
    SHM_RETURN_IF_ERROR(ReadInt64Field(session, field, &value));
    if (__builtin_add_overflow(value, by, &next)) {
      return Status::InvalidArgument("session field overflow: " + std::to_string(value) + " + " +
                                     std::to_string(by) + " does not fit in int64");
    }
    session[field] = next;
    return Status::OK();
  }));
  *result = next;
  return Status::OK();
}

Status Sessions::SetField(std::string_view id, std::string_view field,
                          const boost::json::value& value) {
  return Modify(id, field, /*create=*/true, [&](boost::json::object& session) {
    session[field] = value;
    return Status::OK();
  });
}

Status Sessions::EraseField(std::string_view id, std::string_view field) {
  return Modify(id, field, /*create=*/false, [&](boost::json::object& session) {
    if (session.erase(field) == 0) {
      return Status::NotFound("session has no key '" + std::string(field) + "'");
    }
    return Status::OK();
  });
}

}  // namespace shm
