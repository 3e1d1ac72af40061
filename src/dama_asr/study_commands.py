"""`dama bench CONFIG.yaml` (run a study, resumable) and `dama report RUN_DIR` (HTML + markdown)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SHARD_HELP = (
    "run only shard I of N (1 <= I <= N): the cells sorted by id, the k-th (from 0) belongs to shard "
    "k %% N + 1. One array job per shard, e.g. SLURM `sbatch --array=1-4` with "
    "`--shard $SLURM_ARRAY_TASK_ID/4`; combines with --only"
)


def cmd_bench(args: argparse.Namespace) -> None:
    from dama_asr.bench.cells import config_kind
    from dama_asr.bench.config import load_study, parse_shard
    from dama_asr.bench.runner import StudyRunner
    from dama_asr.report import build_report, load_cell_results

    kind = config_kind(Path(args.config))
    if kind in ("language-experts", "expansion"):
        return _bench_cells(args, kind)
    shard = parse_shard(args.shard) if args.shard else None
    study = load_study(args.config)
    study_dir = Path(args.study_dir) if args.study_dir else Path(args.config).parent
    runner = StudyRunner(study, study_dir, work_dir=args.work_dir)
    runner.cell_configs()  # every cell buildable before anything is written, --list included
    study_dir.mkdir(parents=True, exist_ok=True)
    if Path(args.config).resolve() != (study_dir / "config.yaml").resolve():
        shutil.copy(args.config, study_dir / "config.yaml")
    if args.list:
        for cell in study.select(args.only, shard):
            print(f"{'done ' if runner.cell_path(cell).is_file() else 'todo '} {cell.id}")
        return
    progress = runner.run(only=args.only, shard=shard)
    print(f"study {study.name}: {progress.summary()}")
    if load_cell_results(study_dir):  # none yet when every selected cell is held elsewhere
        print(f"report: {build_report(study_dir)}")


def _bench_cells(args: argparse.Namespace, kind: str) -> None:
    """A `kind: language-experts` (bench/experts_study.py) or `kind: expansion` study
    (bench/expansion_study.py): cells in order, each resumable."""
    from dama_asr.paths import dama_home

    if kind == "expansion":
        from dama_asr.bench.expansion_study import ExpansionStudyRunner as Runner
        from dama_asr.bench.expansion_study import load_expansion_study as load
    else:
        from dama_asr.bench.experts_study import ExpertsStudyRunner as Runner
        from dama_asr.bench.experts_study import load_experts_study as load
    study = load(Path(args.config))
    study_dir = Path(args.study_dir) if args.study_dir else Path(args.config).parent
    work = Path(args.work_dir) if args.work_dir else dama_home() / "bench" / study.name
    runner = Runner(study, study_dir, work)
    if args.list:
        for cell in study.cell_ids():
            print(f"{'done ' if (study_dir / 'cells' / f'{cell}.json').is_file() else 'todo '} {cell}")
        return
    done = runner.run(only=args.only)
    left = [c for c in study.cell_ids() if not (study_dir / "cells" / f"{c}.json").is_file()]
    print(
        f"study {study.name}: {len(done)} cell(s) run now; {len(left)} left"
        + (f" ({', '.join(left)})" if left else "")
    )


def cmd_report(args: argparse.Namespace) -> None:
    from dama_asr.report import build_report

    page = build_report(args.run_dir, args.out)
    print(f"report: {page}\nmarkdown: {page.with_suffix('.md')}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a study grid (methods x hours x corpora x seeds); finished cells are kept",
        description="Run a study cell by cell; finished cells are kept, so rerun the same command to resume. "
        "Several processes (lanes, machines sharing --work-dir, scheduler array jobs) may run one study at "
        "once: each takes the cells no other live process holds and leaves the others to their holders.",
    )
    p.add_argument("config", help="study YAML (see benchmarks/*/config.yaml)")
    p.add_argument("--study-dir", help="where cells/*.json and the report go (default: the config's folder)")
    p.add_argument("--work-dir", help="training runs and cell locks (default: $DAMA_HOME/bench/<name>)")
    p.add_argument("--only", nargs="+", help="run only cells whose id contains one of these strings")
    p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
    p.add_argument("--list", action="store_true", help="list the cells and whether they are done")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="HTML + markdown report with plots from a study folder")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.set_defaults(func=cmd_report)
