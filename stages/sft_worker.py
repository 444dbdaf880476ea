"""Run the sft stage on several processes (``sft.num_processes > 1``): one per GPU, or CPU (gloo).

The stage process (:func:`launch`) writes the stage's arguments to ``work/sft-job.json`` and
starts ``python -m stages.sft_worker work/sft-job.json`` once per rank with the variables
``torch.distributed`` reads (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), as ``torchrun --standalone`` would. Each rank runs ``stages.sft_fit.fit``; the HF
Trainer (accelerate) sees the distributed environment and trains with DDP, or FSDP when
``sft.fsdp`` is set. Rank 0 writes the outputs to ``out`` and its metrics to
``work/sft-result.json``.

Why not torchrun itself: a rank must die with the stage process (``PR_SET_PDEATHSIG``), or a
killed stage would leave ranks writing checkpoints into ``work/`` beside its re-run; and when one
rank fails the others are stopped at once instead of waiting in a collective. Rank 0's progress
and Trainer logs come back on its stdout as ``@@sft {json}`` lines: the stage process turns them
into its own progress bar and tracker calls; every other line goes to the stage's log, and the
other ranks log to ``work/sft-rank<N>.log``.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TAG = "@@sft "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, n: int, port: int, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
                "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": str(threads), "SFT_PARENT_PID": str(os.getpid()),
                "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                          env.get("PYTHONPATH")] if p)})
    return env


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _drain(lines: queue.Queue, eof: bool, timeout: float = 5.0) -> None:
    """Print what rank 0 wrote before it died (its traceback), tags dropped."""
    deadline = time.time() + timeout
    while not eof and time.time() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        eof = line is None
        if line and not line.startswith(TAG):
            sys.stdout.write(line)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-n:])
    except OSError:
        return ""


def launch(cfg: dict, inputs: dict, out: Path, work: Path, n: int) -> dict:
    """Train on ``n`` processes and return rank 0's metrics; raise if any rank fails."""
    from stages.common import note, progress, tracker

    work = Path(work)
    result = work / "sft-result.json"
    result.unlink(missing_ok=True)
    job = work / "sft-job.json"
    job.write_text(json.dumps({"cfg": cfg, "inputs": inputs, "out": str(out), "work": str(work)}))
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1) // n)
    port = _free_port()
    cmd = [sys.executable, "-m", "stages.sft_worker", str(job)]
    logs = [work / f"sft-rank{r}.log" for r in range(n)]
    procs: list[subprocess.Popen] = []
    try:
        for r in range(n):
            sink: Any = subprocess.PIPE if r == 0 else open(logs[r], "w")
            procs.append(subprocess.Popen(cmd, env=_rank_env(r, n, port, threads), stdout=sink,
                                          stderr=subprocess.STDOUT, text=True, bufsize=1))
            if r:
                sink.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(procs[0].stdout, lines), daemon=True).start()
        bar, eof = None, False
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                eof = True
            elif line.startswith(TAG):
                msg = json.loads(line[len(TAG):])
                if "log" in msg:
                    tracker().log(msg["log"], step=msg.get("step"))
                if "note" in msg:
                    note(msg["note"])
                if "total" in msg and bar is None:
                    bar = progress(total=msg["total"], desc="sft", unit="step",
                                   initial=msg.get("initial", 0))
                if bar is not None and msg.get("progress"):
                    bar.update(msg["progress"])
            elif line:
                sys.stdout.write(line)
            failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                r = failed[0]
                _stop(procs)
                _drain(lines, eof)
                detail = _tail(logs[r]) if r else ""
                raise RuntimeError(f"sft rank {r} of {n} exited with code {procs[r].returncode}"
                                   + (f"; its log {logs[r]} ends with:\n{detail}" if r else
                                      " (its output is in this stage's log above)"))
            if eof and all(p.poll() is not None for p in procs):
                break
        if bar is not None:
            bar.close()
    finally:
        _stop(procs)
        for r in range(1, n):
            sys.stdout.write(f"--- rank {r} log ({logs[r]}) ---\n{_tail(logs[r], 200)}")
    if not result.is_file():
        raise RuntimeError(f"sft ranks exited without writing {result}")
    return json.loads(result.read_text())


class _PipeBar:
    """Rank 0's progress bar: each update becomes a line for the stage process."""

    def __init__(self, iterable=None, total: int | None = None, initial: int = 0, **kw) -> None:
        self.iterable = iterable
        _send({"total": total, "progress": 0, "initial": initial})

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)

    def update(self, n: int = 1) -> None:
        if n:
            _send({"progress": n})

    def close(self) -> None:
        pass


class _PipeTracker:
    """Rank 0's tracker: every ``log`` call is replayed by the stage process's tracker."""

    def log(self, metrics: dict, step: int | None = None) -> None:
        _send({"log": metrics, "step": step})

    def log_report(self, *a, **kw) -> None:
        pass


def _send(msg: dict) -> None:
    sys.stdout.write(TAG + json.dumps(msg, default=float) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the stage process dies; exit now if it already has."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = int(os.environ.get("SFT_PARENT_PID", "0") or 0)
    if parent and os.getppid() != parent:
        os._exit(1)


def main(job_path: str) -> None:
    _die_with_parent()
    import torch

    import stages.common as common
    from stages.progress import set_note_sink
    from stages.sft_fit import fit

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    job = json.loads(Path(job_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    common.set_progress_factory(_PipeBar if rank == 0 else common.no_progress)
    if rank == 0:
        common.set_tracker(_PipeTracker())
        set_note_sink(lambda msg: _send({"note": msg}))  # notes reach the console once
    metrics = fit(job["cfg"], job["inputs"], Path(job["out"]), Path(job["work"]))
    if rank == 0:
        tmp = Path(job["work"]) / f"sft-result.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(metrics))
        os.replace(tmp, Path(job["work"]) / "sft-result.json")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    t0 = time.time()
    main(sys.argv[1])
    print(f"rank {os.environ.get('RANK')} done in {time.time() - t0:.1f} s", flush=True)
