"""The build worker's main loop (see composer/parallel.py): read the snapshot, then
build each chunk of customer ids it is sent, until its input closes."""

from __future__ import annotations

import sys
import traceback
from multiprocessing.connection import Connection

from composer.build import FleetBuilder
from composer.parallel import pack


def main(read_fd: int, write_fd: int) -> None:
    receive = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    snapshot, templates_dir, shards = receive.recv()
    builder = FleetBuilder(snapshot, templates_dir)
    builder.shards = shards  # as the parent sized it (it knows the published count)
    while True:
        try:
            chunk = receive.recv()
        except EOFError:
            return
        try:
            send.send(("ok", [pack(builder, customer_id) for customer_id in chunk]))
        except Exception:  # reported to the parent, which stops the sync
            send.send(("error", traceback.format_exc(limit=5).strip().splitlines()[-1]))
            return


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
