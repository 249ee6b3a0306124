// How numbers and shapes are spelled in messages (errors, fit reports), in one place so that every
// message reads the same way.
#pragma once

#include <string>
#include <vector>

#include "fastvi/types.hpp"

namespace fastvi {

// x as Python's repr() spells it: the shortest text that reads back as the same double ("0.1",
// "1e-05", "inf", "nan"), so that a value quoted in an error is the value that was passed.
std::string format_number(double x);

// x to `digits` significant digits (printf's %g): for measured quantities in reports (ELBO
// changes, step sizes, error estimates), where more digits would only be noise.
std::string format_number(double x, int digits);

// A shape as numpy spells it: (), (5,), (3, 4).
std::string format_shape(const std::vector<Index>& shape);

}  // namespace fastvi
