"""benchmarks/gpu_check.sh runs once, unattended, on a rented GPU: every code path is run here
on the CPU (GPU_CHECK_TINY=1), and so are its answers to no GPU, a failing part, a part out of
time and a used-up time budget."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
PARTS = ["step_float32", "step_mixed_float16", "paper_size_run_2_epochs", "step_xla",
         "step_xla_mixed_float16"]


def _check(tmp_path, python=sys.executable, timeout=900, **env):
    full = {**os.environ, "PYTHON": python, "GPU_CHECK_LOGS": str(tmp_path / "logs"), **env}
    r = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=full,
                       timeout=timeout, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.strip().splitlines()], r.stderr


def _fake_python(tmp_path, body):
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.slow
def test_tiny_check_runs_every_part_and_prints_json_lines(tmp_path):
    lines, _ = _check(tmp_path, GPU_CHECK_TINY="1")
    assert lines[0]["status"] == "tiny" and lines[-1]["status"] == "done"
    parts = {line["part"]: line for line in lines[1:-1]}
    assert list(parts) == PARTS
    assert all(p["status"] == "ok" for p in parts.values()), parts
    for name in [p for p in PARTS if p.startswith("step")]:
        p = parts[name]
        assert p["check"] == "moco_step" and p["ecg_per_s"] > 0 and p["batch"] == 8
        assert p["precision"] == ("mixed_float16" if "mixed" in name else "float32")
        assert p["xla"] == ("xla" in name)
    run = parts["paper_size_run_2_epochs"]
    assert run["check"] == "paper_size_run" and len(run["epoch_s"]) == 2 and run["finite"]
    assert run["estimate_30_epochs_h"] > 0 and run["ecgs_per_epoch"] == 48
    assert (tmp_path / "logs" / "step_xla.log").exists()


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: gpu_check.sh would measure it")
    lines, err = _check(tmp_path, timeout=300)
    assert len(lines) == 1 and lines[0]["status"] == "skipped"
    assert "no GPU visible to TensorFlow" in lines[0]["reason"]
    assert "GPU_CHECK_TINY=1" in err


def test_failed_and_timed_out_parts_are_reported_and_the_rest_still_runs(tmp_path):
    broken = _fake_python(tmp_path, 'printf \'no module "tensorflow"\\n\\tat\\\\here\\n\' >&2; '
                                    'exit 3')
    lines, _ = _check(tmp_path, broken, GPU_CHECK_TINY="1")
    parts = [line for line in lines if "part" in line]
    assert [p["part"] for p in parts] == PARTS
    assert all(p["status"] == "failed" and p["rc"] == 3 for p in parts)
    assert parts[0]["log_tail"] == 'no module "tensorflow"\n\tat\\here'
    assert lines[-1]["status"] == "done"

    slow = _fake_python(tmp_path, 'echo \'{"progress": "epoch 1"}\'; sleep 30')
    lines, _ = _check(tmp_path, slow, GPU_CHECK_TINY="1", GPU_CHECK_LIMIT_S="1",
                      timeout=120)
    parts = [line for line in lines if "part" in line]
    assert [p["status"] for p in parts] == ["timeout"] * 5
    assert parts[2]["partial"] == {"progress": "epoch 1"}      # what it finished in time

    lines, _ = _check(tmp_path, broken, GPU_CHECK_TINY="1", GPU_CHECK_BUDGET_S="10")
    assert [p["status"] for p in lines if "part" in p] == ["not run"] * 5
    assert "time budget of 10 s" in lines[1]["reason"]
