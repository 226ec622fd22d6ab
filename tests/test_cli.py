import os
import subprocess
import sys

import pandas as pd

from ecg_moco_tf.cli.main import run


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", *args],
                          capture_output=True, text=True, timeout=300)


def test_help_lists_commands_and_only_own_flags():
    r = _cli("synth", "--help")
    assert r.returncode == 0
    assert "--num_patients" in r.stdout and "--manifest" not in r.stdout
    r = _cli("validate", "--help")
    assert "--manifest" in r.stdout and "--num_patients" not in r.stdout
    assert run(["ecg-moco", "nope"]) == 2


def test_version():
    import ecg_moco_tf

    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ecg-moco {ecg_moco_tf.__version__}"


def test_synth_then_validate_with_flagfile(tmp_path):
    ff = tmp_path / "synth.flags"
    ff.write_text(f"--out={tmp_path}/c\n--num_patients=12\n--seed=4\n")
    r = _cli("synth", f"--flagfile={ff}")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert df["patient_id"].nunique() == 12 and df["split"].notna().all()
    r = _cli("validate", f"--manifest={tmp_path}/c/manifest.csv")
    assert r.returncode == 0 and "0 with problems" in r.stdout
    os.remove(tmp_path / "c" / (df["record"][0] + ".dat"))
    r = _cli("validate", f"--manifest={tmp_path}/c/manifest.csv",
             f"--report={tmp_path}/report.csv")
    assert r.returncode == 1 and df["record"][0] in r.stdout
    report = pd.read_csv(tmp_path / "report.csv")
    assert len(report) == len(df) and list(report.loc[report["status"] != "ok", "record"]) == [
        df["record"][0]]


def test_import_turns_onednn_on_unless_the_user_chose():
    code = "import os, ecg_moco_tf; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    for given, expect in ((None, "1"), ("0", "0")):
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        if given is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = given
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.stdout.strip() == expect, r.stderr


def test_a_usage_error_raised_as_systemexit_is_one_line_and_exit_2(tmp_path):
    r = _cli("finetune", f"--manifest={tmp_path}/m.csv", "--experiment=proposed")
    assert r.returncode == 2
    assert "the proposed experiment needs --encoder=" in r.stderr.strip().splitlines()[-1]


def test_missing_files_are_one_line_and_exit_2(tmp_path):
    for args, what in ((("predict", f"--model={tmp_path}/nope.keras", f"--input={tmp_path}",
                         f"--out={tmp_path}/p.csv"), "nope.keras"),
                       (("pretrain", f"--manifest={tmp_path}/nope.csv",
                         f"--out={tmp_path}/pre"), "nope.csv")):
        r = _cli(*args)
        assert r.returncode == 2, r.stderr[-1500:]
        last = r.stderr.strip().splitlines()[-1]
        assert what in last and "Traceback" not in r.stderr


def test_shared_flag_names_are_accepted_across_commands():
    """Earlier names still work in a fresh process: explain's --records is --input (predict's
    name), pretrain's --momentum_final is --moco_momentum_final (reproduce's); the whole
    table: tests/test_cli_config.py."""
    code = ("import importlib, sys; from absl import flags; "
            "importlib.import_module('ecg_moco_tf.cli.' + sys.argv[1]); "
            "flags.FLAGS(['x'] + sys.argv[3:]); print(getattr(flags.FLAGS, sys.argv[2]))")
    for cmd, name, args, value in (
            ("explain", "input", ["--records=my_ecgs", "--model=m.keras"], "my_ecgs"),
            ("pretrain", "moco_momentum_final", ["--momentum_final=0.99", "--manifest=m.csv"],
             "0.99")):
        r = subprocess.run([sys.executable, "-c", code, cmd, name, *args],
                           capture_output=True, text=True, timeout=300)
        assert r.stdout.strip() == value, r.stderr[-1000:]


def test_commands_without_a_model_load_no_tensorflow_and_print_no_notices(tmp_path):
    """synth, split, ptbxl and manifest never build a model: they must not import TensorFlow
    (seconds of start-up and its CUDA / oneDNN notices on stderr)."""
    from ecg_moco_tf.cli.main import NO_TENSORFLOW

    for cmd in sorted(NO_TENSORFLOW):
        code = (f"import sys; import ecg_moco_tf.cli.{cmd}; "
                "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "[]", (cmd, r.stdout, r.stderr[-500:])
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "split", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--test" in r.stdout and "cuda" not in r.stderr.lower()


def test_retracing_notices_are_hidden_and_other_tensorflow_warnings_kept():
    """The commands build new models on purpose; TensorFlow's retracing warning is dropped
    (the CLI installs the filter), every other TensorFlow warning still shows."""
    code = """if True:
        import sys
        import tensorflow as tf
        from ecg_moco_tf import console
        if sys.argv[1] == "filtered":
            console.hide_retracing_notices()
        for i in range(8):
            f = tf.function(lambda x: x + 1)
            f(tf.constant(float(i)))
        tf.get_logger().warning("another warning stays")
    """
    for mode, expected in (("plain", True), ("filtered", False)):
        r = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-1000:]
        assert ("triggered tf.function retracing" in r.stderr) is expected, (mode, r.stderr)
        assert "another warning stays" in r.stderr
