"""Run a scenario of ``ranks.py`` on N gloo ranks (CPU), one subprocess each, and collect what they return."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(scenario: str, tmp_path: Path, world: int = 2, timeout: float = 60, **args: Any) -> list[dict]:
    """Every rank's returned dict (rank order); fails with all ranks' output if one exits non-zero."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]), OMP_NUM_THREADS="1")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "ranks.py"), scenario, str(r), str(world), str(port),
                               str(tmp_path), json.dumps(args)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for r in range(world)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=timeout)[0].decode())
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"{scenario}: a rank ran past {timeout} s (a hang)") from None
    assert all(p.returncode == 0 for p in procs), "\n".join(f"--- rank {r}\n{log}" for r, log in enumerate(logs))
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
