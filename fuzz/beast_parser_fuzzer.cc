// Fuzzes the worker's request parsing: raw bytes into Beast's request_parser with the worker's
// default limits (WorkerOptions: 1 MiB body, 8 KiB header), fed in pieces as a socket would
// deliver them. A request that parses whole then runs through the built-in API like the worker
// would run it, and its answer must pass CheckResponse.
//
// The first input byte picks the piece size (1..256), so dribbled and whole reads both happen.
#include <algorithm>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_util.h"
#include "shm/worker.h"

namespace {

namespace http = shm::http;
namespace net = boost::asio;

// Feeds `bytes` to `parser` at most `piece` bytes at a time, keeping unconsumed bytes as a
// socket read loop would. Returns the error that stopped it (need_more at the end of input).
boost::beast::error_code Feed(std::string_view bytes, size_t piece,
                              http::request_parser<http::string_body>* parser) {
  boost::beast::flat_buffer buffer;
  boost::beast::error_code ec;
  while (!parser->is_done()) {
    size_t take = std::min(piece, bytes.size());
    if (take == 0) return http::error::need_more;
    auto space = buffer.prepare(take);
    std::memcpy(space.data(), bytes.data(), take);
    buffer.commit(take);
    bytes.remove_prefix(take);
    while (buffer.size() > 0 && !parser->is_done()) {
      size_t used = parser->put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return ec;
    }
  }
  return ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shm::fuzz::ApiUnderTest* api = new shm::fuzz::ApiUnderTest();
  if (size == 0) return 0;
  size_t piece = size_t{data[0]} + 1;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  const shm::WorkerOptions limits;
  http::request_parser<http::string_body> parser;
  parser.body_limit(limits.max_body_bytes);
  parser.header_limit(static_cast<uint32_t>(limits.max_header_bytes));
  boost::beast::error_code ec = Feed(bytes, piece, &parser);
  if (ec || !parser.is_done()) return 0;

  api->Run(parser.get());
  shm::fuzz::DeleteAllObjects(api->segment.get());
  return 0;
}
