"""The verification process (see composer/verify/verifier.py): imports files with Airflow's own
DagBag and serializes their DAGs, as the DAG processor does, and reports per file.

Runs in a fresh interpreter of the target's Airflow (2.11 or 3), whose import path holds
the `composer` package as `fleet deploy` ships it and not the checkout; so it uses the
standard library and Airflow only. Speaks newline-delimited JSON over two pipes:
first {"airflow": version}; then, per request {"folder": F, "files": [relative paths]},
{"results": {path: {"error": text or null, "line": n or null, "dags": [dag_id, ...]}}}.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import traceback
from typing import Any

MAX_MESSAGE = 400
FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


def _dagbag_class() -> type:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    return DagBag


def _serializer() -> Any:
    """What the DAG processor stores every parsed DAG as: a DAG it cannot serialize is
    an import error there, so it is one here."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization  # Airflow 3.3

        return DagSerialization.to_dict
    except ImportError:
        from airflow.serialization.serialized_objects import SerializedDAG  # Airflow 2

        return SerializedDAG.to_dict


def summarize(text: str, path: str) -> tuple[str, int | None]:
    """Airflow's message on one line (the exception line(s) after the last frame), and
    the line of `path` where it was raised, when the traceback reaches it."""
    lines = text.strip().splitlines()
    line_no = None
    last_frame = -1
    for i, line in enumerate(lines):
        match = FRAME.match(line)
        if match:
            last_frame = i
            if os.path.realpath(match["file"]) == os.path.realpath(path):
                line_no = int(match["line"])
    tail = lines[last_frame + 1 :] if last_frame >= 0 else lines
    if last_frame >= 0 and tail and tail[0].startswith("    "):
        tail = tail[1:]  # the source line of the last frame
    tail = [t.strip() for t in tail if t.strip() and not set(t.strip()) <= set("^~ ")]
    message = " ".join(tail) or (lines[-1].strip() if lines else "unknown error")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return message, line_no


def check_folder(bag_class: type, serialize: Any, folder: str, files: list[str]) -> dict:
    """Import each file on its own, so every failure is attributed to its file."""
    bag = bag_class(dag_folder=folder, collect_dags=False)
    results: dict[str, dict[str, Any]] = {}
    for rel in files:
        path = os.path.join(folder, rel)
        bag.import_errors.clear()
        error: str | None = None
        dags = bag.process_file(path, only_if_updated=False, safe_mode=False) or []
        if bag.import_errors:
            error = next(iter(bag.import_errors.values()))
        else:
            for dag in dags:
                try:
                    serialize(dag)
                except Exception:
                    error = traceback.format_exc(limit=-20)
                    break
        if error is None and not dags:
            error = "DagBag found no DAG in the file"
        message, line = summarize(error, path) if error else (None, None)
        results[rel] = {"error": message, "line": line, "dags": sorted(d.dag_id for d in dags)}
    for name in [m for m in sys.modules if m.startswith("unusual_prefix_")]:
        del sys.modules[name]  # a worker verifies thousands of files: keep none of them
    bag.dags.clear()
    del bag
    gc.collect()
    return results


def main(read_fd: int, write_fd: int) -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    import airflow

    logging.disable(logging.CRITICAL)  # DagBag logs every failure; we report them
    bag_class = _dagbag_class()
    serialize = _serializer()
    sys.dont_write_bytecode = True  # the verified files are imported once
    with os.fdopen(read_fd, "r") as requests, os.fdopen(write_fd, "w") as answers:
        answers.write(json.dumps({"airflow": airflow.__version__}) + "\n")
        answers.flush()
        for line in requests:
            request = json.loads(line)
            results = check_folder(bag_class, serialize, request["folder"], request["files"])
            answers.write(json.dumps({"results": results}) + "\n")
            answers.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
