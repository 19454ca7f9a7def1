"""What a process costs, read from outside through /proc (Linux): CPU time, bytes written, resident memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """Counters of one process (all of its threads) at one moment."""

    cpu_seconds: float
    # Bytes the process caused to be written to storage (/proc/<pid>/io write_bytes).
    storage_bytes: int
    # Bytes handed to write(2) and friends, sockets included (/proc/<pid>/io wchar), and how many such calls.
    written_bytes: int
    write_calls: int
    rss_bytes: int

    def minus(self, earlier: ProcessSample) -> ProcessSample:
        return ProcessSample(
            cpu_seconds=self.cpu_seconds - earlier.cpu_seconds,
            storage_bytes=self.storage_bytes - earlier.storage_bytes,
            written_bytes=self.written_bytes - earlier.written_bytes,
            write_calls=self.write_calls - earlier.write_calls,
            rss_bytes=self.rss_bytes,
        )


def sample(pid: int) -> ProcessSample:
    proc = Path("/proc") / str(pid)
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    io = dict(line.split(": ", 1) for line in (proc / "io").read_text().splitlines())
    rss_kib = 0
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return ProcessSample(
        cpu_seconds=(user_ticks + system_ticks) / _TICKS_PER_SECOND,
        storage_bytes=int(io["write_bytes"]),
        written_bytes=int(io["wchar"]),
        write_calls=int(io["syscw"]),
        rss_bytes=rss_kib * 1024,
    )
