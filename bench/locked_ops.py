#!/usr/bin/env python3
"""bench/locked_ops.py: atomic read-modify-writes and full fences per command, by function.

Instructions counted by callgrind are all alike to it, but a lock-prefixed one (or an xchg with
memory, a sequentially consistent store) drains the store buffer: tens of cycles each that an
instruction count does not show. This reads a callgrind profile made with --dump-instr=yes,
disassembles every object it names (objdump), and prints how often each such instruction ran,
per command:

    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=/tmp/cg.set \\
        --collect-atstart=no --toggle-collect='*MeasuredPass*' build/bench/resp_exec set 100000
    bench/locked_ops.py /tmp/cg.set 100000
"""
import collections
import re
import subprocess
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: locked_ops.py CALLGRIND_OUT COMMANDS")
    profile, commands = sys.argv[1], int(sys.argv[2])
    objects, functions = {}, {}
    executed = collections.Counter()  # (object id, address) -> times run
    function_of = {}
    current_object = current_function = None
    last = [0, 0]  # Callgrind compresses positions relative to the previous line's.
    after_call = False

    def position(token, i):
        if token == "*":
            return last[i]
        if token[0] in "+-":
            return last[i] + int(token, 0)
        return int(token, 0)

    for line in open(profile):
        line = line.rstrip("\n")
        # "ob=(id) name" / "fn=(id) name" switch to it; "cob=" / "cfn=" only name a callee.
        m = re.match(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            callee, kind, ident, name = m.groups()
            if name:
                (objects if kind == "ob" else functions)[ident] = name
            if not callee and kind == "ob":
                current_object = ident
            elif not callee:
                current_function = ident
            continue
        if line.startswith("calls="):
            after_call = True  # The next cost line is the call's inclusive cost.
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        tokens = line.split()
        last[0], last[1] = position(tokens[0], 0), position(tokens[1], 1)
        if after_call:
            after_call = False
            continue
        if len(tokens) >= 3:
            executed[(current_object, last[0])] += int(tokens[2])
            function_of[(current_object, last[0])] = current_function

    by_object = collections.defaultdict(dict)
    for (obj, address), count in executed.items():
        by_object[obj][address] = count
    totals = collections.Counter()
    for obj, addresses in by_object.items():
        path = objects.get(obj, "")
        if not path.startswith("/"):
            continue
        listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                                 capture_output=True, text=True, check=True).stdout
        for row in listing.splitlines():
            m = re.match(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", row)
            if not m or int(m.group(1), 16) not in addresses:
                continue
            mnemonic, operands = m.group(2), m.group(3)
            # xchg with memory is locked implicitly; `xchg %ax,%ax` is a nop.
            locked = mnemonic == "lock" or mnemonic.startswith("mfence") or (
                mnemonic.startswith("xchg") and "(" in operands)
            if locked:
                address = int(m.group(1), 16)
                name = functions.get(function_of[(obj, address)], "?")
                totals[(name[:100], (mnemonic + " " + operands.split(",")[0]).strip())] += \
                    addresses[address]
    total = 0
    for (name, instruction), count in totals.most_common():
        print("%7.2f  %-24s %s" % (count / commands, instruction, name))
        total += count
    print("%7.2f  per command in all" % (total / commands))


if __name__ == "__main__":
    main()
