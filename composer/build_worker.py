"""The build worker's main loop (see composer/parallel.py): read the snapshot, then
build (and verify, when asked) each chunk of customer ids it is sent, until its input
closes."""

from __future__ import annotations

import sys
import traceback
from multiprocessing.connection import Connection

from composer.build import FleetBuilder
from composer.parallel import pack_chunk
from composer.verify.verifier import Verifier


def main(read_fd: int, write_fd: int) -> None:
    receive = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    snapshot, templates_dir, verify_python, start_after, shards = receive.recv()
    builder = FleetBuilder(snapshot, templates_dir)
    builder.composer.start_after.update(start_after)
    builder.shards = shards  # as the parent sized it (it knows the published count)
    # This worker's verification interpreter, started on the first file it must verify.
    verifier = Verifier(builder.settings.airflow_target, verify_python) if verify_python else None
    try:
        while True:
            try:
                chunk, existing = receive.recv()
            except EOFError:
                return
            try:
                send.send(("ok", pack_chunk(builder, chunk, existing, verifier)))
            except Exception:  # reported to the parent, which stops the sync
                send.send(("error", traceback.format_exc(limit=5).strip().splitlines()[-1]))
                return
    finally:
        if verifier is not None:
            verifier.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
