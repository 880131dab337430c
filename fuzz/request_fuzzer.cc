// Fuzzes the built-in REST API through Router::Handle, the worker's request -> response function.
//
// An input is up to kMaxRequests requests separated by "\n===\n", each written as
//   METHOD TARGET\n
//   Header: value\n ... (up to kMaxHeaders)
//   \n
//   body bytes
// They run in order on one scratch segment (so a create can precede a read of the same name),
// and every answer must pass CheckResponse: no crash, no exception, no 5xx but 503/507. The
// registry is emptied after each input.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "fuzz_util.h"

namespace {

using shm::HttpRequest;
namespace http = shm::http;

constexpr size_t kMaxRequests = 4;
constexpr size_t kMaxHeaders = 8;
constexpr std::string_view kRequestSeparator = "\n===\n";

// Pops the text up to `delimiter` (or all of it) from the front of `in`.
std::string_view TakeUntil(std::string_view* in, std::string_view delimiter) {
  size_t at = in->find(delimiter);
  std::string_view head = in->substr(0, at);
  in->remove_prefix(at == std::string_view::npos ? in->size() : at + delimiter.size());
  return head;
}

// Builds one request from its text form. False when Beast itself refuses a field (such a request
// could never reach the router).
bool BuildRequest(std::string_view text, HttpRequest* request) {
  std::string_view line = TakeUntil(&text, "\n");
  std::string_view method = TakeUntil(&line, " ");
  if (method.empty() || line.empty()) return false;
  try {
    request->version(11);
    request->method_string(method);
    request->target(line);
    for (size_t i = 0; i < kMaxHeaders && !text.empty(); ++i) {
      std::string_view header = TakeUntil(&text, "\n");
      if (header.empty()) break;
      std::string_view name = TakeUntil(&header, ":");
      while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
      if (name.empty()) continue;
      // Beast 1.81's iequals reads one byte past the name when two names differ only in case;
      // its parser always has the ':' there, so give the name the same tail.
      std::string name_with_colon = std::string(name) + ":";
      request->insert(std::string_view(name_with_colon.data(), name.size()), header);
    }
    request->body() = std::string(text);
    request->prepare_payload();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shm::fuzz::ApiUnderTest* api = new shm::fuzz::ApiUnderTest();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (size_t i = 0; i < kMaxRequests && !in.empty(); ++i) {
    HttpRequest request;
    if (!BuildRequest(TakeUntil(&in, kRequestSeparator), &request)) continue;
    api->Run(request);
  }
  shm::fuzz::DeleteAllObjects(api->segment.get());
  return 0;
}
