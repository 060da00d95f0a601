"""Re-run every bad-input and fault case of issue 15 as a new user would, and judge each one.

    python scripts/bad_input_cases.py                 # all cases, a markdown table on stdout
    python scripts/bad_input_cases.py -k lock sigint  # only the cases whose id contains a word
    python scripts/bad_input_cases.py --list          # the case ids and what each expects

Every case runs ``python -m cliplens ...`` (or a few lines of the Python API) in a
subprocess with a short timeout, offline (``HF_HUB_OFFLINE=1``), in its own temporary
folder as the working directory, with this checkout first on ``PYTHONPATH``. Fake
plugins are real installed plugins: a ``*.dist-info`` with a ``cliplens`` entry point
in a folder added to ``PYTHONPATH``. The cases themselves are in
``scripts/bad_input_catalog.py``.

A case is **clean** when

* the exit status is the expected one;
* stderr holds no ``Traceback``;
* the problem is said in one line: for a case refused before work starts stderr is
  exactly one line (``cliplens: warning:`` lines aside), or that line plus a final hint;
  for a case found while running, the line naming it is there (progress lines of the run
  aside) and no line of it spills over;
* the case's own checks pass (the words the line must contain, and that no work was lost:
  results kept, other outputs written, nothing half-written left behind);
* no ``cliplens: warning:`` line unless the case is about one (a library's internal
  warning reaching the user is noise).

The table is ``case | expected | result`` and the last line gives the count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@dataclass
class Result:
    """What one subprocess did."""

    code: int | None
    out: str
    err: str
    seconds: float = 0.0


@dataclass
class Case:
    """One bad-input or fault case.

    Attributes:
        id: short name (``1a-weights-replaced``): the issue item number, then what is tried.
        expected: what a clean outcome is, in words (the table's middle column).
        run: ``run(ctx) -> Result`` does the case in ``ctx.tmp`` (setup included).
        code: the expected exit status.
        says: fragments the problem line must contain (all of them, in one line).
        before_work: refused before any work: stderr is that one line (plus a hint) only.
        check: ``check(ctx, result) -> [problem, ...]``: the case's own checks (work not lost...).
        warns: the case expects ``cliplens: warning:`` lines (otherwise any warning is a finding: a library's
            internal warning reaching the user is noise, not a message).
    """

    id: str
    expected: str
    run: Callable[[Context], Result]
    code: int = 2
    says: Sequence[str] = ()
    before_work: bool = True
    check: Callable[[Context, Result], list[str]] | None = None
    warns: bool = False


@dataclass
class Context:
    """A case's temporary folder and how to run cliplens there."""

    tmp: Path
    plugins: list[Path] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        paths = [str(ROOT), *map(str, self.plugins)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLIPLENS_STRICT_PLUGINS")}
        env.update(
            PYTHONPATH=os.pathsep.join(paths),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            **extra,
        )
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cliplens", *map(str, args)]

    def cli(
        self, *args: object, timeout: float = 180, env: dict[str, str] | None = None, wrap: Sequence[str] = ()
    ) -> Result:
        """Run ``cliplens ARGS`` to the end (``wrap``: a command line that runs it, e.g. ``unshare ...``)."""
        return self.run([*wrap, *self.command(*map(str, args))], timeout=timeout, env=env)

    def python(self, code: str, timeout: float = 180) -> Result:
        return self.run([sys.executable, "-c", code], timeout=timeout)

    def run(self, argv: Sequence[str], timeout: float = 180, env: dict[str, str] | None = None) -> Result:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                list(argv), cwd=self.tmp, env=env or self.env(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            return Result(
                None,
                _text(exc.stdout),
                _text(exc.stderr) + f"\n[timed out after {timeout:.0f} s]",
                time.perf_counter() - start,
            )
        return Result(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)

    def popen(self, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*map(str, args)),
            cwd=self.tmp,
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


#: stderr lines a run prints about itself, not about a problem (the head line, one line per pair, a progress bar)
_PROGRESS = ("cliplens bench: ", "[", "cliplens explain: ", "cliplens report: ")


def problem_lines(err: str, *, keep_progress: bool = False) -> list[str]:
    """The lines of ``err`` that say something went wrong: warnings and (unless kept) progress lines left out."""
    lines = []
    for raw in err.replace("\r", "\n").splitlines():
        line = raw.strip()
        if not line or line.startswith("cliplens: warning:"):
            continue
        if not keep_progress and (
            line.startswith(_PROGRESS) or "img/s" in line or "it/s" in line or "|" in line and "%" in line
        ):
            continue
        lines.append(line)
    return lines


def judge(case: Case, ctx: Context, result: Result) -> list[str]:
    """Why ``result`` is not clean for ``case`` (empty: clean)."""
    why = []
    if result.code != case.code:
        why.append(f"exit {result.code}, expected {case.code}")
    if "Traceback" in result.err:
        why.append("a traceback on stderr")
    if case.before_work:
        lines = problem_lines(result.err, keep_progress=True)
        if not (len(lines) == 1 or (len(lines) == 2 and lines[1].lower().startswith(("hint", "cliplens: hint")))):
            why.append(f"{len(lines)} stderr lines, expected one")
    warnings = [line for line in result.err.splitlines() if line.startswith("cliplens: warning:")]
    if warnings and not case.warns:
        why.append(f"unexpected warning: {warnings[0][len('cliplens: warning: ') :][:80]!r}")
    if case.says:
        lines = [
            line
            for line in result.err.replace("\r", "\n").splitlines()
            if all(fragment in line for fragment in case.says)
        ]
        if not lines:
            missing = [f for f in case.says if f not in result.err]
            why.append(f"no stderr line says {' … '.join(missing or case.says)!r}")
    if case.check is not None:
        try:
            why += case.check(ctx, result)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is a finding too
            why.append(f"check failed: {type(exc).__name__}: {exc}")
    return why


def run_cases(cases: Sequence[Case], keep: bool = False, verbose: bool = False) -> list[tuple[Case, list[str], Result]]:
    rows = []
    for case in cases:
        tmp = Path(tempfile.mkdtemp(prefix=f"cliplens-case-{case.id}-"))
        ctx = Context(tmp)
        try:
            result = case.run(ctx)
        except Exception as exc:  # noqa: BLE001 - a case whose setup failed is reported, the others still run
            result = Result(None, "", f"[the case itself failed: {type(exc).__name__}: {exc}]")
        why = judge(case, ctx, result)
        rows.append((case, why, result))
        status = "clean" if not why else "NOT clean: " + "; ".join(why)
        print(f"{case.id}: {status} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)
        if why or verbose:
            tail = "\n".join(result.err.strip().splitlines()[-6:])
            print("    stderr tail: " + tail.replace("\n", "\n    "), file=sys.stderr, flush=True)
        if not keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[tuple[Case, list[str], Result]]) -> str:
    lines = ["| case | expected | result |", "| --- | --- | --- |"]
    for case, why, _ in rows:
        result = "clean" if not why else "not clean: " + "; ".join(why)
        lines.append(f"| {_cell(case.id)} | {_cell(case.expected)} | {_cell(result)} |")
    clean = sum(1 for _, why, _ in rows if not why)
    lines.append("")
    lines.append(f"{clean} of {len(rows)} cases clean.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bad_input_catalog import CASES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", nargs="+", metavar="WORD", help="only the cases whose id contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", action="store_true", help="keep each case's temporary folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every case's stderr tail, clean or not")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.k or any(word in c.id for word in args.k)]
    if args.list:
        for case in cases:
            print(f"{case.id}: {case.expected}")
        return 0
    rows = run_cases(cases, keep=args.keep, verbose=args.verbose)
    print(table(rows))
    return 0 if all(not why for _, why, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
