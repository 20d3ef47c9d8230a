// Typed errors thrown by the rotorquant library. Only the CLI turns them into exit codes.
#pragma once

#include <stdexcept>
#include <string>

namespace rq {

/// Base of every error the library throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A caller passed an impossible argument: dim 0, unsupported bits, wrong buffer size, bad flag.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A format name that is not in the format table.
class UnknownFormat : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

/// Input data the codecs refuse: NaN or Inf components, norms that do not fit the stored type.
class InvalidInput : public Error {
 public:
  using Error::Error;
};

/// A file (model, dump, calibration) is malformed, truncated or of an unsupported version.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// An operating-system level failure: cannot open, map or read a file.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A request that exceeds a resource limit: cache full, context too long.
class CapacityError : public Error {
 public:
  using Error::Error;
};

}  // namespace rq
