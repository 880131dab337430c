#include "shm/status.h"

namespace shm {

Status::Status(Code code, std::string_view msg)
    : state_(std::make_unique<State>(State{code, std::string(msg)})) {}

Status::Status(const Status& other)
    : state_(other.state_ ? std::make_unique<State>(*other.state_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) state_ = other.state_ ? std::make_unique<State>(*other.state_) : nullptr;
  return *this;
}

std::string_view Status::CodeName() const {
  switch (code()) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      return "NotFound";
    case Code::kAlreadyExists:
      return "AlreadyExists";
    case Code::kWrongType:
      return "WrongType";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kConflict:
      return "Conflict";
    case Code::kOutOfSpace:
      return "OutOfSpace";
    case Code::kTimeout:
      return "Timeout";
    case Code::kPoisoned:
      return "Poisoned";
    case Code::kInternal:
      return "Internal";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName());
  out += ": ";
  out += state_->message;
  return out;
}

}  // namespace shm
