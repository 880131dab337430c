// HttpClient: a small blocking HTTP/1.1 client for the tests, over TCP to 127.0.0.1:port.
//
// One connection, kept alive between requests and reopened when the server closed it. Understands
// Content-Length and chunked bodies. Every socket operation is bounded by the timeout, so a hung
// server fails a test instead of hanging it. Not thread-safe: use one client per thread.
#ifndef SHM_TESTS_COMMON_HTTP_CLIENT_H_
#define SHM_TESTS_COMMON_HTTP_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "shm/status.h"

namespace shm::test {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // Names lower-cased.
  std::string body;
  // The value of a header ("" when absent); `name` in any case.
  std::string Header(const std::string& name) const;
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole response. With set_resend_unanswered(true), a request
  // on a kept-alive connection that the server closed without answering is sent once more on a
  // new connection (what browsers do; it may run twice if the server ran it and then dropped the
  // answer). Without it, such a close is an error.
  Status Request(const std::string& method, const std::string& target, const std::string& body,
                 HttpResult* result, const std::map<std::string, std::string>& headers = {});
  Status Get(const std::string& target, HttpResult* result) {
    return Request("GET", target, "", result);
  }
  Status Post(const std::string& target, const std::string& body, HttpResult* result) {
    return Request("POST", target, body, result);
  }
  // Drops the connection (the next request opens a new one).
  void Close();
  bool connected() const { return fd_ >= 0; }
  void set_resend_unanswered(bool resend) { resend_unanswered_ = resend; }
  // Requests sent a second time because a kept-alive connection closed before any answer.
  int resends() const { return resends_; }

 private:
  Status Connect();
  Status SendAll(const std::string& data);
  // Reads more bytes into buffer_; Internal on EOF/timeout. `eof` tells EOF apart.
  Status Fill(bool* eof);
  Status ReadResponse(HttpResult* result, bool* closed_before_answer);
  Status ReadHead(HttpResult* result);
  Status ReadChunked(std::string* body);
  Status ReadExactly(size_t length, std::string* out);

  uint16_t port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buffer_;  // Received, not yet consumed.
  bool resend_unanswered_ = false;
  int resends_ = 0;
};

}  // namespace shm::test

#endif  // SHM_TESTS_COMMON_HTTP_CLIENT_H_
