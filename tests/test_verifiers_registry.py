"""The suite registry, its conf/task files and describe() agree."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from verifiers import SUITES, Suite, build_suite, describe

CONF = Path(__file__).resolve().parent.parent / "conf" / "task"


def test_every_suite_has_a_task_file_and_back():
    files = {p.stem: OmegaConf.to_container(OmegaConf.load(p), resolve=True) for p in CONF.glob("*.yaml")}
    assert {cfg["suite"] for cfg in files.values()} == set(SUITES)
    for name, cfg in files.items():
        suite = build_suite(cfg)  # constructors validate their config; items are built lazily
        assert isinstance(suite, Suite) and suite.name == cfg["suite"], name


def test_describe_lists_every_suite_and_its_games():
    described = describe()
    assert set(described) == set(SUITES)
    assert {"sudoku", "futoshiki", "kakurasu", "knights_knaves", "zebra_puzzles", "survo", "n_queens", "maze",
            "cryptarithm", "countdown", "puzzle24", "word_sorting", "mini_sudoku"} <= set(described["logic"])
    assert {"boolean_expressions", "sudoku", "skyscraper_puzzle", "star_placement_puzzle"} <= set(described["synlogic"])
    assert {"math500", "aime2024", "aime2025", "amc2023", "minerva", "olympiadbench"} <= set(described["math"])


def test_chat_option_wraps_plain_prompts_and_keeps_scoring():
    from verifiers import build_suite

    cfg = {"suite": "toy", "seed": 0, "sizes": {"train": 3, "rl": 3, "eval": 3}, "pretrain_size": 5}
    plain, chat = build_suite(cfg), build_suite({**cfg, "chat": True, "system": "Be brief."})
    for a, b in zip(plain.items("eval"), chat.items("eval")):
        assert b.prompt == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": a.prompt}]
        assert chat.score(b, f"A{a.answer}") == plain.score(a, f"A{a.answer}")
    assert len(chat.pretrain_items()) == 5
