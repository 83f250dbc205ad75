import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import monitorch_widget

HERE = Path(__file__).parent


def test_two_gloo_ranks_reduce_to_the_single_process_numbers(tmp_path):
    sys.path.insert(0, str(HERE))
    import dist_worker

    single = dist_worker.make_inspector()
    dist_worker.train(single, rank=0, world=1)

    out = tmp_path / "rank0.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    procs = [subprocess.Popen([sys.executable, str(HERE / "dist_worker.py"), str(r), "2", str(tmp_path / "init"),
                               str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(2)]
    logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)

    merged = monitorch_widget.load(out).runs[0]
    ref = single.history.runs[0]
    assert [c.key for c in merged.columns] == [c.key for c in ref.columns]
    np.testing.assert_allclose(merged.data, ref.data, rtol=1e-6, equal_nan=True)
    # the tick meets over the store: no collective of the user's process group
    assert int((tmp_path / "rank0.json.calls").read_text()) == 0
    assert json.loads(out.read_text())["runs"][0]["epochs"] == [1.0, 2.0, 3.0]
    assert not np.isnan(merged.series("Loss", "Loss", "train_loss mean")).any()
