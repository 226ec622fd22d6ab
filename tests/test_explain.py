"""Grad-CAM family, 12-lead plots, lead x wave attribution, faithfulness, `ecg-moco explain`."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data.records import LEADS
from ecg_moco_tf.explain import attribution as A
from ecg_moco_tf.explain import faithfulness as F
from ecg_moco_tf.explain.ecgplot import figure_size_px, plot_ecg
from tests.sizes import TINY

LEAD, WIDTH = LEADS.index("V2"), 200


def bump_data(n=192, seed=0):
    """Noise ECGs; label 1 adds a 1 mV, 0.4 s bump to lead V2 at a random time.

    Returns (signals, labels, bump starts)."""
    rng = np.random.default_rng(seed)
    x = (0.05 * rng.standard_normal((n, 12, 5000))).astype("float32")
    y = np.arange(n) % 2
    start = rng.integers(300, 4500, n)
    for i in np.where(y == 1)[0]:
        x[i, LEAD, start[i]:start[i] + WIDTH] += np.sin(np.pi * np.arange(WIDTH) / WIDTH)
    return x, y, start


@pytest.fixture(scope="module")
def bump_model():
    """A tiny classifier trained to react to the V2 bump only (seeded)."""
    import keras

    from ecg_moco_tf.models import build_encoder
    from ecg_moco_tf.models.classifier import build_classifier

    keras.utils.set_random_seed(1)
    x, y, _ = bump_data()
    clf = build_classifier(build_encoder(**TINY), hidden_units=8)
    for layer in clf.layers:     # ~100 steps: let the BN moving statistics catch up
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    clf.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    clf.fit(x, y, epochs=8, batch_size=16, verbose=0)
    xt, yt, st = bump_data(64, seed=1)
    acc = ((clf.predict(xt, verbose=0)[:, 0] > 0.5) == yt).mean()
    assert acc > 0.9, f"tiny model did not learn the bump (accuracy {acc})"
    return clf, xt[yt == 1], st[yt == 1], xt, yt


def _peak(maps):
    lead, t = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:])
    return lead, t


# Share of positive ECGs whose map peaks in lead V2 within the bump (+- one 64-sample step).
# LayerCAM and Score-CAM find it in every ECG for every training seed tried (0-3); Grad-CAM's
# position-averaged channel weights do not suit the flatten + dense head (it finds the bump for
# seeds 1-3, misses it for seed 0) and Grad-CAM++ finds it in 38-69 % of ECGs (chance: 1/12
# for the lead alone): see the module doc of explain/gradcam.py.
@pytest.mark.parametrize("method,share", [("layercam", 0.95), ("scorecam", 0.95),
                                          ("gradcam", 0.9), ("gradcam++", 0.3)])
def test_maps_peak_where_the_tiny_model_looks(bump_model, method, share):
    from ecg_moco_tf.explain.gradcam import gradcam

    clf, pos, start = bump_model[:3]
    maps = gradcam(clf, pos, method=method)
    assert maps.shape == pos.shape and maps.dtype == np.float32
    assert np.allclose(maps.max(axis=(1, 2)), 1.0)
    lead, t = _peak(maps)
    hit = (lead == LEAD) & (t >= start - 64) & (t < start + WIDTH + 64)
    assert hit.mean() >= share, (lead, t - start)


def test_encoder_mode_prototype_score_and_peak(bump_model):
    from ecg_moco_tf.explain.gradcam import class_prototypes, gradcam, score_model
    from ecg_moco_tf.models.classifier import copy_encoder

    clf, pos, _, xt, yt = bump_model
    enc_layers = clf.get_layer("features")
    import keras

    encoder = copy_encoder(keras.Model(clf.input, enc_layers.output))
    proto = class_prototypes(encoder, xt, yt)
    assert proto.shape == (3, 16)
    z = score_model(encoder, proto).predict(xt, verbose=0)
    np.testing.assert_allclose(z[:, 0], -z[:, 1], atol=1e-5)      # centred: opposite columns
    assert z[yt == 1, 1].mean() > 0 > z[yt == 0, 1].mean()
    lead, t = _peak(gradcam(encoder, pos, method="layercam", prototypes=proto))
    assert (lead == LEAD).mean() >= 0.9


def test_targets_layers_and_upsampling(bump_model):
    from ecg_moco_tf.explain.gradcam import resolve_layer, resolve_targets, upsample

    clf = bump_model[0]
    assert resolve_layer(clf) == "temporal_2_relu"
    with pytest.raises(ValueError, match="temporal_1_relu"):
        resolve_layer(clf, "no_such_layer")
    assert resolve_targets("label", [0, 1]).tolist() == [0, 1]
    assert resolve_targets("predicted", probabilities=[0.2, 0.7]).tolist() == [0, 1]
    assert resolve_targets("negative", labels=[1, 1]).tolist() == [0, 0]
    with pytest.raises(ValueError, match="label"):
        resolve_targets("label", [0, np.nan])
    up = upsample(np.array([[[0.0, 1.0]]]), 4)           # one row: repeated over 12 leads
    assert up.shape == (1, 12, 4)
    np.testing.assert_allclose(up[0, 5], [0, 0, 0.5, 1])   # centres at samples 1 and 3


def _synthetic_ecg():
    from ecg_moco_tf.data.synthetic import CohortConfig, generate

    return generate(CohortConfig(num_patients=6, seed=5))


def test_delineation_puts_r_peaks_in_qrs_and_orders_waves():
    sig, _, _ = _synthetic_ecg()
    for x in sig[:4]:
        codes, info = A.delineate(x)
        assert info["lead"] in A.DELINEATION_LEADS and info["beats"] >= 5   # II or a fallback
        slope = np.convolve(np.abs(np.diff(x, axis=1)).sum(0), np.ones(10) / 10, "same")
        steep = [i for i in range(150, 4850)                   # steepest in all leads: QRS
                 if slope[i] > 0.5 * slope.max() and slope[i] == slope[i - 150:i + 151].max()]
        in_qrs = {np.searchsorted(np.flatnonzero(np.diff(codes) != 0), i)    # run index
                  for i in steep if codes[i] == A.WAVES.index("QRS")}
        assert len(in_qrs) >= info["beats"] - 1               # (EMG bursts add other peaks)
        runs = [c for i, c in enumerate(codes) if i == 0 or c != codes[i - 1]]
        seq = "".join("pqstn"[c] for c in runs)
        assert seq.count("qst") >= info["beats"] - 2          # QRS -> ST -> T in each beat
        frac = A.time_fractions(codes)
        assert frac.sum() == pytest.approx(1) and 0.04 < frac[1] < 0.25


def test_delineation_skips_a_lead_with_implausibly_few_beats():
    x = _synthetic_ecg()[0][0].copy()
    x[1] = 0.001 * np.sin(np.arange(5000) / 500 * 2 * np.pi * 0.1)     # lead II: no beats
    x[1, [1000, 3000]] += 2.0                                          # but two spikes
    codes, info = A.delineate(x)
    assert info["lead"] != "II" and info["beats"] >= 5


def test_delineation_error_names_the_record():
    with pytest.raises(A.DelineationError, match="rec42"):
        A.delineate(np.zeros((12, 5000), np.float32), record="rec42")


def test_wave_shares_and_cohort_table_sum_as_documented():
    codes = np.repeat(np.arange(5), 1000).astype(np.int8)         # 20 % of samples per wave
    cam = np.zeros((12, 5000))
    cam[3, codes == 1] = 1.0                                      # all mass: lead aVR, QRS
    s = A.wave_shares(cam, codes)
    assert s[3, 1] == 1 and s.sum() == 1
    assert np.isnan(A.wave_shares(np.zeros((12, 5000)), codes)).all()
    rng = np.random.default_rng(0)
    maps = [rng.random((12, 5000)), np.ones((12, 5000)), np.zeros((12, 5000))]
    per = A.per_ecg_table(np.array(["a", "b", "c"]), np.array(["g1", "g2", "g2"]),
                          np.stack([A.wave_shares(m, codes) for m in maps]),
                          np.stack([A.time_fractions(codes)] * 3))
    assert len(per) == 3 * 60
    assert per.groupby("record")["share"].sum().loc[["a", "b"]].round(9).eq(1).all()
    tab = A.cohort_table(per)
    assert tab.groupby("group")["share"].sum().round(9).eq(1).all()
    g2 = tab[tab["group"] == "g2"]
    np.testing.assert_allclose(g2["enrichment"], 1.0)             # uniform map: no focus
    assert (g2["n_ecgs"] == 1).all() and (g2["n_no_evidence"] == 1).all()
    assert A.pivot(tab, "g1").shape == (12, 5)


def test_faithfulness_scores_by_hand():
    masks = np.zeros((2, 12, 5000), bool)
    masks[:, 0, :500] = True
    maps = masks.astype(float)
    np.testing.assert_allclose(F.energy_in_mask(maps, masks), 1.0)
    np.testing.assert_allclose(F.energy_in_mask(1.0 - maps, masks), 0.0)
    assert np.isnan(F.energy_in_mask(np.zeros_like(maps), masks)).all()
    far = np.zeros_like(maps)
    far[:, 0, 600] = 1                                    # 100 samples past the mask's end
    assert F.pointing_game(maps, masks).tolist() == [1.0, 1.0]
    assert F.pointing_game(far, masks, tolerance=32).tolist() == [0.0, 0.0]
    assert F.pointing_game(far, masks, tolerance=120).tolist() == [1.0, 1.0]
    r = F.random_maps(3, 5000, 78, seed=1)
    assert r.shape == (3, 12, 5000) and np.array_equal(r, F.random_maps(3, 5000, 78, seed=1))
    assert abs(F.energy_in_mask(r, np.broadcast_to(masks[0], r.shape)).mean() - 500 / 60000) < 0.01
    x = np.ones((2, 12, 5000), np.float32)

    def score(z):
        return z[:, 0, :500].mean(axis=1)                  # depends only on the masked span

    frac = (0.0, 500 / 60000)
    np.testing.assert_allclose(F.deletion_curve(score, x, maps, frac), [[1, 1], [0, 0]])
    rand_curve = F.deletion_curve(score, x, r[:2], frac)
    assert (rand_curve[1] > 0.5).all()
    assert F.curve_area((0, 0.5), [1, 1]) == pytest.approx(1.0)


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("layout", ["4x3", "12"])
def test_ecg_plot_files_have_the_stated_size(tmp_path, layout):
    sig, _, _ = _synthetic_ecg()
    cam = np.broadcast_to(np.linspace(0, 1, 5000), (12, 5000))
    paths = plot_ecg(sig[0], str(tmp_path / "ecg"), cam=cam, layout=layout, dpi=100)
    assert [os.path.splitext(p)[1] for p in paths] == [".png", ".svg"]
    assert _png_size(paths[0]) == figure_size_px(layout, dpi=100)
    assert os.path.getsize(paths[0]) > 50_000
    assert open(paths[1]).read(2000).count("<svg") == 1
    plain = plot_ecg(sig[0], str(tmp_path / "plain"), layout=layout, dpi=100, formats=("png",))
    assert open(plain[0], "rb").read() != open(paths[0], "rb").read()   # the overlay is drawn
    with pytest.raises(ValueError, match="12, T"):
        plot_ecg(sig[0][:6], str(tmp_path / "bad"))


def test_ecg_plot_keeps_tall_complexes_in_their_row_and_marks_padding(tmp_path):
    """A 7 s record (zero-padded to 10 s) with 4 mV complexes: half gain, the padded 3 s
    shaded grey ("no signal"), and no trace outside its row."""
    import matplotlib.image as mpimg

    from ecg_moco_tf.explain.ecgplot import gain_mm_per_mv, no_signal_spans

    sig, _, _ = _synthetic_ecg()
    x = next(s for s in sig if gain_mm_per_mv(s) == 10).copy()     # one at standard gain
    x[:, 3500:] = 0
    for k in range(7):
        x[6, 500 * k:500 * k + 20] = 4.0                # 4 mV complexes in V1
    assert gain_mm_per_mv(x) == 5 and no_signal_spans(x) == [(3500, 5000)]
    path = plot_ecg(x, str(tmp_path / "ecg"), layout="12", dpi=100, formats=("png",))[0]
    img = mpimg.imread(path)[..., :3]
    h, w = img.shape[:2]
    padded = img[h // 4:3 * h // 4, int(w * 0.85):int(w * 0.95)]
    paper = img[h // 4:3 * h // 4, int(w * 0.05):int(w * 0.10)]
    assert padded.mean() < paper.mean() - 0.08          # shaded grey, darker than the paper
    assert no_signal_spans(sig[0]) == []


def test_attribution_plot_written(tmp_path):
    codes = np.repeat(np.arange(5), 1000).astype(np.int8)
    per = A.per_ecg_table(np.array(["a", "b"]), np.array(["neg", "pos"]), np.stack(
        [A.wave_shares(np.random.default_rng(i).random((12, 5000)), codes) for i in range(2)]),
        np.stack([A.time_fractions(codes)] * 2))
    paths = A.plot_attribution(A.cohort_table(per), str(tmp_path / "attr"), ("png", "svg"))
    assert all(os.path.getsize(p) > 20_000 for p in paths)


def test_explain_cli_on_a_cohort_with_masks(bump_model, small_cohort, tmp_path):
    clf = bump_model[0]
    model = tmp_path / "clf.keras"
    clf.save(model)
    root = small_cohort.attrs["root"]
    df = small_cohort[small_cohort["split"].isin(["test", "valid2"])].copy()
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(os.path.join(root, df["record"].iloc[0] + ".hea"), bad / "broken.hea")
    (bad / "broken.dat").write_bytes(b"\x00" * 10)                 # truncated data
    df["record"] = [os.path.join(root, r) for r in df["record"]]
    df["mask"] = [os.path.join(root, m) if isinstance(m, str) and m else "" for m in df["mask"]]
    df = pd.concat([df, pd.DataFrame({"record": [str(bad / "broken")], "patient_id": ["px"],
                                      "label": [0], "split": ["test"], "mask": [""]})])
    df.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "explain",
                        f"--model={model}", f"--records={tmp_path / 'm.csv'}", f"--out={out}",
                        "--methods=gradcam,layercam", "--plots=1", "--formats=png",
                        "--n_random=3"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]                      # one record left out
    problems = pd.read_csv(out / "problems.csv")
    assert problems["record"].str.contains("broken").tolist() == [True]
    res = json.loads((out / "results.json").read_text())
    assert res["explained"] == len(df) - 1 and res["layer"] == "temporal_2_relu"
    for m in ("gradcam", "layercam"):
        per = pd.read_csv(out / m / "attribution_per_ecg.csv")
        sums = per.groupby("record")["share"].sum(min_count=1).dropna()
        np.testing.assert_allclose(sums, 1.0, atol=1e-6)
        faith = json.loads((out / m / "faithfulness.json").read_text())
        assert faith["n_ecgs"] == (df["mask"] != "").sum()
        for k in ("energy_in_mask", "energy_in_mask_random", "pointing_game"):
            assert 0 <= faith[k] <= 1
        figs = os.listdir(out / m / "figures")
        assert len(figs) == 2 * 2 and all(os.path.getsize(out / m / "figures" / f) > 50_000
                                          for f in figs)                 # 2 groups x 2 layouts
        assert (out / m / "attribution.png").stat().st_size > 20_000
        with np.load(out / m / "maps.npz") as z:
            assert z["maps"].shape == (len(df) - 1, 12, 5000)
    assert "energy in mask" in (out / "summary.md").read_text()
    truth = pd.read_csv(out / "mask_attribution.csv")               # the mask as a map
    assert truth["share"].sum() == pytest.approx(1.0)
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "explain",
                        "--model=saved_models/model.tflite", f"--records={tmp_path / 'm.csv'}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and ".keras" in r.stderr


def test_unknown_method_is_refused_before_any_work(tmp_path):
    from ecg_moco_tf.explain.cohort import explain_cohort

    with pytest.raises(ValueError, match="layercam"):
        explain_cohort(None, pd.DataFrame(), str(tmp_path / "x"), methods=("gradcamm",))
    assert not (tmp_path / "x").exists()
