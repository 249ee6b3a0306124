#include "fastvi/blas.hpp"

#include <atomic>

namespace fastvi::blas {
namespace {
std::atomic<Dgemm> g_dgemm{nullptr};
}  // namespace

void set_dgemm(Dgemm fn) noexcept { g_dgemm.store(fn, std::memory_order_release); }

Dgemm current_dgemm() noexcept { return g_dgemm.load(std::memory_order_acquire); }

}  // namespace fastvi::blas
