#include "common/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace shm::test {
namespace {

constexpr size_t kMaxHeadBytes = 64 << 10;
constexpr size_t kMaxBodyBytes = size_t{64} << 20;

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string Trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t");
  size_t end = text.find_last_not_of(" \t\r");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

Status Errno(const std::string& what) { return Status::Internal(what + ": " + strerror(errno)); }

}  // namespace

std::string HttpResult::Header(const std::string& name) const {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? "" : it->second;
}

HttpClient::HttpClient(uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout) {}

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buffer_.clear();
}

Status HttpClient::Connect() {
  Close();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Errno("socket");
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port_);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    Status s = Errno("connect to 127.0.0.1:" + std::to_string(port_));
    Close();
    return s;
  }
  return Status::OK();
}

Status HttpClient::SendAll(const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("send");
    sent += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status HttpClient::Fill(bool* eof) {
  char chunk[16384];
  while (true) {
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return errno == EAGAIN ? Status::Timeout("no answer within the timeout") : Errno("recv");
    }
    if (n == 0) {
      *eof = true;
      return Status::Internal("connection closed by the server");
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return Status::OK();
  }
}

Status HttpClient::ReadExactly(size_t length, std::string* out) {
  bool eof = false;
  while (buffer_.size() < length) SHM_RETURN_IF_ERROR(Fill(&eof));
  out->append(buffer_, 0, length);
  buffer_.erase(0, length);
  return Status::OK();
}

Status HttpClient::ReadHead(HttpResult* result) {
  bool eof = false;
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (buffer_.size() > kMaxHeadBytes) return Status::Internal("response head too large");
    SHM_RETURN_IF_ERROR(Fill(&eof));
  }
  std::string head = buffer_.substr(0, end + 2);
  buffer_.erase(0, end + 4);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
    return Status::Internal("bad status line: " + status_line);
  }
  result->status = std::atoi(status_line.c_str() + 9);
  for (size_t pos = line_end + 2; pos < head.size();) {
    size_t next = head.find("\r\n", pos);
    std::string line = head.substr(pos, next - pos);
    pos = next + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) return Status::Internal("bad header line: " + line);
    result->headers[Lower(line.substr(0, colon))] = Trim(line.substr(colon + 1));
  }
  return Status::OK();
}

Status HttpClient::ReadChunked(std::string* body) {
  while (true) {
    bool eof = false;
    size_t line_end;
    while ((line_end = buffer_.find("\r\n")) == std::string::npos) SHM_RETURN_IF_ERROR(Fill(&eof));
    size_t size = std::strtoul(buffer_.substr(0, line_end).c_str(), nullptr, 16);
    buffer_.erase(0, line_end + 2);
    if (body->size() + size > kMaxBodyBytes) return Status::Internal("response body too large");
    if (size == 0) {  // Trailers, if any, up to the blank line.
      while (true) {
        while ((line_end = buffer_.find("\r\n")) == std::string::npos) {
          SHM_RETURN_IF_ERROR(Fill(&eof));
        }
        buffer_.erase(0, line_end + 2);
        if (line_end == 0) return Status::OK();
      }
    }
    SHM_RETURN_IF_ERROR(ReadExactly(size, body));
    std::string crlf;
    SHM_RETURN_IF_ERROR(ReadExactly(2, &crlf));
  }
}

Status HttpClient::ReadResponse(HttpResult* result, bool* closed_before_answer) {
  *result = HttpResult();
  Status s = ReadHead(result);
  if (!s.ok()) {
    *closed_before_answer = buffer_.empty() && !s.IsTimeout();
    return s;
  }
  if (Lower(result->Header("transfer-encoding")).find("chunked") != std::string::npos) {
    SHM_RETURN_IF_ERROR(ReadChunked(&result->body));
  } else if (std::string length = result->Header("content-length"); !length.empty()) {
    size_t size = std::strtoull(length.c_str(), nullptr, 10);
    if (size > kMaxBodyBytes) return Status::Internal("response body too large");
    SHM_RETURN_IF_ERROR(ReadExactly(size, &result->body));
  } else if (result->status != 204 && result->status != 304) {
    bool eof = false;  // Body runs to the end of the connection.
    while (!eof && buffer_.size() <= kMaxBodyBytes) Fill(&eof);
    result->body = std::move(buffer_);
    buffer_.clear();
  }
  if (Lower(result->Header("connection")) == "close") Close();
  return Status::OK();
}

Status HttpClient::Request(const std::string& method, const std::string& target,
                           const std::string& body, HttpResult* result,
                           const std::map<std::string, std::string>& headers) {
  std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) + "\r\n";
  for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n" + body;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = connected();
    if (!reused) SHM_RETURN_IF_ERROR(Connect());
    bool closed_before_answer = false;
    Status s = SendAll(request);
    if (s.ok()) {
      s = ReadResponse(result, &closed_before_answer);
    } else {
      closed_before_answer = true;
    }
    if (s.ok()) return s;
    Close();
    // A kept-alive connection the server closed while idle: the request never ran, resend it.
    if (!resend_unanswered_ || !reused || !closed_before_answer) return s;
    ++resends_;
  }
  return Status::Internal("unreachable");
}

}  // namespace shm::test
