"""Test-only stage bodies: with ``FAKE_STAGES=1`` and this directory on ``PYTHONPATH``, every
Python process of a run (the driver, each Ray worker) replaces the stage bodies by fakes, so
that the real CLI, Hydra, Ray, runner, cache and console run a study in seconds
(``tests/test_interrupt.py``).

Every fake writes one file, and logs through a library-style logger whose handler is made by
the first stage a process runs (as transformers does). The stage named by ``FAKE_SLOW_STAGE``
(default ``sft``) trains ``FAKE_STEPS`` steps of ``FAKE_STEP_S`` seconds with a progress bar and a
"checkpoint" every 5 steps, resuming from the last one (and saying so); with
``FAKE_STUBBORN=1`` it ignores Ctrl-C.
"""
import os

if os.environ.get("FAKE_STAGES"):
    import types
    from functools import partial

    def _fake_run(stage, cfg, inputs, out, work):
        import logging
        import time
        from pathlib import Path

        from stages.progress import note, progress

        lib = logging.getLogger("fake_library")
        if not lib.handlers:  # like transformers: a handler on the sys.stderr of its first use
            lib.addHandler(logging.StreamHandler())
            lib.propagate = False
        lib.warning("fake library: %s started", stage)
        if stage == os.environ.get("FAKE_SLOW_STAGE", "sft"):
            steps, step_s = int(os.environ.get("FAKE_STEPS", "30")), float(os.environ.get("FAKE_STEP_S", "0.05"))
            done = sorted(int(p.name.split("-")[1]) for p in Path(work).glob("checkpoint-*"))
            start = done[-1] if done else 0
            if start:
                note(f"resumed from checkpoint-{start}")
            bar = progress(total=steps, desc=stage, unit="step", initial=start)
            for k in range(start + 1, steps + 1):
                end = time.time() + step_s
                while time.time() < end:
                    try:
                        time.sleep(0.01)
                    except KeyboardInterrupt:
                        if not os.environ.get("FAKE_STUBBORN"):
                            raise
                        end = time.time() + 60  # a stage that does not stop
                bar.update(1)
                if k % 5 == 0:
                    (Path(work) / f"checkpoint-{k}").mkdir()
            bar.close()
        Path(out, "fake.txt").write_text(stage)
        return {"fake": True}

    def _load(stage):
        import stages

        if stage not in stages.VERSIONS:
            raise ValueError(f"unknown stage {stage!r}")
        mod = types.ModuleType(f"fake_{stage}")
        mod.run = partial(_fake_run, stage)
        return mod

    try:
        import stages

        stages.load = _load
    except ImportError:  # a process without the repository on its path (a Ray helper)
        pass
