// wake_driver: what one sleep in epoll_wait(2) costs the process that sleeps, on this machine.
//
// Two processes on a socket pair, each pinned to its own CPU. The server loops on epoll_wait,
// read of one byte, write of one byte; the client writes a byte, spins SPIN_US (so that the
// server has run out of work and sleeps), then reads the answer. The server's CPU time per
// round (getrusage: user + system) is the price of one wake-up plus three small system calls;
// with --poll the server never sleeps (epoll_wait with timeout 0 in a loop) and the same rounds
// cost the system calls and the polls only. On a VM whose wake-ups are expensive, the first
// figure is several times the second: that is why a server that sleeps once per command pays
// more CPU per command than one that finds several commands per wake-up (bench/RESULTS.md,
// "Redis protocol", branch respcpu4).
//
//   build/bench/wake_driver [--poll] [SPIN_US] [ROUNDS]
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

int Serve(int fd, bool poll, int rounds) {
  Pin(0);
  const int epoll = epoll_create1(0);
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  event.data.fd = fd;
  epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
  long polls = 0;
  char byte = 0;
  for (int i = 0; i < rounds; ++i) {
    epoll_event ready[8];
    while (epoll_wait(epoll, ready, 8, poll ? 0 : -1) == 0) ++polls;
    if (read(fd, &byte, 1) != 1 || write(fd, &byte, 1) != 1) return 1;
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "%s: server CPU %.2f us per round, %.2f voluntary context switches, %.1f empty polls\n",
      poll ? "poll" : "sleep", CpuSeconds() * 1e6 / rounds,
      static_cast<double>(usage.ru_nvcsw) / rounds, static_cast<double>(polls) / rounds);
  std::fflush(stdout);  // The child ends with _exit, which does not flush.
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int arg = 1;
  const bool poll = argc > arg && std::strcmp(argv[arg], "--poll") == 0;
  if (poll) ++arg;
  const auto spin = std::chrono::microseconds(argc > arg ? std::atoi(argv[arg]) : 30);
  const int rounds = argc > arg + 1 ? std::atoi(argv[arg + 1]) : 100000;
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 1;
  const pid_t server = fork();
  if (server == 0) _exit(Serve(pair[1], poll, rounds));
  Pin(1);
  char byte = 'x';
  for (int i = 0; i < rounds; ++i) {
    if (write(pair[0], &byte, 1) != 1) return 1;
    const auto until = std::chrono::steady_clock::now() + spin;
    while (std::chrono::steady_clock::now() < until) {
    }
    if (read(pair[0], &byte, 1) != 1) return 1;
  }
  int status = 0;
  waitpid(server, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
