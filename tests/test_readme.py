"""The README starts with the two commands; the Python API examples of docs/ run as written
(in a temporary folder); every docs/ page the README links exists."""
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")
README = os.path.join(ROOT, "README.md")


def _run_example(doc, heading, folder, monkeypatch):
    """Execute the first ```python block after ``heading`` of ``docs/doc`` inside ``folder``."""
    text = open(os.path.join(ROOT, "docs", doc)).read()
    code = re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)
    monkeypatch.chdir(folder)
    exec(compile(code, "README.md", "exec"), {})


def test_readme_starts_with_the_two_commands():
    lines = [l.strip() for l in open(README).read().splitlines() if l.strip().startswith("make ")]
    assert lines[:2] == ["make demo", "make test"]


def test_readme_is_a_short_entry_point_whose_links_exist():
    text = open(README).read()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\b(TEST_TIME|TABLE_[A-Z]+|TODO|TBD)\b", text)   # no placeholder
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert "docs/status.md" in links and "docs/results.md" in links
    for link in links:
        assert os.path.exists(os.path.join(ROOT, link)), link


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    _run_example("models.md", "## Python API: pretrain", tmp_path, monkeypatch)
    assert os.path.exists(tmp_path / "runs" / "api" / "pre" / "encoder.keras")
    assert "(None, 64)" in capsys.readouterr().out


def test_readme_explain_example_runs(tmp_path, monkeypatch, capsys):
    _run_example("explain.md", "## Python API: explain", tmp_path, monkeypatch)
    assert (tmp_path / "ecg0.png").stat().st_size > 50_000 and (tmp_path / "ecg0.svg").exists()
    assert "'QRS'" in capsys.readouterr().out


def test_readme_extend_example_runs_and_its_model_works_in_the_cli(tmp_path, monkeypatch,
                                                                    capsys):
    """The Keras extension example runs as written, and predict / export load its model
    (RandomAugment inside, the shipped encoder's layers) in a fresh process."""
    import subprocess
    import sys

    import numpy as np

    from ecg_moco_tf.data.records import write_wfdb

    _run_example("deployment.md", "## Python API: extend the model in Keras", tmp_path,
                 monkeypatch)
    assert "(2, 1)" in capsys.readouterr().out
    model = tmp_path / "augmented_classifier.keras"
    x = np.random.default_rng(0).normal(0, 0.2, (12, 5000)).astype("float32")
    write_wfdb(str(tmp_path / "r0"), x)
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "predict",
                        f"--model={model}", f"--input={tmp_path / 'r0'}",
                        f"--out={tmp_path / 'p.csv'}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "scored 1 of 1" in r.stdout, r.stderr[-2000:]
    from ecg_moco_tf.export import export_all
    from ecg_moco_tf.models import load_model

    card = export_all(load_model(str(model)), str(tmp_path / "exp"), x[None].repeat(2, 0),
                      formats=("savedmodel", "float32"))
    assert card["parity"]["formats"]["float32"]["max_abs_diff"] < 1e-4


def test_finetune_from_arrays_example_runs(tmp_path, monkeypatch, capsys):
    _run_example("downstream.md", "## Python API: fine-tune from arrays", tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "best_val_auc" in out and re.search(r"\(\d+,\)$", out.strip())


def test_readme_tables_are_the_published_results():
    """Each Table 2 excerpt of the README is what the report code makes of the published
    run's results.json (``ecg-moco report`` prints it), not numbers typed by hand."""
    from ecg_moco_tf.evaluation.report import table2_of_run

    text = open(README).read()
    blocks = re.findall(r"<!-- table2: (\S+) -->\n(.*?)\n<!-- end -->", text, re.S)
    assert len(blocks) == 2
    for folder, table in blocks:
        assert table == table2_of_run(os.path.join(ROOT, folder)), folder


def test_readme_python_recipe_runs(tmp_path, monkeypatch):
    """The README's own-data recipe in Python, as written, on a tiny folder of records (one
    epoch, one learning rate, the SavedModel only: the only changes)."""
    import numpy as np
    import pandas as pd

    from ecg_moco_tf.data.records import write_wfdb

    text = open(README).read()
    code = re.search(r"## Python\n.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace('out_dir="runs/mine")', 'out_dir="runs/mine", epochs=1, '
                        'learning_rates=1e-3, batch_size=8)')
    code = code.replace('"saved_models/mine")', '"saved_models/mine", formats=("savedmodel",))')
    assert code.count("epochs=1") == 1 and code.count('formats=("savedmodel",)') == 1
    rng = np.random.default_rng(0)
    for folder, n in (("DIR", 40), ("new_ecgs", 2)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            x = rng.normal(0, 0.3, (12, 5000))
            x[2], x[3] = x[1] - x[0], -(x[0] + x[1]) / 2
            write_wfdb(str(tmp_path / folder / f"r{i}"), x)
    pd.DataFrame({"record": [f"r{i}" for i in range(40)], "patient_id": range(40),
                  "LVSD": [i % 2 for i in range(40)]}).to_csv(tmp_path / "labels.csv",
                                                               index=False)
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    pred = pd.read_csv(tmp_path / "predictions.csv")
    assert len(pred) == 2 and pred["probability"].between(0, 1).all()
    assert (tmp_path / "saved_models" / "mine" / "model_card.json").exists()
    # exporting with other splits of the same ECGs would test on training ECGs: refused
    import pytest

    from ecg_moco_tf import assign_splits
    from ecg_moco_tf.export import export_from_manifest

    other = assign_splits(ns["df"].drop(columns="split"), seed=1, design="finetune")
    with pytest.raises(ValueError, match="were used to fine-tune or validate"):
        export_from_manifest("runs/mine/classifier.keras", other, "saved_models/other",
                             formats=("savedmodel",))
    assert not (tmp_path / "saved_models" / "other").exists()
