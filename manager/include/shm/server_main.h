// ServerMain: the whole `shmstate` program (CLI, manager, workers) behind one call.
//
// An application links shm_manager, registers its own routes next to the built-in API and calls
// ServerMain from main(): it gets the same command line, lock file, segment, forked Beast
// workers, supervision and clean shutdown as the stock binary. `add_routes` runs once, in the
// manager before any fork, so every worker serves the same routes. Call it from a process that
// has no threads yet (workers are forked) and only once.
#ifndef SHM_SERVER_MAIN_H_
#define SHM_SERVER_MAIN_H_

#include <functional>

#include "shm/router.h"

namespace shm {

// Returns the process exit code: 0 after a clean stop (SIGTERM/SIGINT) or --help, 2 for bad
// command-line input, 1 when the server cannot start (busy port, live instance of the same name,
// too little /dev/shm...). Startup errors are one line on stderr and leave nothing behind.
int ServerMain(int argc, char** argv, const std::function<void(Router*)>& add_routes = nullptr);

}  // namespace shm

#endif  // SHM_SERVER_MAIN_H_
