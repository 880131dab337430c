// Status: the outcome of every public shmstate call.
//
// A Status is either OK or carries a code and a message. No exception crosses the public API of
// the library; every failure, including a full segment or a lock timeout, is an ordinary Status.
// Thread safety: a Status is a value; const methods may be called from many threads at once.
#ifndef SHM_STATUS_H_
#define SHM_STATUS_H_

#include <memory>
#include <string>
#include <string_view>

namespace shm {

class Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kNotFound,         // No such object, key or item.
    kAlreadyExists,    // Create or add of something that exists.
    kWrongType,        // The name belongs to an object of another kind.
    kInvalidArgument,  // Bad name, value, slice, option or request.
    kConflict,         // Compare-and-set or version mismatch; lease held by someone else.
    kOutOfSpace,       // Segment or object capacity exhausted.
    kTimeout,          // A lock could not be taken in time; retrying later may succeed.
    kPoisoned,         // The segment allocator is poisoned; the manager is rebuilding it.
    kInternal,         // A bug or an unexpected system error.
  };

  // OK status has a null state_, so success costs nothing.
  Status() noexcept = default;
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status AlreadyExists(std::string_view msg) { return Status(Code::kAlreadyExists, msg); }
  static Status WrongType(std::string_view msg) { return Status(Code::kWrongType, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status Conflict(std::string_view msg) { return Status(Code::kConflict, msg); }
  static Status OutOfSpace(std::string_view msg) { return Status(Code::kOutOfSpace, msg); }
  static Status Timeout(std::string_view msg) { return Status(Code::kTimeout, msg); }
  static Status Poisoned(std::string_view msg) { return Status(Code::kPoisoned, msg); }
  static Status Internal(std::string_view msg) { return Status(Code::kInternal, msg); }

  bool ok() const { return state_ == nullptr; }
  Code code() const { return state_ ? state_->code : Code::kOk; }
  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsAlreadyExists() const { return code() == Code::kAlreadyExists; }
  bool IsWrongType() const { return code() == Code::kWrongType; }
  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }
  bool IsConflict() const { return code() == Code::kConflict; }
  bool IsOutOfSpace() const { return code() == Code::kOutOfSpace; }
  bool IsTimeout() const { return code() == Code::kTimeout; }
  bool IsPoisoned() const { return code() == Code::kPoisoned; }
  bool IsInternal() const { return code() == Code::kInternal; }

  // The message alone, without the code name.
  std::string_view message() const { return state_ ? std::string_view(state_->message) : ""; }
  // Stable machine-readable code name, e.g. "NotFound".
  std::string_view CodeName() const;
  // "NotFound: no such counter" or "OK".
  std::string ToString() const;

 private:
  struct State {
    Code code;
    std::string message;
  };
  Status(Code code, std::string_view msg);

  std::unique_ptr<State> state_;
};

}  // namespace shm

// Returns from the enclosing function when `expr` is not OK. Each use declares its own variable,
// so a use inside a lambda inside another use shadows nothing (-Wshadow).
#define SHM_RETURN_IF_ERROR(expr) \
  SHM_RETURN_IF_ERROR_AS(expr, SHM_STATUS_CONCAT(shm_status_, __COUNTER__))
#define SHM_RETURN_IF_ERROR_AS(expr, var) \
  do {                                    \
    ::shm::Status var = (expr);           \
    if (!var.ok()) return var;            \
  } while (0)
#define SHM_STATUS_CONCAT(a, b) SHM_STATUS_CONCAT_INNER(a, b)
#define SHM_STATUS_CONCAT_INNER(a, b) a##b

#endif  // SHM_STATUS_H_
