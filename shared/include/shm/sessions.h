// Sessions: server-side sessions, each a small JSON object stored under a random id, that expire
// after an idle time: every read or write pushes the expiry back.
//
// A sessions object is a dict underneath (same crash-safe layout: a killed process leaves each
// session with its old or its new content, whole), whose values are serialized JSON objects.
// Incr is one read-modify-write under the object's lock, so concurrent increments are exact.
// Process-safety: a Sessions is a cheap process-local handle, like Dict; use it from any thread.
#ifndef SHM_SESSIONS_H_
#define SHM_SESSIONS_H_

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "shm/dict.h"
#include "shm/limits.h"
#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class Sessions {
 public:
  static constexpr size_t kIdLength = 32;  // 128 random bits in lowercase hex.
  static constexpr size_t kMaxSessionBytes = limits::kMaxSessionBytes;  // Serialized JSON.
  static constexpr size_t kMaxFieldName = limits::kMaxSessionField;
  static constexpr int64_t kDefaultIdleTtlMs = 30 * 60 * 1000;

  Sessions() = default;

  // Opens the sessions object `name`, creating it when missing and `mode` allows, with an idle
  // timeout of `idle_ttl_ms` (> 0). An existing object keeps the timeout it was created with.
  static Status Open(Segment* segment, std::string_view name, OpenMode mode, int64_t idle_ttl_ms,
                     Sessions* result, bool* created = nullptr);

  // A fresh id: 128 bits from getrandom(2), as kIdLength lowercase hex digits.
  static Status NewId(std::string* id);
  // OK if `id` has the shape NewId gives; InvalidArgument otherwise.
  static Status ValidateId(std::string_view id);

  // NotFound if there is no such session (or it expired). Refreshes the expiry (lazily: at most
  // once per 1/16 of the idle timeout, so reads do not all write).
  Status Get(std::string_view id, boost::json::object* session);
  // Creates or replaces the session. InvalidArgument past kMaxSessionBytes.
  Status Put(std::string_view id, const boost::json::object& session);
  // NotFound if there is no such session.
  Status Delete(std::string_view id);
  // Adds `by` to the integer field `field` (absent: 0), creating the session if needed, and
  // returns the new value. InvalidArgument if the field is not an integer, or on overflow.
  Status Incr(std::string_view id, std::string_view field, int64_t by, int64_t* result);
  // Sets one field, creating the session if needed; one read-modify-write under the lock, so
  // concurrent writes of different fields of one session all land. InvalidArgument past
  // kMaxSessionBytes (the session is unchanged).
  Status SetField(std::string_view id, std::string_view field, const boost::json::value& value);
  // Removes one field. NotFound if there is no such session or field.
  Status EraseField(std::string_view id, std::string_view field);

  int64_t idle_ttl_ms() const { return idle_ttl_ms_; }
  const ObjectRef& ref() const { return dict_.ref(); }

 private:
  Sessions(const Dict& dict, int64_t idle_ttl_ms) : dict_(dict), idle_ttl_ms_(idle_ttl_ms) {}

  // Runs `fn` on the session (empty when absent and `create`; NotFound when absent otherwise) and
  // writes the result back, all under the sessions object's lock.
  Status Modify(std::string_view id, std::string_view field, bool create,
                const std::function<Status(boost::json::object&)>& fn);

  Dict dict_;
  int64_t idle_ttl_ms_ = 0;
};

}  // namespace shm

#endif  // SHM_SESSIONS_H_
