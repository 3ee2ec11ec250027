#!/usr/bin/env python3
"""Run one command, time it, and watch the temporary files it holds.

usage: measure.py --tmpdir DIR --out FILE [--stdout FILE] [--stderr FILE] -- COMMAND...

Writes one JSON object to FILE:
  seconds          wall-clock time of COMMAND (monotonic clock)
  exit             its exit status
  temp_peak_bytes  the largest total size, over all samples, of the files under DIR that the
                   process holds open (read through /proc/<pid>/fd, so unlinked temporary files
                   count), plus the apparent size of whatever is left in DIR itself
  samples          how many samples were taken (every 50 ms)

Only COMMAND's own process is watched, not its children: kindload's children are the
engine and `docker exec` clients, which write no temporary files under DIR.
"""
import json
import os
import subprocess
import sys
import time


def held_bytes(pid, tmpdir):
    total = 0
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return 0
    seen = set()
    for fd in fds:
        path = os.path.join(fd_dir, fd)
        try:
            target = os.readlink(path)
        except OSError:
            continue
        if not target.startswith(tmpdir + "/"):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_size
    return total


def dir_bytes(tmpdir):
    total = 0
    for root, _dirs, files in os.walk(tmpdir):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def main(argv):
    args = {"--stdout": None, "--stderr": None}
    i = 0
    while i < len(argv) and argv[i] != "--":
        args[argv[i]] = argv[i + 1]
        i += 2
    command = argv[i + 1:]
    tmpdir = os.path.realpath(args["--tmpdir"])
    out = open(args["--stdout"], "wb") if args["--stdout"] else subprocess.DEVNULL
    err = open(args["--stderr"], "wb") if args["--stderr"] else subprocess.DEVNULL
    env = dict(os.environ, TMPDIR=tmpdir)
    peak = 0
    samples = 0
    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    while proc.poll() is None:
        peak = max(peak, held_bytes(proc.pid, tmpdir) + dir_bytes(tmpdir))
        samples += 1
        time.sleep(0.05)
    seconds = time.monotonic() - start
    with open(args["--out"], "w") as f:
        json.dump({"seconds": round(seconds, 4), "exit": proc.returncode,
                   "temp_peak_bytes": peak, "samples": samples}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
