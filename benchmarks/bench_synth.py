"""Synthetic cohort generation speed and bytes on disk per ECG. Prints one JSON object.

``synth_ecg_per_s`` is the median (mean) of the second and third generations of the cohort in
the process (steady state; ``synth_ecg_per_s_all`` lists the three);
``synth_ecg_per_s_first_call`` the first: on the VMs measured here, memory a process touches for
the first time costs about 1 s per 0.5 GB in page faults (a 4,000-ECG cohort is 0.9 GB), which
is the machine's cost, not the generator's.
"""
import json
import os
import shutil
import statistics
import tempfile
import time

from ecg_moco_tf.data import synthetic


def main(num_patients=2000, write_patients=300):
    cfg = synthetic.CohortConfig(num_patients=num_patients, seed=0)
    synthetic.generate(synthetic.CohortConfig(num_patients=20))         # warm-up
    rates, n = [], 0
    for _ in range(3):                 # the first call's memory is freed before the second
        t0 = time.perf_counter()
        n = len(synthetic.generate(cfg)[0])
        rates.append(n / (time.perf_counter() - t0))
    out = tempfile.mkdtemp()
    try:
        t0 = time.perf_counter()
        df = synthetic.write_cohort(out, synthetic.CohortConfig(num_patients=write_patients),
                                    progress=False)
        write_s = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    finally:
        shutil.rmtree(out)
    print(json.dumps({
        "synth_ecg_per_s": round(statistics.median(rates[1:]), 1),
        "synth_ecg_per_s_all": [round(r, 1) for r in rates],
        "synth_ecg_per_s_first_call": round(rates[0], 1),
        "synth_ecgs": n,
        "synth_and_write_wfdb_ecg_per_s": round(len(df) / write_s, 1),
        "bytes_on_disk_per_ecg": round(size / len(df)),
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
