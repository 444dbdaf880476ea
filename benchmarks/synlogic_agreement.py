"""Our SynLogic checkers against SynLogic's own verifiers, on puzzles from SynLogic's own generators.

    python benchmarks/synlogic_agreement.py --synlogic PATH/TO/SynLogic --n 12

PATH is a checkout of github.com/MiniMax-AI/SynLogic (its generators write their jsonl files
under ``games/tasks/<task>/data/`` there; use a scratch copy). For each task type whose
generator runs here, it generates ``--n`` fresh puzzles, writes a correct answer for each in
the format the task prompt asks for (from the stored solution) and ``--mutants`` near misses
(one digit or letter changed), and scores every answer with our checker
(``verifiers.synlogic_checks``) and with SynLogic's verifier class
(``verifiers.synlogic_official``). It prints, per type, the agreement on the correct answers and
on all answers, and up to ``--examples`` disagreements to review, and the validation of every
rule-checked row's stored answer (``verifiers.synlogic_validate``). Generators that need
packages this project does not install (nltk, inflect, english-words) are skipped with the
reason unless they are importable. Exit status 1 if a generator or verifier crashed.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from verifiers.synlogic_checks import CHECKS  # noqa: E402
from verifiers.synlogic_official import official_check  # noqa: E402
from verifiers.synlogic_validate import reference_answer, validate_row  # noqa: E402

M = "games.tasks.{t}.scripts.{m}"
GENERATORS: dict[str, list[str]] = {  # task -> module and arguments (small sizes of run.sh's settings)
    "arrow_maze": ["arrow_maze", "--width", "5", "--height", "5", "--arrow_fill_rate_min", "0.3",
                   "--arrow_fill_rate_max", "0.9"],
    "boolean_expressions": ["boolean_expressions"],
    "buggy_tables": ["game_of_buggy_tables", "--num_rows_range", "10", "15", "--bug_rate_range", "0.1", "0.2",
                     "--output_name", "agreement"],
    "calcudoko": ["calcudoko", "--grid_size", "4"],
    "campsite": ["campsite", "--n", "5", "--m", "5", "--tree_density", "0.2"],
    "cryptarithm": ["cryptarithm", "--num_letter", "5", "--operator_num", "1"],
    "dyck_language": ["dyck_language"],
    "dyck_language_errors": ["dyck_language_errors"],
    "dyck_language_reasoning_errors": ["dyck_language_reasoning_errors"],
    "futoshiki": ["futoshiki_generator", "--grid_size", "4", "--num_inequality_signs", "4",
                  "--num_prefilled_coords", "3", "--output", "agreement.jsonl"],
    "game_of_24": ["game_of_24"],
    "goods_exchange": ["goods_exchange"],
    "kukurasu": ["kukurasu"],
    "math_path": ["math_path"],
    "minesweeper": ["minesweeper"],
    "norinori": ["norinori", "--n", "5", "--min_regions", "3", "--max_regions", "5", "--shadow_ratio", "0.1"],
    "number_wall": ["number_wall"],
    "numbrix": ["numbrix"],
    "object_counting": ["object_counting"],
    "object_properties": ["object_properties"],
    "operation": ["operation"],
    "skyscraper_puzzle": ["skyscraper_puzzle"],
    "space_reasoning": ["space_reasoning"],
    "space_reasoning_tree": ["space_reasoning_tree"],
    "star_placement_puzzle": ["star_placement_puzzle"],
    "sudoku": ["sudoku"],
    "survo": ["survo"],
    "time_sequence": ["time_sequence"],
    "web_of_lies": ["web_of_lies"],
    "word_sorting": ["word_sorting"],
    "word_sorting_mistake": ["word_sorting_mistake"],
    "wordscapes": ["wordscapes_generate"],
}
COUNT_FLAG = {"futoshiki": "--num_samples", "norinori": "--n_samples", "wordscapes": "--num-questions"}
RULES_ONLY = {"arrow_maze", "campsite", "game_of_24", "kukurasu", "minesweeper", "norinori", "number_wall", "numbrix",
              "skyscraper_puzzle", "wordscapes"}  # rows with an empty stored answer (the rules decide)
BOXED = {"boolean_expressions", "object_counting", "word_sorting", "object_properties", "space_reasoning",
         "space_reasoning_tree", "word_sorting_mistake", "operation"}
PY_BLOCK = {"goods_exchange", "game_of_24", "arrow_maze", "campsite", "kukurasu", "number_wall", "numbrix",
            "skyscraper_puzzle", "star_placement_puzzle", "sudoku", "survo", "wordscapes", "cipher"}


def generate(checkout: Path, task: str, n: int, timeout: float) -> tuple[list[dict], str]:
    """Fresh rows of ``task`` from SynLogic's generator (and why there are none, if so)."""
    module, *args = GENERATORS[task]
    before = {p: p.stat().st_mtime for p in checkout.rglob("*.jsonl")}
    cmd = [sys.executable, "-m", M.format(t=task, m=module), COUNT_FLAG.get(task, "--num_of_data"), str(n), *args]
    try:
        proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], f"generator ran over {timeout:.0f}s"
    new = [p for p in checkout.rglob("*.jsonl") if before.get(p) != p.stat().st_mtime]
    rows = [json.loads(line) for p in new for line in p.read_text().splitlines() if line.strip()]
    if not rows:
        return [], (proc.stderr.strip().splitlines() or ["no rows"])[-1][:160]
    return rows[:n], ""


def correct_answer(task: str, game: dict) -> str | None:
    """A right answer written the way the task prompt asks for it."""
    meta, answer = game.get("metadata") or {}, game.get("answer")
    if task in BOXED:
        return f"\\boxed{{{answer}}}"
    if task == "web_of_lies":
        return f"The answer is **{answer}**."
    if task == "time_sequence":
        return json.dumps(answer if isinstance(answer, list) else json.loads(answer))
    if task == "minesweeper":
        return repr([tuple(p) for p in meta["current_mines"]])
    if task == "goods_exchange":
        return f"```python\n{answer}\n```"
    ref = reference_answer(task, game) or (answer if isinstance(answer, str) and answer else None)
    if ref is None:
        return None
    return f"```python\n{ref}\n```" if task in PY_BLOCK else ref


BRACKETS = "()[]{}<>"


def mutants(text: str, rng: random.Random, k: int) -> list[str]:
    """``k`` near misses: one digit (or, if none, one letter) of ``text`` changed."""
    spots = ([i for i, c in enumerate(text) if c.isdigit()] or [i for i, c in enumerate(text) if c.isalpha()]
             or [i for i, c in enumerate(text) if c in BRACKETS])
    out = []
    for _ in range(k if spots else 0):
        i = rng.choice(spots)
        pool = "0123456789" if text[i].isdigit() else BRACKETS if text[i] in BRACKETS else "abcdefghijklmnopqrstuvwxyz"
        out.append(text[:i] + rng.choice([c for c in pool if c != text[i].lower()]) + text[i + 1:])
    return out


def native(task: str, answer: str, game: dict) -> bool:
    try:
        return bool(CHECKS[task](answer, dict(game))[0])
    except Exception:  # an unreadable answer is a wrong answer, as in the suite
        return False


def compare(checkout: Path, task: str, rows: list[dict], rng: random.Random, k: int) -> dict:
    tally: Counter[str] = Counter()
    examples, validation = [], Counter()
    for game in rows:
        validation[validate_row(task, game)] += 1
        right = correct_answer(task, game) if game.get("answer") not in ("", None) or task in RULES_ONLY else None
        if right is None:
            tally["no_answer"] += 1
            continue
        for j, text in enumerate([right, *mutants(right, rng, k)]):
            ours = native(task, text, game)
            try:
                theirs = official_check(checkout, task, text, json.dumps(game, ensure_ascii=False))[0]
            except Exception as e:  # SynLogic's verifier crashed on this answer
                tally["official_crash"] += 1
                if len(examples) < 3:
                    examples.append(f"official crash: {type(e).__name__}: {e}"[:200])
                continue
            kind = "correct" if j == 0 else "mutant"
            tally[f"{kind}_n"] += 1
            tally[f"{kind}_agree"] += ours == theirs
            tally[f"{kind}_ours"] += ours
            tally[f"{kind}_theirs"] += theirs
            if ours != theirs and len(examples) < 3:
                examples.append(f"{kind}: ours={ours} synlogic={theirs}: {text[:150]!r}")
    return {"tally": tally, "examples": examples, "validation": validation}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synlogic", required=True, help="a checkout of MiniMax-AI/SynLogic (scratch copy)")
    ap.add_argument("--n", type=int, default=12, help="puzzles per task type")
    ap.add_argument("--mutants", type=int, default=3, help="near misses per puzzle")
    ap.add_argument("--tasks", nargs="+", default=sorted(GENERATORS))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per generator")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    checkout, rng, crashed = Path(args.synlogic).resolve(), random.Random(args.seed), False
    print("| task | rows | correct: ours / SynLogic / agree | near misses: ours / SynLogic / agree | "
          "stored answer validation | s |")
    print("|---|---|---|---|---|---|")
    notes = []
    for task in args.tasks:
        t0 = time.perf_counter()
        rows, why = generate(checkout, task, args.n, args.timeout)
        if not rows:
            print(f"| {task} | 0 | skipped: {why} | | | |")
            continue
        r = compare(checkout, task, rows, rng, args.mutants)
        t = r["tally"]
        if t["no_answer"]:
            notes.append(f"- {task}: {t['no_answer']} rows without a stored answer to write a right answer from")
        crashed |= bool(t["official_crash"])
        print(f"| {task} | {len(rows)} | {t['correct_ours']} / {t['correct_theirs']} / {t['correct_agree']} of "
              f"{t['correct_n']} | {t['mutant_ours']} / {t['mutant_theirs']} / {t['mutant_agree']} of {t['mutant_n']} "
              f"| {dict(r['validation'])} | {time.perf_counter() - t0:.0f} |")
        notes += [f"- {task}: {e}" for e in r["examples"]]
    print("\nDisagreements (first 3 per type):")
    print("\n".join(notes) or "none")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
