"""One measurement inside one fresh process (bench/measure.py starts it; runnable by hand).

    python -m bench.probe imports [--import MOD]...
        the import floor: import the modules, nothing else
    python -m bench.probe parse PATH [--single] [--bundle DIR] [--import MOD]... [--expect N]
                                [--also FILE]...
        pre-import Airflow's DagBag and MODs (as Airflow's parsing_pre_import_modules does),
        then time only the DagBag: a folder as the DAG processor scans it (safe mode), or
        with --single one file as a worker parses it before a task (safe_mode=False,
        no operator links; set _AIRFLOW_PARSING_CONTEXT_DAG_ID as the task runner does);
        --also: then one DagBag per other file, each timed (t_also_median): one file's
        few-ms parse varies by tens of percent from process to process, a median of many
        files in the same warmed process does not
    python -m bench.probe write BLOB OUT
        the generation floor: read (path, bytes) pairs packed from a reference output,
        then compile() every .py and write every file under OUT; no generation work
    python -m bench.probe upload BLOB gs://BUCKET/PREFIX [--jobs J]
        the publishing floor: upload the packed files through composer's GCS target
        with J threads (STORAGE_EMULATOR_HOST set), no build and no plan

Before a DagBag, `parse` builds one throw-away DAG (t_warm): the first DAG a process
builds fills the SDK's isinstance caches (~0.2-0.3 s here), whatever file it comes
from; timed apart, so t_main is the DagBag's own cost.

Prints one line `PROBE_RESULT {json}` (t_import, t_main in seconds; dags, errors) and
ends with os._exit, as Airflow's own parse and task processes do, so interpreter
tear-down is not counted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import sys
import time

T0 = time.perf_counter()
PARSE_IMPORTS = ("airflow.dag_processing.dagbag", "airflow.sdk", "pendulum")


def _finish(result: dict, ok: bool = True) -> None:
    print("PROBE_RESULT", json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0 if ok else 3)


def _imports(modules: list[str]) -> float:
    for module in modules:
        importlib.import_module(module)
    return time.perf_counter() - T0


def write_floor(blob: str, out: str) -> dict:
    with open(blob, "rb") as handle:
        files: list[tuple[str, bytes]] = pickle.load(handle)
    t1 = time.perf_counter()
    made: set[str] = set()
    for rel, data in files:
        path = os.path.join(out, rel)
        if rel.endswith(".py"):
            compile(data, path, "exec", dont_inherit=True)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb") as handle:
            handle.write(data)
    return {"t_import": t1 - T0, "t_main": time.perf_counter() - t1, "files": len(files)}


def _first_dag() -> float:
    """Build and drop one small DAG whose templated fields hold every builtin type."""
    import pendulum
    from airflow.sdk import DAG, BaseOperator, CronTriggerTimetable, TaskGroup

    t0 = time.perf_counter()

    class Warm(BaseOperator):
        template_fields = ("s", "d", "items", "n")

        def __init__(self, s, d, items, n, **kwargs):
            super().__init__(**kwargs)
            self.s, self.d, self.items, self.n = s, d, items, n

    with (
        DAG(
            "bench_probe_warmup",
            schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            default_args={"retries": 1},
        ),
        TaskGroup("g", default_args={"retries": 2}),
    ):
        a = Warm(task_id="a", s="x", d={"k": [1, True, None, 1.5, "y"]}, items=["z"], n=None)
        b = Warm(task_id="b", s="x", d={}, items=[{"q": False}], n=3)
        a >> b
    return time.perf_counter() - t0


def upload(args: argparse.Namespace) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from composer.targets import open_target

    with open(args.blob, "rb") as handle:
        files = [(rel, data) for rel, data in pickle.load(handle) if rel.endswith(".py")]
    target = open_target(args.url)
    t_import = time.perf_counter() - T0
    t1 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(target.write, rel, data, None) for rel, data in files]:
            future.result()
    return {"t_import": t_import, "t_main": time.perf_counter() - t1, "files": len(files)}


def parse(args: argparse.Namespace) -> tuple[dict, bool]:
    t_import = _imports([*PARSE_IMPORTS, *args.imports])
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    t_warm = _first_dag()
    t1 = time.perf_counter()
    if args.single:
        bag = DagBag(
            dag_folder=args.path,
            safe_mode=False,
            load_op_links=False,
            bundle_path=Path(args.bundle or os.path.dirname(args.path)),
        )
    else:
        bag = DagBag(dag_folder=args.path, bundle_path=Path(args.bundle or args.path))
    t_main = time.perf_counter() - t1
    result = {
        "t_import": t_import,
        "t_warm": t_warm,
        "t_main": t_main,
        "dags": len(bag.dags),
        "errors": len(bag.import_errors),
        "error_sample": [str(e)[-400:] for e in bag.import_errors.values()][:1],
    }
    ok = (args.expect is None or result["dags"] == args.expect) and not result["errors"]
    times = []
    for path in args.also:
        t2 = time.perf_counter()
        other = DagBag(
            dag_folder=path, safe_mode=False, load_op_links=False, bundle_path=Path(args.bundle)
        )
        times.append(time.perf_counter() - t2)
        ok = ok and len(other.dags) == 1 and not other.import_errors
    if times:
        times.sort()
        result["t_also_median"] = times[len(times) // 2]
        result["also_files"] = len(times)
    return result, ok


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.probe")
    sub = ap.add_subparsers(dest="mode", required=True)
    imp = sub.add_parser("imports")
    imp.add_argument("--import", dest="imports", action="append", default=[])
    par = sub.add_parser("parse")
    par.add_argument("path")
    par.add_argument("--single", action="store_true")
    par.add_argument("--bundle")
    par.add_argument("--import", dest="imports", action="append", default=[])
    par.add_argument("--expect", type=int)
    par.add_argument("--also", action="append", default=[])
    wri = sub.add_parser("write")
    wri.add_argument("blob")
    wri.add_argument("out")
    upl = sub.add_parser("upload")
    upl.add_argument("blob")
    upl.add_argument("url")
    upl.add_argument("--jobs", type=int, default=16)
    args = ap.parse_args()
    if args.mode == "imports":
        _finish({"t_import": _imports(args.imports), "modules": len(sys.modules)})
    elif args.mode == "parse":
        _finish(*parse(args))
    elif args.mode == "upload":
        _finish(upload(args))
    else:
        _finish(write_floor(args.blob, args.out))


if __name__ == "__main__":
    main()
