"""Reader speed: WFDB records through read_record (to the standard 12 x 5000 array).

Uses ../shared/data/ptbxl-subset when present (real PTB-XL records), else a synthetic cohort.
Prints one JSON object.
"""
import json
import os
import shutil
import tempfile
import time

import pandas as pd

from ecg_moco_tf.data import synthetic
from ecg_moco_tf.data.records import read_record

PTBXL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ptbxl-subset")


def main(n=300):
    tmp = None
    if os.path.isdir(PTBXL):
        root, source = PTBXL, "ptbxl-subset"
        records = pd.read_csv(os.path.join(PTBXL, "labels.csv"))["record"][:n]
    else:
        tmp = root = tempfile.mkdtemp()
        source = "synthetic"
        records = synthetic.write_cohort(tmp, synthetic.CohortConfig(num_patients=n // 2),
                                         progress=False)["record"]
    try:
        t0 = time.perf_counter()
        for r in records:
            read_record(os.path.join(root, r))
        dt = time.perf_counter() - t0
    finally:
        if tmp:
            shutil.rmtree(tmp)
    print(json.dumps({"wfdb_read_ecg_per_s": round(len(records) / dt, 1),
                      "records": len(records), "source": source}))


if __name__ == "__main__":
    main()
