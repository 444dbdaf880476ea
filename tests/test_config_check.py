"""The config schema: every shipped config validates; unknown keys, bad types and values out of
range are refused before any work, naming the key, the allowed range, the closest valid key."""
from __future__ import annotations

import ast
import inspect

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config_check import ConfigError, check_overrides, unknown_key, validate
from pipeline.schema_groups import OBJECTIVES
from pipeline.study import CONF_DIR, PROJECT_DIR, results_root

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
OBJECTIVE_FILES = sorted(p.stem for p in (CONF_DIR / "objective").glob("*.yaml"))
GROUPS = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["results_dir=/nonexistent/results", *overrides])


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(*overrides))
    return str(e.value)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    model = validate(compose_cfg(f"+experiment={name}"))
    assert model.experiment_name == name


def test_every_objective_and_every_group_choice_validates():
    """Each compose takes the k-th file of every group: 15 composes cover all of them."""
    choices = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in sorted(GROUPS)
               if g != "experiment"}
    tags = {"task": "suite", "sampler": "engine", "rl": "engine", "cluster": "kind",
            "tracking": "backend", "objective": "name"}
    for k in range(max(map(len, choices.values()))):
        picked = {g: names[k % len(names)] for g, names in choices.items()}
        model = validate(compose_cfg(*(f"{g}={name}" for g, name in picked.items())))
        for group, tag in tags.items():
            assert getattr(getattr(model, group), tag) == picked[group]
    assert len(choices["objective"]) == 15 and set(tags) < set(choices)


def test_the_schema_knows_every_objective_and_exactly_its_function_parameters():
    from stages.objectives import REGISTRY

    assert sorted(OBJECTIVES) == OBJECTIVE_FILES == sorted(REGISTRY)
    for name, (params, _) in OBJECTIVES.items():
        kwargs = list(inspect.signature(REGISTRY[name].fn).parameters)[1:]  # after the batch
        assert sorted(params.model_fields) == sorted(kwargs), name


@pytest.mark.parametrize("override,message", [
    ("sample.n=0", "sample.n = 0: must be >= 1"),
    ("sft.lr=-1e-4", "sft.lr = -0.0001: must be > 0"),
    ("rl.lr=0", "rl.lr = 0: must be > 0"),
    ("verify.max_bad_fraction=1.5", "verify.max_bad_fraction = 1.5: must be in [0, 1]"),
    ("sample.top_p=0", "sample.top_p = 0: must be in (0, 1]"),
    ("sft.heldout_fraction=1", "sft.heldout_fraction = 1: must be in [0, 1)"),
    ("eval.ks=[1,32]", "eval.ks [32] must be <= eval.n (8)"),
    ("report.ks=[1,4,64]", "report.ks [64] must be <= eval.n (8)"),
    ("sample.n=eight", "sample.n = 'eight': must be a valid integer"),
    ("sample.n=8.5", "sample.n = 8.5: must be a valid integer"),
    ("analysis.enabled=3", "analysis.enabled = 3: must be a valid boolean"),
    ("sft.fsdp=3", "sft.fsdp = 3: must be a valid boolean or a valid string"),
    ("cluster.kind=slurm", "cluster.kind = 'slurm': must be one of inline, local, ray"),
    ("objectives=[sft,pear_tokn]", "objectives: unknown objective 'pear_tokn'; did you mean pear_token?"),
    ("seeds=[0,0]", "seeds lists [0] more than once"),
    ("rl.num_generations=1", "rl.num_generations = 1: must be >= 2"),
    ("task.sizes.train=-1", "task.sizes.train = -1: must be >= 0"),
    ("+resources.sfft.num_gpus=1", "resources.sfft: no stage of that name; did you mean sft?"),
    ("model.bootstrap=null", "model.bootstrap is null, so model.base must name"),
])
def test_a_value_out_of_range_names_the_key_and_the_range(override, message):
    text = refused(override)
    assert message in text
    assert len(text.splitlines()) == 1


def test_objective_params_are_checked_per_objective():
    assert "objective.params.gamma = 1.5: must be in (0, 1]" in refused(
        "objective=pear_token", "objective.params.gamma=1.5")
    assert "objective.params.delta_clip = [0.3, -0.08]: must be [low, high]" in refused(
        "objective=pear_seq", "objective.params.delta_clip=[0.3,-0.08]")
    # gamma is a parameter of pear_token, not of sft: refused even with +
    assert "unknown key objective.params.gamma" in refused("objective=sft",
                                                           "+objective.params.gamma=0.5")


def test_an_unknown_key_is_refused_with_or_without_plus_and_the_closest_key_suggested():
    message = "unknown key sft.learning_rate; did you mean sft.lr?"
    assert refused("+sft.learning_rate=1e-4") == message          # composed, then refused
    for line in ("sft.learning_rate=1e-4", "+sft.learning_rate=1e-4", "++sft.learning_rate=1"):
        with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
            check_overrides([line], GROUPS)                          # before Hydra composes
    assert refused("+sampel.n=3") == "unknown key sampel; did you mean sample?"
    # below a group: the file chosen on the command line, or the default one, decides
    with pytest.raises(ConfigError, match="unknown key objective.params.gamma"):
        check_overrides(["objective.params.gamma=0.5"], GROUPS, {"objective": "sft"})
    with pytest.raises(ConfigError, match="unknown key objective.params.gamma"):
        check_overrides(["objective=talr", "objective.params.gamma=0.5"], GROUPS)
    check_overrides(["objective=pear_token", "objective.params.gamma=0.5"], GROUPS,
                    {"objective": "sft"})
    assert unknown_key(["eval", "temprature"]) == \
        "unknown key eval.temprature; did you mean eval.temperature?"
    assert unknown_key(["sft", "lr", "x"]) == "unknown key sft.lr.x"


def test_known_keys_group_choices_and_pass_through_mappings_are_accepted():
    check_overrides(["sft.lr=1e-4", "objective=pear_token", "+experiment=smoke", "task=logic",
                     "task.games.sudoku.config.max_empty=50", "objective.params.gamma=0.9",
                     "sampler.engine_kwargs.swap_space=4", "+model.bootstrap.arch.rope_theta=1e4",
                     "online_task.sizes.rl=5", "hydra.verbose=true", "hydra/launcher=basic",
                     "~analysis.device", "-m", "seeds=[0,1]", "resources.sft.num_gpus=2"], GROUPS)
    validate(compose_cfg("task=logic", "task.games.sudoku.config.max_empty=50", "sampler=vllm",
                         "+sampler.engine_kwargs.swap_space=4"))


def test_relative_results_dirs_are_taken_from_the_project_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert results_root("results") == PROJECT_DIR / "results"
    assert results_root("elsewhere/out") == PROJECT_DIR / "elsewhere" / "out"
    assert results_root(tmp_path / "abs") == tmp_path / "abs"
    monkeypatch.setenv("PIPELINE_RESULTS", str(tmp_path / "env"))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config")
    assert results_root(cfg.results_dir) == tmp_path / "env"


def test_pipeline_modules_import_no_cycle():
    """Every import between pipeline/ modules, also inside functions: the graph is acyclic."""
    graph: dict[str, set[str]] = {}
    for path in (PROJECT_DIR / "pipeline").glob("*.py"):
        deps = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names
                            if a.name.startswith("pipeline."))
    done: set[str] = set()

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join((*stack, mod))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, (*stack, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
    assert "cli" not in graph["results"] and "results" in graph["cli"]


def test_a_run_records_its_config_under_the_experiment(tmp_path):
    from omegaconf import OmegaConf

    from pipeline.cli import record_config

    out = record_config(compose_cfg("sft.lr=1e-4"), tmp_path / "toy")
    assert out.parent == tmp_path / "toy" / "_hydra"
    assert OmegaConf.load(out / "config.yaml").sft.lr == 1e-4
    assert (out / "overrides.yaml").is_file()
