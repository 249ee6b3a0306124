// OpenMP and fork(): when a kernel may use more than one thread.
//
// libgomp keeps a pool of worker threads once a parallel region has run. fork() copies only the
// calling thread, so in a child forked after that the pool's bookkeeping describes threads that do
// not exist, and the child's first parallel region with more than one thread waits for them
// forever (a multiprocessing.Pool with the default "fork" start method after a parallel fit, say).
// fastvi therefore notes when it starts a team, and a child forked after that runs serially:
// usable_threads() returns 1 there. Results do not change (they never depend on the thread count).
#pragma once

namespace fastvi {

// Call right before entering a parallel region with more than one thread.
void note_parallel_team();

// True in a process forked after this process (or an ancestor) ran a parallel team.
bool forked_after_parallel_team();

// `requested` threads (at least 1), or 1 where forked_after_parallel_team().
int usable_threads(int requested);

}  // namespace fastvi
