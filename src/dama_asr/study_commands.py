"""`dama bench CONFIG.yaml` (run a study, resumable) and `dama report RUN_DIR` (HTML + markdown)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> None:
    from dama_asr.bench.config import load_study
    from dama_asr.bench.runner import StudyRunner
    from dama_asr.report import build_report

    study = load_study(args.config)
    study_dir = Path(args.study_dir) if args.study_dir else Path(args.config).parent
    study_dir.mkdir(parents=True, exist_ok=True)
    if Path(args.config).resolve() != (study_dir / "config.yaml").resolve():
        shutil.copy(args.config, study_dir / "config.yaml")
    runner = StudyRunner(study, study_dir, work_dir=args.work_dir)
    if args.list:
        for cell in study.cells():
            done = (runner.cells_dir / f"{cell.id}.json").is_file()
            print(f"{'done ' if done else 'todo '} {cell.id}")
        return
    runner.run(only=args.only)
    print(f"report: {build_report(study_dir)}")


def cmd_report(args: argparse.Namespace) -> None:
    from dama_asr.report import build_report

    page = build_report(args.run_dir, args.out)
    print(f"report: {page}\nmarkdown: {page.with_suffix('.md')}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a study grid (methods x hours x corpora x seeds); finished cells are kept"
    )
    p.add_argument("config", help="study YAML (see benchmarks/*/config.yaml)")
    p.add_argument("--study-dir", help="where cells/*.json and the report go (default: the config's folder)")
    p.add_argument("--work-dir", help="training runs (default: $DAMA_HOME/bench/<name>)")
    p.add_argument("--only", nargs="+", help="run only cells whose id contains one of these strings")
    p.add_argument("--list", action="store_true", help="list the cells and whether they are done")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="HTML + markdown report with plots from a study folder")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.set_defaults(func=cmd_report)
