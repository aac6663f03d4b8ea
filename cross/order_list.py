"""cross/order_list.py CALLGRIND_DIR MAP LIST (run by cross/order.sh)

Writes LIST: the functions of the polegate binary that executed in the callgrind outputs
of CALLGRIND_DIR (`--dump-instr=yes`), by instructions executed in them, most first. The
binary is stripped; each executed instruction's address is looked up in MAP, the linker's
map of that build, which gives the function whose section holds it.
"""

import bisect
import collections
import os
import re
import sys

SECTION = re.compile(
    r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+"
    r".*\(\.text\.(?:unlikely\.|hot\.|startup\.)?(\S+)\)$"
)
OBJECT = re.compile(r"^(c?ob)=\((\d+)\)(?: (.*))?$")


class Sections:
    """The `.text[.unlikely].<function>` input sections of a map, by address."""

    def __init__(self, mapfile):
        found = []
        with open(mapfile) as f:
            for line in f:
                m = SECTION.match(line)
                if m and int(m.group(2), 16):
                    found.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
        found.sort()
        self.found = found
        self.starts = [s[0] for s in found]

    def owner(self, addr):
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.found[i][0] + self.found[i][1]:
            return self.found[i][2]
        return None


def position(field, last):
    """An instruction address: absolute (0x...), relative (+n / -n) or the same (*)."""
    if field[:1] in "+-":
        return last + int(field)
    if field == "*":
        return last
    return int(field, 16)


def costs(path, sections):
    """Instructions executed per function of the polegate object in one output."""
    cost = collections.Counter()
    objects = {}
    obj = None
    call = False
    last = 0
    with open(path) as f:
        for line in f:
            m = OBJECT.match(line.rstrip("\n"))
            if m:
                kind, ident, text = m.groups()
                if text:
                    objects[ident] = text
                if kind == "ob":
                    obj = objects.get(ident)
                continue
            if line.startswith("calls="):
                call = True  # the next cost line is the call's inclusive cost
                continue
            if not (line[:1].isdigit() or line[:1] in "+-*"):
                continue
            parts = line.split()
            last = position(parts[0], last)
            if obj and obj.endswith("/polegate"):
                name = sections.owner(last)
                if name:
                    cost[name] += 0 if call or len(parts) < 2 else int(parts[1])
            call = False
    return cost


def main():
    outdir, mapfile, dest = sys.argv[1:4]
    sections = Sections(mapfile)
    cost = collections.Counter()
    for name in sorted(os.listdir(outdir)):
        cost.update(costs(os.path.join(outdir, name), sections))
    names = sorted(cost, key=lambda f: (-cost[f], f))
    with open(dest, "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"cross/order.sh: {len(names)} functions written to {dest} "
          f"({len(sections.found)} functions in the map)")


if __name__ == "__main__":
    main()
