#include "fastvi/format.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace fastvi {

std::string format_number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, x);  // shortest round trip
  return std::string(buffer, result.ptr);
}

std::string format_number(double x, int digits) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.*g", digits, x);
  return buffer;
}

std::string format_shape(const std::vector<Index>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  out += shape.size() == 1 ? ",)" : ")";
  return out;
}

}  // namespace fastvi
