"""Run ``cliplens bench`` with its atomic writes opened up as kill windows (test helper, never shipped).

``python fault_launcher.py WINDOW K -- BENCH ARGS...`` runs the bench command
in this process with :func:`cliplens.benchmarks.results.files.write_atomic` (the JSON
writer) and the examples' npz writer wrapped: the K-th (1-based) write of kind
WINDOW prints ``FAULT-WINDOW`` on stderr and then sleeps, so the test kills
the process with SIGKILL at that moment:

* ``json`` / ``npz``: half of the file's bytes are in its hidden temporary file, the rest never comes;
* ``between``: right after the K-th JSON is in place, before the next pair starts;
* ``none``: no window (a plain run).

Nothing in cliplens reads an environment variable or hook for this.
"""

from __future__ import annotations

import io
import sys
import time


def main() -> int:
    window, k = sys.argv[1], int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1 :]
    from cliplens.benchmarks.results import examples, files
    from cliplens.cli.main import main as cliplens_main

    original = files.write_atomic
    counts = {"json": 0, "npz": 0}

    def pause() -> None:
        print("FAULT-WINDOW", file=sys.stderr, flush=True)
        time.sleep(120)

    def wrapped(path, write):
        kind = "npz" if str(path).endswith(".npz") else "json"
        counts[kind] += 1
        if window == kind and counts[kind] == k:

            def half_then_stall(handle):
                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                handle.write(data[: len(data) // 2])
                handle.flush()
                pause()
                handle.write(data[len(data) // 2 :])

            return original(path, half_then_stall)
        done = original(path, write)
        if window == "between" and kind == "json" and counts["json"] == k:
            pause()
        return done

    files.write_atomic = wrapped
    examples.write_atomic = wrapped
    return cliplens_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
