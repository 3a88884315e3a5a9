"""A quiet terminal: misomap's messages by default, the libraries' chatter only at DEBUG."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
from misomap.core.log import setup_logging
from misomap.runtime.cluster import dask_client

def main():
    setup_logging(sys.argv[1])
    with dask_client(2) as client:
        assert client.submit(sum, [1, 2]).result() == 3
    logging.getLogger("misomap").info("job done")

if __name__ == "__main__":
    main()
"""


def _run(level: str) -> str:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, level], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_local_cluster_is_quiet_at_info_and_talks_at_debug():
    quiet = _run("INFO")
    assert "misomap: job done" in quiet
    assert "distributed." not in quiet, quiet  # scheduler, nanny and worker start/stop lines
    loud = _run("DEBUG")
    assert "distributed." in loud  # the same run at DEBUG shows them: the check above can fail
