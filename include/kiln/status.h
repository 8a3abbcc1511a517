// Errors are values: every fallible public call returns Status or Result<T>.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kiln {

/// Broad class of an error; the message says the specifics.
enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,   ///< caller passed something malformed (shape, name, dtype)
  kNotFound,          ///< a named tensor, file or input does not exist
  kUnsupported,       ///< valid request kiln cannot serve (op, dtype, attribute)
  kInvalidModel,      ///< the model or engine file itself is malformed
  kVersionMismatch,   ///< engine built by another kiln or format version
  kDeviceMismatch,    ///< engine built for another device
  kOutOfRange,        ///< shape outside an optimization profile
  kOutOfMemory,       ///< allocation failed
  kIo,                ///< reading or writing a file failed
  kInternal,          ///< a bug in kiln
};

/// Name of an ErrorCode, e.g. "invalid model".
const char* error_code_name(ErrorCode code);

/// Success, or an error code with a human-readable message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  /// The success value.
  static Status ok_status() { return Status(); }
  /// True on success.
  bool ok() const { return code_ == ErrorCode::kOk; }
  /// Error class (kOk on success).
  ErrorCode code() const { return code_; }
  /// The message; empty on success.
  const std::string& message() const { return message_; }
  /// "invalid model: <message>" style text.
  std::string to_string() const;
  /// Returns a copy with `context` prefixed to the message ("context: message").
  Status with_context(const std::string& context) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

/// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status status) : v_(std::move(status)) {}
  /// True when a value is held.
  bool ok() const { return v_.index() == 0; }
  /// The held value; only valid when ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  /// The error; Status::ok_status() when a value is held.
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kiln

#define KILN_CONCAT_INNER_(a, b) a##b
#define KILN_CONCAT_(a, b) KILN_CONCAT_INNER_(a, b)

/// Returns the Status from the enclosing function if `expr` failed.
#define KILN_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::kiln::Status kiln_status_ = (expr);           \
    if (!kiln_status_.ok()) return kiln_status_;    \
  } while (0)

#define KILN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

/// `KILN_ASSIGN_OR_RETURN(auto x, f());` binds x or returns f()'s error.
#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_CONCAT_(kiln_result_, __LINE__), lhs, expr)
