#include "api_util.h"

#include <algorithm>
#include <atomic>
#include <boost/beast/core/detail/base64.hpp>
#include <charconv>
#include <cmath>
#include <string>

#include "shm/api.h"
#include "shm/log.h"
#include "shm/registry.h"

namespace shm::api {

Status ParseInt64(std::string_view text, int64_t* value) {
  std::string_view digits = text.substr(!text.empty() && text.front() == '-' ? 1 : 0);
  bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
  int64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (!all_digits || ec != std::errc() || end != text.data() + text.size()) {
    return Status::InvalidArgument("'" + std::string(text.substr(0, 64)) +
                                   "' is not a 64-bit integer");
  }
  *value = parsed;
  return Status::OK();
}

Status ParseUint64(std::string_view text, uint64_t* value) {
  bool all_digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; });
  uint64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (!all_digits || ec != std::errc() || end != text.data() + text.size()) {
    return Status::InvalidArgument("'" + std::string(text.substr(0, 64)) +
                                   "' is not an unsigned 64-bit integer");
  }
  *value = parsed;
  return Status::OK();
}

Status ParseSecondsMs(std::string_view text, int64_t max_ms, int64_t* ms) {
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  auto digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  bool ok = !whole.empty() && whole.size() <= 12 && digits(whole) && digits(fraction) &&
            fraction.size() <= 3 && (dot == std::string_view::npos || !fraction.empty());
  if (!ok) {
    return Status::InvalidArgument("'" + std::string(text.substr(0, 64)) +
                                   "' is not a duration in seconds (e.g. 5 or 0.25)");
  }
  int64_t seconds = std::stoll(std::string(whole));
  int64_t millis = fraction.empty() ? 0 : std::stoll((std::string(fraction) + "00").substr(0, 3));
  int64_t total = seconds * 1000 + millis;
  if (total > max_ms) {
    return Status::InvalidArgument("duration " + std::string(text) + "s is longer than " +
                                   std::to_string(max_ms / 1000) + "s");
  }
  *ms = total;
  return Status::OK();
}

Status CheckQueryKeys(const RequestContext& context,
                      std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : context.query) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Status::InvalidArgument("unknown query parameter '" + key.substr(0, 64) + "'");
    }
  }
  return Status::OK();
}

std::string_view QueryString(const RequestContext& context, std::string_view key,
                             std::string_view fallback) {
  auto it = context.query.find(std::string(key));
  return it == context.query.end() ? fallback : std::string_view(it->second);
}

Status QueryInt64(const RequestContext& context, std::string_view key, int64_t fallback,
                  int64_t* value) {
  auto it = context.query.find(std::string(key));
  if (it == context.query.end()) {
    *value = fallback;
    return Status::OK();
  }
  Status s = ParseInt64(it->second, value);
  if (!s.ok()) return Status::InvalidArgument(std::string(key) + ": " + std::string(s.message()));
  return Status::OK();
}

Status QueryCount(const RequestContext& context, std::string_view key, size_t fallback, size_t max,
                  size_t* value) {
  int64_t parsed = 0;
  SHM_RETURN_IF_ERROR(QueryInt64(context, key, static_cast<int64_t>(fallback), &parsed));
  if (parsed < 0 || static_cast<uint64_t>(parsed) > max) {
    return Status::InvalidArgument(std::string(key) + " must be between 0 and " +
                                   std::to_string(max));
  }
  *value = static_cast<size_t>(parsed);
  return Status::OK();
}

Status QuerySecondsMs(const RequestContext& context, std::string_view key, int64_t fallback_ms,
                      int64_t max_ms, int64_t* ms) {
  auto it = context.query.find(std::string(key));
  if (it == context.query.end()) {
    *ms = fallback_ms;
    return Status::OK();
  }
  Status s = ParseSecondsMs(it->second, max_ms, ms);
  if (!s.ok()) return Status::InvalidArgument(std::string(key) + ": " + std::string(s.message()));
  return Status::OK();
}

Status ParseJsonObject(const RequestContext& context,
                       std::initializer_list<std::string_view> allowed, json::object* object) {
  boost::system::error_code ec;
  json::value value = json::parse(context.request.body(), ec);
  if (ec) return Status::InvalidArgument("body is not valid JSON: " + ec.message());
  if (!value.is_object()) return Status::InvalidArgument("body must be a JSON object");
  for (const auto& member : value.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), member.key()) == allowed.end()) {
      return Status::InvalidArgument("unknown member '" + std::string(member.key().substr(0, 64)) +
                                     "'");
    }
  }
  *object = std::move(value.as_object());
  return Status::OK();
}

Status JsonInt64(const json::object& object, std::string_view key, int64_t* value) {
  const json::value* member = object.if_contains(key);
  if (member == nullptr)
    return Status::InvalidArgument("missing member '" + std::string(key) + "'");
  if (member->is_int64()) {
    *value = member->as_int64();
    return Status::OK();
  }
  if (member->is_uint64()) {
    return Status::InvalidArgument("'" + std::string(key) + "' does not fit in int64");
  }
  return Status::InvalidArgument("'" + std::string(key) + "' must be an integer");
}

Status CheckName(std::string_view name) { return ValidateName(name); }

Status DeleteNamedObject(RequestContext& context, ObjectKind kind, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(CheckQueryKeys(context, {}));
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(CheckName(name));
  SHM_RETURN_IF_ERROR(context.segment->registry().Delete(name, kind));
  response->result(http::status::no_content);
  return Status::OK();
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(boost::beast::detail::base64::encoded_size(bytes.size()), '\0');
  out.resize(boost::beast::detail::base64::encode(out.data(), bytes.data(), bytes.size()));
  return out;
}

namespace {
std::atomic<bool> g_stop_blocking_waits{false};
constexpr auto kWaitSlice = std::chrono::milliseconds(250);
}  // namespace

bool BlockingWaitsStopped() { return g_stop_blocking_waits.load(); }

bool CanPark(const RequestContext& context, int64_t wait_ms) {
  SHM_LOG(kDebug) << "wait: " << context.request.method_string() << " " << context.request.target()
                  << " may wait " << wait_ms << " ms";
  return context.park != nullptr;
}

void ParkWait(RequestContext& context, std::string key, ObjectRef object, int64_t wait_ms,
              std::function<bool(HttpResponse* response, Status* status)> attempt,
              std::function<Status(HttpResponse* response, bool stopping)> give_up,
              std::function<void()> arrive) {
  *context.park = ParkedWait{std::move(key),
                             std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms),
                             object,
                             std::move(attempt),
                             std::move(give_up),
                             std::move(arrive)};
}

Status WaitInSlices(
    RequestContext& context, int64_t wait_ms,
    const std::function<Status(std::chrono::milliseconds slice, bool* retry)>& attempt) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (true) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto slice =
        std::clamp(remaining, std::chrono::milliseconds(0), std::chrono::milliseconds(kWaitSlice));
    if (g_stop_blocking_waits.load()) slice = std::chrono::milliseconds(0);
    bool retry = false;
    Status s = attempt(slice, &retry);
    if (!retry || slice < kWaitSlice || g_stop_blocking_waits.load()) return s;
    context.segment->Heartbeat(context.worker_index);
  }
}

namespace {

bool HasDouble(const json::value& value) {
  if (value.is_double()) return true;
  if (const json::array* a = value.if_array()) return std::any_of(a->begin(), a->end(), HasDouble);
  if (const json::object* o = value.if_object()) {
    return std::any_of(o->begin(), o->end(), [](const auto& m) { return HasDouble(m.value()); });
  }
  return false;
}

template <typename Number>
void AppendChars(Number number, std::string* out) {
  char text[32];
  auto [end, ec] = std::to_chars(text, text + sizeof text, number);  // Shortest; always fits.
  out->append(text, end);
}

// The shortest text that reads back as `d` (as Python's repr and JavaScript print it), with ".0"
// on an integral value so it stays a float for the reader; NaN and infinities as Python's json.
void AppendDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append(std::isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    return;
  }
  size_t start = out->size();
  AppendChars(d, out);
  if (out->find_first_of(".e", start) == std::string::npos) out->append(".0");
}

// json::serialize's output except for doubles, which Boost.JSON 1.81 writes in its own
// scientific form ("0E0", "7.316522598266602E-1"): valid JSON, but not what clients print.
void AppendJson(const json::value& value, std::string* out) {
  switch (value.kind()) {
    case json::kind::double_:
      return AppendDouble(value.get_double(), out);
    case json::kind::int64:
      return AppendChars(value.get_int64(), out);
    case json::kind::uint64:
      return AppendChars(value.get_uint64(), out);
    case json::kind::array: {
      out->push_back('[');
      for (const json::value& element : value.get_array()) {
        if (out->back() != '[') out->push_back(',');
        AppendJson(element, out);
      }
      return out->push_back(']');
    }
    case json::kind::object: {
      out->push_back('{');
      for (const auto& member : value.get_object()) {
        if (out->back() != '{') out->push_back(',');
        out->append(json::serialize(member.key()));
        out->push_back(':');
        AppendJson(member.value(), out);
      }
      return out->push_back('}');
    }
    default:  // null, bool, string.
      out->append(json::serialize(value));
      return;
  }
}

}  // namespace

void SetJson(HttpResponse* response, const json::value& value, http::status status) {
  response->result(status);
  response->set(http::field::content_type, "application/json");
  std::string& body = response->body();
  if (!HasDouble(value)) {
    body = json::serialize(value);
    return;
  }
  body.clear();
  AppendJson(value, &body);
}

namespace {

template <typename Integer>
void SetJsonIntegerImpl(HttpResponse* response, std::string_view key, Integer value) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);  // Always fits.
  std::string& body = response->body();
  body.clear();
  body.reserve(key.size() + static_cast<size_t>(end - digits) + 5);
  body += "{\"";
  body += key;
  body += "\":";
  body.append(digits, end);
  body += '}';
  response->result(http::status::ok);
  response->set(http::field::content_type, "application/json");
}

}  // namespace

void SetJsonInteger(HttpResponse* response, std::string_view key, int64_t value) {
  SetJsonIntegerImpl(response, key, value);
}

void SetJsonInteger(HttpResponse* response, std::string_view key, uint64_t value) {
  SetJsonIntegerImpl(response, key, value);
}

void SetValue(HttpResponse* response, int64_t value) { SetJsonInteger(response, "value", value); }

void SetConflict(HttpResponse* response, const Status& conflict, std::string_view member,
                 json::value seen) {
  json::object error{{"code", conflict.CodeName()}, {"message", conflict.message()}};
  json::object body{{"error", std::move(error)}};
  body[member] = std::move(seen);
  SetJson(response, body, http::status::conflict);
}

}  // namespace shm::api

namespace shm {

void StopBlockingWaits() { api::g_stop_blocking_waits.store(true); }

}  // namespace shm
