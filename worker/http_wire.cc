#include "shm/http_wire.h"

#include <sstream>

namespace shm {

void AppendResponseHead(const HttpResponse& response, std::string* out) {
  unsigned version = response.version();
  unsigned code = response.result_int();
  std::string_view reason = response.reason();
  size_t size = 15 + reason.size();
  for (const auto& field : response) size += field.name_string().size() + field.value().size() + 4;
  out->reserve(out->size() + size);
  // "HTTP/X.Y ### <reason>\r\n", as Beast's fields writer lays it out.
  char status_line[13] = {'H', 'T', 'T', 'P', '/', '0', '.', '0', ' ', '0', '0', '0', ' '};
  status_line[5] = static_cast<char>('0' + version / 10 % 10);
  status_line[7] = static_cast<char>('0' + version % 10);
  status_line[9] = static_cast<char>('0' + code / 100 % 10);
  status_line[10] = static_cast<char>('0' + code / 10 % 10);
  status_line[11] = static_cast<char>('0' + code % 10);
  out->append(status_line, sizeof status_line);
  out->append(reason);
  out->append("\r\n");
  for (const auto& field : response) {
    out->append(field.name_string());
    out->append(": ");
    out->append(field.value());
    out->append("\r\n");
  }
  out->append("\r\n");
}

void SerializeResponse(const HttpResponse& response, std::string* out) {
  out->clear();
  if (response.chunked()) {
    std::ostringstream stream;
    stream << response;
    *out = std::move(stream).str();
    return;
  }
  out->reserve(response.body().size() + 256);
  AppendResponseHead(response, out);
  out->append(response.body());
}

}  // namespace shm
