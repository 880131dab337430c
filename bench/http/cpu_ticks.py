#!/usr/bin/env python3
"""Prints the CPU time in microseconds (utime+stime from /proc/<pid>/stat) of the given pids and
all their live descendants: the server's own accounting, independent of wrk sharing the cores."""
import os
import sys

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])  # ppid, utime + stime.


def main():
    roots = {int(p) for p in sys.argv[1:]}
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = stat(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    chosen, grew = set(roots), True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in chosen and pid not in chosen:
                chosen.add(pid)
                grew = True
    print("%.0f" % (sum(table[p][1] for p in chosen if p in table) * TICK_US))


if __name__ == "__main__":
    main()
