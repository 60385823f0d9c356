// o1search — error types and checks shared by the native core.
//
// Three checks, all reporting file:line:
//   O1_CHECK(cond, Exc) << "msg"   validates user input; throws Exc (std::invalid_argument →
//                                  ValueError, std::out_of_range → IndexError, o1search::Error
//                                  subclasses → the matching Python exception).
//   O1_ICHECK(cond) << "msg"       an internal invariant; throws o1search::InternalError.
//   O1_DCHECK(cond) << "msg"       like O1_ICHECK, compiled out when NDEBUG is defined.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace o1search {

/// Root of every o1search-specific error (Python: o1search.O1SearchError).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The page pool cannot satisfy an allocation even after evicting everything evictable
/// (Python: o1search.OutOfPagesError).
class OutOfPagesError : public Error {
 public:
  using Error::Error;
};

/// A node handle that no longer refers to a live node (Python: o1search.StaleHandleError,
/// which is also a ValueError).
class StaleHandleError : public Error {
 public:
  using Error::Error;
};

/// An internal invariant was broken: a bug in o1search (Python: o1search.InternalError).
class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {

// Collects a message with operator<< and throws it when the full expression ends.
template <typename Exc>
class Thrower {
 public:
  Thrower(const char* file, int line, const char* cond) {
    os_ << file << ":" << line << ": ";
    (void)cond;
  }
  template <typename T>
  Thrower& operator<<(const T& v) {
    os_ << v;
    return *this;
  }
  [[noreturn]] ~Thrower() noexcept(false) { throw Exc(os_.str()); }

 private:
  std::ostringstream os_;
};

// Lets `cond ? (void)0 : Voidify() & Thrower(...) << msg` parse as one expression.
struct Voidify {
  template <typename T>
  void operator&(T&&) {}
};

inline const char* Basename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p; ++p)
    if (*p == '/' || *p == '\\') base = p + 1;
  return base;
}

}  // namespace detail
}  // namespace o1search

#define O1_CHECK(cond, Exc)                                                             \
  (cond) ? (void)0                                                                      \
         : ::o1search::detail::Voidify() &                                              \
               ::o1search::detail::Thrower<Exc>(::o1search::detail::Basename(__FILE__), \
                                                __LINE__, #cond)

#define O1_ICHECK(cond) \
  O1_CHECK(cond, ::o1search::InternalError) << "internal check failed: " #cond ": "

#ifdef NDEBUG
#define O1_DCHECK(cond) \
  while (false) O1_ICHECK(cond)
#else
#define O1_DCHECK(cond) O1_ICHECK(cond)
#endif
