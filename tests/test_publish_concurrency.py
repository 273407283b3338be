"""Two runs against one local target (SPEC section 5): they never interleave, a run
planned before another published cannot drop that run's customers from the manifest,
temp files are only ever removed by their writer (or, once it is dead, by the lock
holder), and every write is made durable in order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from composer.errors import TargetError
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.targets.local import TMP_PREFIX, LocalTarget
from tests.conftest import REPO, TEMPLATES, add_customer, make_store, remove_customer
from tests.test_publish_local import new_district, sync


def owned(target: Path) -> set[str]:
    return set(json.loads((target / MANIFEST).read_bytes())["files"])


def fleet_files(target: Path) -> set[str]:
    return {p.relative_to(target).as_posix() for p in target.rglob("*.py")}


HOLDER = textwrap.dedent(
    """
    import sys, time
    from composer.targets import open_target
    lock = open_target(sys.argv[1]).lock(wait=0)
    lock.__enter__()
    print("held", flush=True)
    time.sleep(120)
    """
)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hold_lock(url: str) -> subprocess.Popen:
    """Another process holding the target's lock until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_planned_before_another_published_cannot_orphan_that_runs_customer(
    tmp_path, demo_snapshot, fleet_cli
):
    """The stale run stops before writing anything; the onboarded district stays owned,
    later syncs are clean, and off-boarding it still removes its files."""
    target = tmp_path / "dags"
    old = make_store(tmp_path / "old.db", demo_snapshot)
    onboarded = add_customer(demo_snapshot, *new_district())
    new = make_store(tmp_path / "new.db", onboarded)
    sync(old, target)
    stale = plan_fleet(
        make_store(tmp_path / "old2.db", remove_customer(demo_snapshot, "austin-isd")),
        f"file://{target}",
        TEMPLATES,
    )
    sync(new, target)  # the newer run publishes tulsa-ps first
    before = {p: (target / p).read_bytes() for p in fleet_files(target)}

    with pytest.raises(TargetError, match=r"another run changed .* since this run listed it"):
        apply_fleet(stale)

    assert {p: (target / p).read_bytes() for p in fleet_files(target)} == before
    assert "tulsa-ps" in json.loads((target / MANIFEST).read_bytes())["customers"]
    code, _out, err = fleet_cli("sync", "--store", new, "--target", f"file://{target}")
    assert code == 0, err
    gone = make_store(tmp_path / "gone.db", remove_customer(onboarded, "tulsa-ps"))
    code, out, err = fleet_cli("sync", "--store", gone, "--target", f"file://{target}")
    assert code == 0, err
    assert "tulsa-ps" not in json.loads((target / MANIFEST).read_bytes())["customers"]
    assert b"tulsa-ps" not in (target / "fleet_shard_000.py").read_bytes() and "1 changed" in out


def test_a_second_sync_waits_a_bounded_time_then_names_the_holder(tmp_path, demo_store, fleet_cli):
    url = f"file://{tmp_path}/dags"
    holder = hold_lock(url)
    try:
        code, _out, err = fleet_cli(
            "sync", "--store", demo_store, "--target", url, "--lock-wait", "0.5"
        )
    finally:
        holder.kill()
        holder.wait()
    assert code == 3
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert f"locked by pid {holder.pid} on " in lines[0] and " -c " in lines[0]
    assert not list((tmp_path / "dags").rglob("*.py"))


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, demo_store, fleet_cli):
    url = f"file://{tmp_path}/dags"
    holder = hold_lock(url)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    code, out, err = fleet_cli("sync", "--store", demo_store, "--target", url, "--lock-wait", "0")
    assert code == 0, err
    assert "17 added" in out  # 15 modules, their shard file (28 DAGs), the legacy file


def test_a_plan_beside_a_sync_leaves_the_syncs_temp_files_alone(tmp_path, demo_store, fleet_cli):
    target = tmp_path / "dags"
    sync(demo_store, target)
    # what a sync writing right now has on disk: a temp file of a live process
    in_flight = target / f"{TMP_PREFIX}fleet_shard_000.py.{os.getpid()}-00ff"
    in_flight.write_bytes(b"half a DAG")
    code, out, _ = fleet_cli("plan", "--store", demo_store, "--target", f"file://{target}")
    assert code == 0 and "0 to add, 0 to change, 0 to remove, 17 unchanged" in out
    assert in_flight.exists()
    # a sync (listing under the lock) removes only temp files of writers that are gone
    dead = target / f"{TMP_PREFIX}fleet_shard_001.py.{dead_pid()}-00ff"
    dead.write_bytes(b"half a DAG")
    assert fleet_cli("sync", "--store", demo_store, "--target", f"file://{target}")[0] == 0
    assert in_flight.exists() and not dead.exists()


def test_concurrent_syncs_of_an_old_and_a_new_store_never_orphan_a_customer(
    tmp_path, demo_snapshot
):
    """Real processes, started together, two rounds: each sync finishes cleanly (one
    waits for the other), a plan beside them never fails on the target, and after each
    round every fleet file is in the manifest."""
    target = tmp_path / "dags"
    old = make_store(tmp_path / "old.db", demo_snapshot)
    new = make_store(tmp_path / "new.db", add_customer(demo_snapshot, *new_district()))
    env = {**os.environ, "FLEET_TARGET": f"file://{target}"}
    for _round in range(2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "composer.cli.main", "sync", "--store", store],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for store in (new, old)
        ]
        planner = subprocess.Popen(
            [sys.executable, "-m", "composer.cli.main", "plan", "--store", new],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for proc in procs:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        _out, err = planner.communicate(timeout=120)
        assert planner.returncode in (0, 1), err  # never a target failure (3)
        assert fleet_files(target) <= owned(target)
        assert not [p for p in target.rglob(f"{TMP_PREFIX}*")]
    code = subprocess.run(
        [sys.executable, "-m", "composer.cli.main", "sync", "--store", new],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0, code.stderr
    assert fleet_files(target) == owned(target)


def test_a_write_into_a_folder_another_run_just_removed_succeeds(tmp_path):
    root = tmp_path / "dags"
    writer, remover = LocalTarget(f"file://{root}"), LocalTarget(f"file://{root}")
    first = writer.write("c/a.py", b"a = 1\n", None)
    remover.delete("c/a.py", first)  # removes the now-empty folder c/
    assert not (root / "c").exists()
    writer.write("c/b.py", b"b = 1\n", None)
    assert (root / "c" / "b.py").read_bytes() == b"b = 1\n"


def test_a_write_is_fsynced_before_and_after_its_rename(tmp_path, monkeypatch):
    """File content is durable before it gets its name; the name is durable after."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "dags"
    LocalTarget(f"file://{root}").write("c/a.py", b"a = 1\n", None)
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert Path(events[0][1]).name.startswith(TMP_PREFIX)
    assert events[1][1] == str(root / "c" / "a.py")
    assert events[2][1] == str(root / "c")


def test_a_local_write_refuses_a_file_changed_since_the_listing(tmp_path):
    root = tmp_path / "dags"
    target = LocalTarget(f"file://{root}")
    listed = target.write("c/a.py", b"a = 1\n", None)
    (root / "c" / "a.py").write_bytes(b"edited meanwhile\n")
    with pytest.raises(TargetError, match="changed since this run listed it"):
        target.write("c/a.py", b"a = 2\n", listed)
    (root / "c" / "new.py").write_bytes(b"written by someone else\n")
    with pytest.raises(TargetError, match="changed since this run listed it"):
        target.write("c/new.py", b"x = 1\n", None)
    assert (root / "c" / "a.py").read_bytes() == b"edited meanwhile\n"
    assert (root / "c" / "new.py").read_bytes() == b"written by someone else\n"


def test_a_sigkill_during_apply_leaves_no_partial_file_and_the_next_run_converges(tmp_path):
    """A real `fleet sync` process killed while it writes: every DAG file on disk is
    whole, and the next run (taking over the dead run's lock) completes the fleet."""
    from bench.fleetgen import write_store
    from composer.pipeline import plan_fleet

    store = write_store(tmp_path / "fleet.db", 80)
    templates = tmp_path / "templates"  # many small files, so a kill lands mid-apply
    shutil.copytree(TEMPLATES, templates)
    settings = templates / "fleet.yaml"
    settings.write_text(settings.read_text().replace("shards: auto", "shards: 256"))
    # the shard files that hold the customers, as planned into an empty folder
    wanted = len(plan_fleet(store, f"file://{tmp_path / 'empty'}", templates).plan.added)
    target = tmp_path / "dags"
    env = {**os.environ, "FLEET_STORE": store, "FLEET_TARGET": f"file://{target}"}
    argv = [sys.executable, "-m", "composer.cli.main", "sync", "--jobs", "1", "--build-jobs", "1"]
    argv += ["--templates", str(templates)]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and len(fleet_files(target) if target.exists() else ()) < 20:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    on_disk = {p: (target / p).read_bytes() for p in fleet_files(target)}
    assert 20 <= len(on_disk) < wanted  # killed mid-apply

    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert fleet_files(target) == owned(target) and len(owned(target)) == wanted
    for path, data in on_disk.items():  # what the killed run wrote was already whole
        assert (target / path).read_bytes() == data
    assert not list(target.rglob(f"{TMP_PREFIX}*"))
    again = subprocess.run(
        [*argv[:3], "plan", "--detailed-exitcode"], cwd=tmp_path, env=env, capture_output=True
    )
    assert again.returncode == 0


def test_the_lock_is_reentrant_in_one_thread_however_the_url_spells_the_folder(tmp_path):
    """The CLI holds it across plan and apply while applying takes it again; another
    thread of the same process is kept out like another process."""
    root = tmp_path / "dags"
    root.mkdir()
    (tmp_path / "link").symlink_to(root)
    direct, via_link = LocalTarget(f"file://{root}"), LocalTarget(f"file://{tmp_path}/link")
    refused: list[str] = []

    def other_thread() -> None:
        try:
            with via_link.lock(0):
                pass
        except TargetError as exc:
            refused.append(str(exc))

    with direct.lock(0):
        with via_link.lock(0):
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(refused) == 1 and f"locked by pid {os.getpid()} on " in refused[0]
    with via_link.lock(0):  # released by the outermost exit
        pass
