"""The study a composed config describes: where its results live, its objectives, its DAG.

Shared by the commands (``pipeline/cli.py``) and ``status`` / ``report``
(``pipeline/results.py``), which import this module and not each other.

Where results go: ``results_dir`` (default ``$PIPELINE_RESULTS``, else ``results``) is used as
is when absolute; a relative one is taken from the project directory (the one holding
``conf/``), never from the directory a command runs in, so every command finds the same cache
from anywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import dag as dag_mod
from pipeline import budget, tracking

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_DIR / "conf"


def results_root(results_dir: str | os.PathLike) -> Path:
    """The absolute directory ``results_dir`` names: relative to the project, not to the cwd."""
    path = Path(results_dir).expanduser()
    return (path if path.is_absolute() else PROJECT_DIR / path).resolve()


def register_resolvers() -> None:
    """``${results_root:PATH}`` for Hydra's own paths in ``conf/config.yaml``."""
    OmegaConf.register_new_resolver("results_root", lambda p: str(results_root(str(p))),
                                    replace=True)


register_resolvers()  # on import: also in a parallel launcher's job processes


def default_choices() -> dict[str, str]:
    """The file of each config group that ``conf/config.yaml``'s defaults list picks."""
    entries = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").defaults)
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()
            if isinstance(v, str) and not k.startswith("override ")}


def _explicit_objective() -> bool:
    """True when ``objective=NAME`` was given on the command line (or by a multirun sweep)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.split("=", 1)[0].lstrip("+~") == "objective"
               for o in HydraConfig.get().overrides.task)


def objective_configs(cfg: DictConfig, explicit: bool | None = None) -> dict[str, dict]:
    """The objectives of this run: ``objectives`` (the study), or just ``objective`` if chosen."""
    chosen = cfg.objective.name
    explicit = _explicit_objective() if explicit is None else explicit
    names = [chosen] if explicit else list(cfg.objectives)
    out = {}
    for name in names:
        if name == chosen:
            out[name] = OmegaConf.to_container(cfg.objective, resolve=True)
            continue
        path = CONF_DIR / "objective" / f"{name}.yaml"
        if not path.is_file():
            valid = sorted(p.stem for p in (CONF_DIR / "objective").glob("*.yaml"))
            raise ValueError(f"unknown objective {name!r} in `objectives`; valid: {', '.join(valid)}")
        out[name] = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return out


def build_dag(cfg: DictConfig, explicit: bool | None = None) -> dag_mod.Dag:
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.results_dir = str(results_root(cfg.results_dir))
    objectives = objective_configs(cfg, explicit)
    dag = dag_mod.build(cfg, objectives)
    t = cfg.get("tracking")
    t = OmegaConf.to_container(t, resolve=True) if t is not None else {}
    if t.get("dir"):  # like results_dir: a relative path is under the project
        t["dir"] = str(results_root(t["dir"]))
    dag.tracking = tracking.settings(t, cfg.experiment_name, dag.root, _sweep())
    dag.study = budget.settings(OmegaConf.to_container(cfg, resolve=True), list(objectives))
    return dag


def _sweep() -> dict | None:
    """``{"id", "job"}`` inside a Hydra multirun job (W&B tags its runs with the sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    return {"id": Path(hc.sweep.dir).name, "job": hc.job.num}


def link_report(dag: dag_mod.Dag) -> Path | None:
    """Point ``report/latest`` at the report of ``dag`` (if complete); its directory."""
    if "report" not in dag.nodes or not dag.dir("report").complete():
        return None
    final = dag.dir("report").final
    link = final.parent / "latest"
    tmp = final.parent / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(final.name, tmp)
    os.replace(tmp, link)
    return final
