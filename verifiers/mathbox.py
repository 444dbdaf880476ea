"""math-verify in child processes, with a hard time bound, safe in any thread or Ray task.

math-verify bounds its own time with ``signal.alarm``: whole seconds, main thread only (elsewhere
it raises ``ValueError``), and blind to C-level work such as ``9**9**9`` inside sympy, which no
signal interrupts. So parsing and comparison run in worker processes (``python -m
verifiers.mathbox``) that talk JSON lines over pipes, with math-verify's own timeouts off
(``parsing_timeout=None, timeout_seconds=None``) and two bounds of ours per judgement:

* in the worker (its main thread), an ``ITIMER_PROF`` timer of ``CPU_SHARE`` × the bound in CPU
  seconds (so a busy machine does not turn slow answers into timeouts) interrupts slow Python
  code; the worker answers ``timeout`` and lives on;
* in the caller, a reply that does not come within the bound (wall seconds) gets the worker
  killed and replaced, and the call answers ``timeout``.

The bound is ``judge(..., timeout_s=)``, else the one set by ``time_bound`` in the calling
context (a ``contextvars`` value: per thread, so verl's reward threads keep the default), else
``DEFAULT_TIMEOUT_S``. The verify and eval stages set it from ``verify.timeout_s`` and retry a
timed-out answer once under ``verify.retry_timeout_s`` (``stages/judging.py``).

Workers start on first use (a second or two: importing sympy and warming its caches on
``WARMUP`` pairs, whose first comparisons cost up to 0.2 s each), one per concurrent caller up
to ``max_workers``; a warm spare is kept so that a kill does not make the next call wait
(``spare = False``: none, for a process that judges one answer at a time, such as a process of
the verify stage's pool, where a spare doubles the start-up work; a kill still starts a
replacement at once).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_TIMEOUT_S = 0.9  # wall seconds in the caller per judgement
CPU_SHARE = 0.55  # the worker's CPU-time bound, as a share of the wall bound (0.5 s at 0.9)
START_TIMEOUT_S = 60.0
WORKER_MEMORY_BYTES = 4 << 30
WARMUP = [("1/2", "0.5"), ("x^2+2x+1", "(x+1)^2"), ("(3,\\infty)", "(3, \\infty)"), ("\\{1,2\\}", "\\{2,1\\}"),
          ("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2"), ("x=2", "2"), ("\\sin^2 x+\\cos^2 x", "1"), ("e^{i\\pi}", "-1"),
          ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"), ("3x+2y", "2y+3x")]
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOUND: contextvars.ContextVar[float] = contextvars.ContextVar("mathbox_bound", default=DEFAULT_TIMEOUT_S)


@contextlib.contextmanager
def time_bound(seconds: float):
    """Judge under ``seconds`` (wall; CPU: ``CPU_SHARE`` of it) in this context (thread)."""
    seconds = float(seconds)
    if not seconds > 0:
        raise ValueError(f"a math-verify time bound must be > 0 seconds, got {seconds}")
    token = _BOUND.set(seconds)
    try:
        yield
    finally:
        _BOUND.reset(token)


def current_bound() -> float:
    """The wall-clock bound ``judge`` uses when not given one."""
    return _BOUND.get()


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "verifiers.mathbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, close_fds=True,
        )
        self._buf = b""
        self.ready = False

    def _readline(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None  # the worker died
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def wait_ready(self) -> bool:
        if not self.ready:
            self.ready = self._readline(START_TIMEOUT_S) == b"ready"
        return self.ready

    def ask(self, request: dict, timeout: float) -> dict | None:
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._readline(timeout)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass


class MathBox:
    """A small pool of math-verify workers. ``judge`` never raises."""

    def __init__(self, max_workers: int = 4, spare: bool = True) -> None:
        self.pid, self.spare = os.getpid(), spare
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_workers)

    def warm(self) -> None:
        """Make sure an idle worker exists (starting one if not), without waiting for it."""
        with self._lock:
            if not self._idle:
                self._idle.append(_Worker())

    def judge(self, gold: str, pred: str, timeout_s: float | None = None) -> dict:
        """``{"status": equal|different|unparsed|timeout|error, "detail": str}`` within
        ``timeout_s`` wall seconds (default: ``current_bound()``)."""
        bound = float(timeout_s) if timeout_s else current_bound()
        with self._slots:
            worker = self._acquire()
            if worker is None:
                return {"status": "error", "detail": "math-verify worker failed to start"}
            try:
                reply = worker.ask({"gold": gold, "pred": pred, "cpu_s": CPU_SHARE * bound}, bound)
            except Exception as e:  # a garbled reply: treat the worker as broken
                reply = None
                detail = f"{type(e).__name__}"
            else:
                detail = f"no reply within {bound:g} s; worker restarted"
            if reply is None:
                worker.kill()
                self.warm()
                return {"status": "timeout", "detail": detail}
            with self._lock:
                self._idle.append(worker)
            return reply

    def _acquire(self) -> _Worker | None:
        """An idle worker (a ready one first); leaves a spare starting if none is left idle
        (``self.spare``)."""
        with self._lock:
            self._idle.sort(key=lambda w: w.ready)
            worker = self._idle.pop() if self._idle else _Worker()
            if not self._idle and self.spare:
                self._idle.append(_Worker())
        if worker.wait_ready():
            return worker
        worker.kill()
        return None

    def close(self) -> None:
        with self._lock:
            for w in self._idle:
                w.kill()
            self._idle.clear()


_BOX: MathBox | None = None
_BOX_LOCK = threading.Lock()


def mathbox() -> MathBox:
    """The process-wide pool (created lazily, also after a fork into a Ray worker)."""
    global _BOX
    with _BOX_LOCK:
        if _BOX is None or _BOX.pid != os.getpid():
            _BOX = MathBox()
            import atexit

            atexit.register(_BOX.close)
        return _BOX


# -- the worker ---------------------------------------------------------------------------------
class _SoftTimeout(BaseException):
    """BaseException so that math-verify's ``except Exception`` does not swallow it."""


def _worker_main() -> None:
    import logging
    import resource
    import signal

    logging.disable(logging.WARNING)
    try:  # an answer that slips past the guards may not eat the machine's memory either
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def parse_boxed(text: str):
        return parse("\\boxed{" + text + "}", extraction_config=config, parsing_timeout=None)

    def on_timer(signum, frame):
        raise _SoftTimeout()

    signal.signal(signal.SIGPROF, on_timer)
    golds: dict[str, list] = {}
    for gold, pred in WARMUP:  # the first comparison of each kind imports and caches a lot
        verify(parse_boxed(gold), parse_boxed(pred), timeout_seconds=None)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        reply: dict
        try:
            request = json.loads(line)
            cpu_s = float(request.get("cpu_s") or CPU_SHARE * DEFAULT_TIMEOUT_S)
            signal.setitimer(signal.ITIMER_PROF, cpu_s)
            try:
                gold = golds.get(request["gold"])
                if gold is None:
                    gold = parse_boxed(request["gold"])
                    if len(golds) > 4096:
                        golds.clear()
                    golds[request["gold"]] = gold
                pred = parse_boxed(request["pred"])
                if not gold or not pred:
                    reply = {"status": "unparsed", "detail": "gold" if not gold else "prediction"}
                else:
                    same = verify(gold, pred, timeout_seconds=None)
                    reply = {"status": "equal" if same else "different", "detail": str(pred[0])[:200]}
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _SoftTimeout:
            reply = {"status": "timeout", "detail": f"over {cpu_s:g} s of CPU in math-verify"}
        except BaseException as e:  # noqa: BLE001 - the worker must answer every request
            reply = {"status": "error", "detail": f"{type(e).__name__}: {str(e)[:200]}"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _worker_main()
