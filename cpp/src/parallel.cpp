#include "fastvi/parallel.hpp"

#include <pthread.h>

#include <atomic>

namespace fastvi {
namespace {

std::atomic<bool> team_started{false};
std::atomic<bool> serial_child{false};

// In the child, right after fork(): its thread pool (if any) is unusable. A grandchild inherits
// serial_child, as it should: its parent's pool was never usable either.
void after_fork_in_child() {
  if (team_started.load(std::memory_order_relaxed)) serial_child.store(true, std::memory_order_relaxed);
}

// Registered once, the first time a team is about to start (a process that never starts one needs
// no handler). pthread_atfork handlers run for every fork(), os.fork() included.
void register_fork_handler() {
  static const bool registered = [] { return pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0; }();
  (void)registered;
}

}  // namespace

void note_parallel_team() {
  if (!team_started.load(std::memory_order_relaxed)) {
    register_fork_handler();
    team_started.store(true, std::memory_order_relaxed);
  }
}

bool forked_after_parallel_team() { return serial_child.load(std::memory_order_relaxed); }

int usable_threads(int requested) {
  if (requested < 1 || forked_after_parallel_team()) return 1;
  return requested;
}

}  // namespace fastvi
