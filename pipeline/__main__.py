"""Command line: ``python -m pipeline COMMAND [hydra overrides]``.

  run     build the DAG from the config, run what is not cached, print where the report is
  plan    print the DAG with each node's state (cached / to run); runs nothing
  status  every node's state (done / cached / running / failed / missing), time, key metrics
  report  rebuild the report from the evals that exist under results/<experiment>/ (e.g.
          after `run -m objective=a,b,c`: one report over all three)
  ls      list objectives, task suites, engines, experiments and stages

Everything after the command is Hydra's: ``+experiment=smoke``, ``objective=pear_token``,
``sft.lr=1e-4``, ``-m objective=sft,pear_token`` (multirun), ``--cfg job``...

A config error (a key the schema does not know, a value out of its range) stops before any
work with one line per problem; ``--debug`` (or HYDRA_FULL_ERROR=1) shows the traceback too.
"""
from __future__ import annotations

import os
import sys

COMMANDS = ("run", "plan", "status", "report", "ls")


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
            sys.exit(2)
        return
    command, rest = argv[0], argv[1:]
    if "--debug" in rest:
        rest = [a for a in rest if a != "--debug"]
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if command == "ls":
        from pipeline.cli import list_registries

        list_registries()
        return
    import hydra

    from pipeline.cli import CONF_DIR, debugging, fail, hydra_entry
    from pipeline.config_check import ConfigError, check_overrides
    from pipeline.study import default_choices

    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    overrides = [a for a in rest if "=" in a and not a.startswith("-")]
    # an experiment may choose other files of a group than conf/config.yaml's defaults
    defaults = {} if any(a.lstrip("+").startswith("experiment=") for a in overrides) \
        else default_choices()
    try:  # before Hydra composes (it would suggest `+key=` for an unknown key)
        check_overrides(overrides, groups, defaults)
    except ConfigError as e:
        if debugging():
            raise
        fail(e)
    # Hydra's argparse takes its overrides as one positional run: a -m after some overrides
    # (`run +experiment=smoke -m objective=a,b`) would leave the rest unparsed
    switches = [a for a in rest if a in ("-m", "--multirun")]
    sys.argv = [f"pipeline {command}", *switches, *(a for a in rest if a not in switches)]
    try:
        hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(
            hydra_entry(command))()
    except KeyboardInterrupt:  # outside the stages (the runner handles Ctrl-C while they run)
        print("\ninterrupted (Ctrl-C); re-running the same command continues from where it "
              "stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
