"""The run's console (pipeline/console.py) and stage logs (pipeline/execute.py's capture)."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.console import Console, estimate_left
from pipeline.dag import Dag, Node, Ref
from pipeline.execute import capture
from stages.progress import CHANNEL_FILE, Channel, progress, set_channel

ROOT = Path(__file__).resolve().parent.parent


def two_stage_dag(tmp_path: Path) -> Dag:
    return Dag([Node("sample", "sample", {}, {}), Node("sft[x]", "sft", {}, {"data": Ref("sample")})],
               tmp_path)


def write_bar(dag: Dag, nid: str, n: int, total: int, notes: list[str] = ()) -> None:
    work = dag.dir(nid).work
    work.mkdir(parents=True, exist_ok=True)
    bar = {"desc": "sft", "unit": "step", "n": n, "total": total, "initial": 0,
           "started": 1000.0, "updated": 1060.0, "closed": False}
    (work / CHANNEL_FILE).write_text(json.dumps({"attempt": "1", "bar": bar, "notes": list(notes)}))


def test_on_a_terminal_a_stage_bar_goes_when_the_stage_ends(tmp_path):
    dag, lines, screen = two_stage_dag(tmp_path), [], io.StringIO()
    console = Console(dag, dag.order, {}, lines.append, bars=True, stream=screen)
    console.start("sample")
    write_bar(dag, "sample", 90, 200, notes=["resumed from shard 3 of 8 (3 done before)"])
    console.tick()
    block = screen.getvalue().split("\x1b[J")[-1].splitlines()
    assert block[0].startswith("0/2 stages finished, 1 running, ")
    assert "sample" in block[1] and "45%" in block[1] and "90/200" in block[1]
    assert "[sample] resumed from shard 3 of 8 (3 done before)" in lines

    console.states["sample"] = "done"
    console.end("sample")
    console.tick()
    block = screen.getvalue().split("\x1b[J")[-1].splitlines()
    assert block[0].startswith("1/2 stages finished, 0 running, ") and len(block) == 1
    assert lines.count("[sample] resumed from shard 3 of 8 (3 done before)") == 1


def test_when_output_is_not_a_terminal_each_running_stage_gets_a_heartbeat_line(tmp_path):
    dag, lines = two_stage_dag(tmp_path), []
    console = Console(dag, ["sft[x]"], {"sample": "cached"}, lines.append, bars=False, heartbeat_s=0)
    console.start("sft[x]")
    write_bar(dag, "sft[x]", 90, 200)
    console.tick()
    # 90 steps in 60 s: 1.5 step/s, 110 left: 73 s
    assert "[sft[x]] 45% (90/200 step), 1.5 step/s, ~1m13s left" in lines
    run = [s for s in lines if s.startswith("[run] ")]
    assert run and run[0].startswith("[run] 1/2 stages finished (1 cached), 1 running, ")


def test_the_run_estimate_weighs_stages_by_their_typical_time():
    work = [("sample", "finished", 0.0), ("sft", "running", 0.5), ("sft", "pending", 0.0)]
    # done: 10 + 15 stage-seconds in 25 s of wall time; left: 15 + 30
    assert estimate_left(work, {"sample": [10.0], "sft": [20.0, 30.0, 40.0]}, 25.0) == 45.0
    assert estimate_left([("sft", "pending", 0.0)], {}, 5.0) is None  # nothing done yet


def test_a_stage_type_not_seen_yet_counts_as_its_typical_cost_scaled_to_the_known():
    # a cold run, half-way through its bootstrap: no stage has finished yet
    work = [("bootstrap", "running", 0.5), ("rl", "pending", 0.0), ("rl", "pending", 0.0)]
    prior = {"bootstrap": 80.0, "rl": 40.0}
    # done 40 of the bootstrap's 80 in 20 s; left 40 + 2 x 40 prior-seconds: 60 s
    assert estimate_left(work, {}, 20.0, prior) == 60.0
    assert estimate_left(work, {}, 20.0) == 100.0  # without: all weigh the same, 0.5 done of 3
    # the bootstrap is known to take 160 s here: the unknown rl scales with it (2 x 80)
    work = [("bootstrap", "finished", 0.0), ("rl", "pending", 0.0), ("rl", "pending", 0.0)]
    assert estimate_left(work, {"bootstrap": [160.0]}, 160.0, prior) == 160.0
    assert estimate_left([("bootstrap", "finished", 0.0), ("eval", "pending", 0.0)],
                         {"bootstrap": [160.0]}, 160.0, prior) == 160.0  # no prior: the known mean


def test_a_stage_writes_its_bar_and_notes_to_its_channel(tmp_path):
    channel = Channel(tmp_path / CHANNEL_FILE)
    set_channel(channel)
    try:
        for _ in progress(range(4), desc="verify"):
            pass
        from stages.progress import note

        note("resumed from checkpoint-100")
    finally:
        set_channel(None)
    state = json.loads((tmp_path / CHANNEL_FILE).read_text())
    assert state["bar"]["n"] == 4 and state["bar"]["total"] == 4 and state["bar"]["closed"]
    assert state["notes"] == ["resumed from checkpoint-100"]


def test_a_logger_made_in_one_stage_writes_to_the_next_stages_log_not_a_closed_file(tmp_path):
    lib = logging.getLogger("test_console_library")
    lib.propagate = False
    try:
        with capture(tmp_path / "a.log"):
            handler = logging.StreamHandler()  # on this stage's sys.stderr, as libraries do
            handler.flush = sys.stderr.flush    # transformers binds flush to it as well
            lib.addHandler(handler)
            lib.warning("first stage")
        with capture(tmp_path / "b.log"):
            lib.warning("second stage")
    finally:
        lib.handlers.clear()
    a, b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert "first stage" in a and "second stage" not in a
    assert "second stage" in b and "Logging error" not in a + b


def test_transformers_logger_across_two_stages_of_one_process(tmp_path):
    """transformers' own default handler, first configured inside a stage (a fresh process, as
    a Ray worker is): the next stage's warnings land in its own log, without logging errors."""
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from pipeline.execute import capture
        root = Path(sys.argv[1])
        assert "transformers" not in sys.modules  # its handler is made inside the first stage
        with capture(root / "a.log"):
            from transformers.utils import logging
            logging.get_logger("transformers.x").warning("first stage")
        with capture(root / "b.log"):
            logging.get_logger("transformers.x").warning("second stage")
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    a, b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert "first stage" in a and "second stage" in b, (a, b, proc.stderr)
    assert "Logging error" not in a + b + proc.stderr
