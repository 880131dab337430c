// FunctionRef<R(Args...)>: a non-owning reference to a callable, for a callback that runs before
// the call taking it returns (Dict::Update's, Keyspace::WithList's).
//
// Two words (the callable's address and a function pointer that calls it): built without an
// allocation or a copy of the callable, called with one indirect call. std::function, what these
// callbacks were, costs a type-erased copy and a second indirection per call, on paths that run
// once per Redis command. A FunctionRef must not outlive the callable it refers to: never store
// one; take it by value as a parameter and call it before returning.
#ifndef SHM_FUNCTION_REF_H_
#define SHM_FUNCTION_REF_H_

#include <memory>
#include <type_traits>
#include <utility>

namespace shm {

template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename Fn>
  requires(!std::is_same_v<std::remove_cvref_t<Fn>, FunctionRef> &&
           std::is_invocable_r_v<R, Fn&, Args...>) FunctionRef(Fn&& fn)
  noexcept  // NOLINT(google-explicit-constructor): a parameter type.
      : callable_(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        call_([](void* callable, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<Fn>*>(callable))(
              std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(callable_, std::forward<Args>(args)...); }

 private:
  void* callable_;
  R (*call_)(void*, Args...);
};

}  // namespace shm

#endif  // SHM_FUNCTION_REF_H_
