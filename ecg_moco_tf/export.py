"""Export a trained classifier to SavedModel and TFLite, with a parity check and a model card.

Serving input (every format): raw millivolts, float32, shape (batch, 12, 5000) = leads x
samples, leads in the order I, II, III, aVR, aVL, aVF, V1-V6, 500 Hz, 10 s; the data-set
normalization is inside the model. Outputs: ``probability`` (batch, 1) and, from the SavedModel,
``embedding`` (batch, feature_dim), the encoder's feature vector.

Formats written to ``<out>/``:

- ``savedmodel/``: TF SavedModel, signature ``serving_default`` (also ``serve``);
- ``model_float32.tflite``, ``model_float16.tflite`` (float16 weights),
  ``model_dynamic_int8.tflite`` (int8 weights, float activations),
  ``model_int8.tflite`` (full-integer kernels calibrated on a representative set of training
  ECGs; input and output stay float32 for the caller);
- ``model_card.json``: task, intended use, limitations, input spec, preprocessing, decision
  threshold, training / validation / test data summaries, held-out metrics, pretraining
  provenance, parity figures, versions (package included).

Parity (run at every export): each format vs the Keras model on held-out ECGs, max and mean
absolute probability difference, decisions that flip at the model's threshold, and AUC
change; a format beyond its tolerance is left out (only a SavedModel beyond it fails). The
quantized formats (int8 weights or kernels) are
allowed more than the float tolerance, with a printed warning when they exceed it; the card's
``quantization`` section states the calibration ECGs, their parity, int8's output step of
1/256 and the caveat that int8 can flip decisions near the threshold.
"""
from __future__ import annotations

import json
import os
import platform
import shutil

import numpy as np

FORMATS = ("savedmodel", "float32", "float16", "dynamic_int8", "int8")
TOLERANCE = {"savedmodel": 1e-4, "float32": 1e-4, "float16": 0.02, "dynamic_int8": 0.1,
             "int8": 0.2}


class ParityError(RuntimeError):
    """An exported format disagrees with the Keras model beyond its tolerance."""


def _serving_model(model):
    import keras

    names = [layer.name for layer in model.layers]
    outputs = {"probability": model.output}
    if "features" in names:
        outputs["embedding"] = model.get_layer("features").output
    return keras.Model(model.input, outputs)


def export_savedmodel(model, path):
    """Write a SavedModel whose ``serving_default`` takes ``ecg_mv`` (batch, 12, 5000)."""
    import keras
    import tensorflow as tf

    serving = _serving_model(model)
    shape = [None, *model.input.shape[1:]]
    archive = keras.export.ExportArchive()
    archive.track(serving)
    fn = tf.function(lambda ecg_mv: serving(ecg_mv, training=False))
    archive.add_endpoint("serve", fn, [tf.TensorSpec(shape, tf.float32, name="ecg_mv")])
    archive.write_out(path, verbose=False)
    return path


def export_tflite(savedmodel_path, out_path, kind, representative=None):
    """Convert the SavedModel's ``serve`` signature to TFLite of ``kind`` (see FORMATS)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(savedmodel_path, signature_keys=["serve"])
    if kind == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic_int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind == "int8":
        if representative is None:
            raise ValueError("full-integer int8 needs representative ECGs")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None].astype(np.float32)]
                                               for x in representative)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif kind != "float32":
        raise ValueError(f"unknown TFLite kind '{kind}'; choose from {FORMATS[1:]}")
    from .console import native_quiet

    with native_quiet():                   # the converter's C++ prints (quantization settings)
        flat = conv.convert()
    with open(out_path, "wb") as f:
        f.write(flat)
    return out_path


MAX_ABS_MV = 50.0        # above this the input is taken for microvolts (ECGs are a few mV)


def check_input(signals, shape=(12, 5000)):
    """The model input as float32 ``(n, 12, 5000)`` millivolts, or a ``ValueError`` that says
    what is wrong and what to do.

    Rule: a 2-D array of exactly ``shape`` is one ECG (a batch of one is made); anything else
    must be ``(n, *shape)``. The samples x leads layout of wfdb's ``p_signal`` (last axis 12),
    NaN/Inf, and amplitudes above ``MAX_ABS_MV`` (microvolts) are refused.
    """
    x = np.asarray(signals, np.float32)
    leads, samples = shape
    want = (f"expected (n, {leads}, {samples}) in mV: n ECGs x {leads} leads (I, II, III, aVR, "
            f"aVL, aVF, V1-V6) x {samples} samples (10 s at 500 Hz)")
    if x.shape == tuple(shape):
        x = x[None]
    if x.ndim in (2, 3) and x.shape[-1] == leads and x.shape[-2] != leads:
        raise ValueError(f"ECGs of shape {x.shape} have the leads on the last axis: transpose "
                         f"wfdb's p_signal (samples x leads) to (n, {leads}, {samples}), e.g. "
                         "np.stack([rec.p_signal.T for rec in records]); " + want)
    if x.ndim != 3 or x.shape[1:] != tuple(shape):
        raise ValueError(f"ECGs of shape {x.shape}; {want}. Resample and crop/pad with "
                         "ecg_moco_tf.data.read_record (or records.standardize)")
    def which(bad):
        return ("the ECG" if len(x) == 1 else
                f"{int(bad.sum())} of {len(x)} ECGs (first: index {int(np.argmax(bad))})")

    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{which(bad)}: NaN/Inf samples")
    peak = np.abs(x).max(axis=(1, 2)) if x.size else np.zeros(0)
    bad = peak > MAX_ABS_MV
    if bad.any():
        raise ValueError(f"{which(bad)}: |amplitude| up to {peak[bad][0]:.4g}, above "
                         f"{MAX_ABS_MV:g}: the input must be in millivolts (mV); microvolts "
                         "must be divided by 1000 (check the header's gain / units)")
    return x


class Predictor:
    """Probabilities from a ``.keras`` model, a SavedModel folder or a ``.tflite`` file.

    The model must end in one probability per ECG (output shape (n, 1); for ``.keras`` also a
    sigmoid): an encoder, which gives features, is refused. Input: ``(n, 12, 5000)`` mV, or one
    ECG ``(12, 5000)`` (see :func:`check_input`); output: ``(n,)`` probabilities.

    Example:
        >>> Predictor("saved_models/lvsd/model_int8.tflite")(signals)   # (n, 12, 5000) -> (n,)
    """

    def __init__(self, path, num_threads=None):
        self.path = path
        if not os.path.exists(path):
            raise FileNotFoundError(f"model {path} not found (a .keras file, SavedModel folder "
                                    "or .tflite file)")
        if path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter   # LiteRT (ex tf.lite runtime)

            self.kind = "tflite"
            self.interp = Interpreter(model_path=path, num_threads=num_threads)
            self.runner = self.interp.get_signature_runner("serve")
            outputs = {k: tuple(d["shape_signature"]) for k, d in
                       self.runner.get_output_details().items()}
            self.output = "probability" if "probability" in outputs else next(iter(outputs))
            self.input_shape = tuple(int(d) for d in
                                     self.runner.get_input_details()["ecg_mv"]["shape"][1:])
            self._check_output(outputs)
        elif os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                inside = sorted(f for f in os.listdir(path) if f.endswith((".tflite", ".keras"))
                                or os.path.exists(os.path.join(path, f, "saved_model.pb")))
                raise FileNotFoundError(
                    f"model {path} is a folder without a SavedModel (saved_model.pb): give "
                    "the model itself" + (f", e.g. {os.path.join(path, inside[0])} (it holds "
                                          f"{', '.join(inside)})" if inside else
                                          " (a .keras file, SavedModel folder or .tflite)"))
            from .console import import_tensorflow_quietly

            import_tensorflow_quietly()
            import tensorflow as tf

            self.kind = "savedmodel"
            self.fn = tf.saved_model.load(path).signatures["serving_default"]
            outputs = {k: tuple(v.shape) for k, v in self.fn.structured_outputs.items()}
            self.output = "probability" if "probability" in outputs else next(iter(outputs))
            self.input_shape = tuple(self.fn.structured_input_signature[1]["ecg_mv"].shape[1:])
            self._check_output(outputs)
        elif path.endswith(".keras"):
            from .console import import_tensorflow_quietly

            import_tensorflow_quietly()
            from .models import load_model

            self.kind = "keras"
            self.model = check_classifier(load_model(path), path)
            self.input_shape = tuple(self.model.input_shape[1:])
            self.output = "output"
        else:
            raise ValueError(f"{path}: not a .keras file, SavedModel folder or .tflite file")

    def _check_output(self, outputs):
        """Refuse a model whose output (``self.output``) is not one probability per ECG; an
        export may add ``embedding`` beside ``probability``."""
        _check_outputs(self.path, outputs, self.output)

    def __call__(self, signals, batch_size=32):
        x = check_input(signals, self.input_shape)
        if self.kind == "keras":
            return self.model.predict(x, batch_size=batch_size, verbose=0).ravel()
        out = []
        for i in range(0, len(x), batch_size if self.kind == "savedmodel" else 1):
            chunk = x[i:i + (batch_size if self.kind == "savedmodel" else 1)]
            if self.kind == "savedmodel":
                out.append(self.fn(ecg_mv=chunk)[self.output].numpy().ravel())
            elif i == 0:                   # "INFO: Created TensorFlow Lite XNNPACK delegate"
                from .console import native_quiet

                with native_quiet():
                    out.append(np.asarray(self.runner(ecg_mv=chunk)[self.output]).ravel())
            else:
                out.append(np.asarray(self.runner(ecg_mv=chunk)[self.output]).ravel())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _check_outputs(path, outputs, output, activation=None):
    shape = outputs.get(output, ())
    extra = set(outputs) - {output, "embedding"}
    if extra or len(shape) != 2 or shape[-1] != 1 or activation not in (None, "sigmoid"):
        found = ", ".join(f"{k} {tuple(v)}" for k, v in outputs.items())
        act = f", final activation {activation}" if activation else ""
        raise ValueError(
            f"model {path} outputs {found}{act}: this needs a classifier that ends in one "
            "sigmoid probability per ECG, shape (n, 1), e.g. runs/demo/proposed/classifier.keras "
            "or its export. An encoder (encoder.keras) gives features, not probabilities: "
            "fine-tune it first (ecg-moco finetune)")


def check_classifier(model, path):
    """``model`` (Keras) if it ends in one sigmoid probability per ECG, else a ``ValueError``
    naming ``path`` (an encoder, a MoCo model, a multi-output model)."""
    from .models import single_input_graph

    if not single_input_graph(model):
        raise ValueError(
            f"model {path} is a {type(model).__name__} model, not a classifier: predict and "
            "export need one that ends in one sigmoid probability per ECG, e.g. "
            "runs/demo/proposed/classifier.keras. A MoCo model (moco.keras) is for "
            "pretraining: fine-tune its encoder (encoder.keras) first (ecg-moco finetune)")
    _check_outputs(path, {f"output{i or ''}": tuple(o.shape) for i, o in
                          enumerate(model.outputs)}, "output", _final_activation(model))
    return model


def _json_safe(obj):
    """``obj`` with NaN / infinite floats as None (JSON has no NaN: strict parsers refuse it)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _final_activation(model):
    """Name of the activation of a Keras model's last layer (nested models followed)."""
    layer = model
    while hasattr(layer, "layers") and layer.layers:
        layer = layer.layers[-1]
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act))


def parity(reference, candidate, labels=None, threshold=0.5):
    """Max and mean |p_ref - p|, the decisions at ``threshold`` that flip, and the AUC change
    (if both classes are in ``labels``)."""
    from sklearn.metrics import roc_auc_score

    diff = np.abs(reference - candidate)
    out = {"max_abs_diff": float(diff.max()) if diff.size else 0.0,
           "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
           "decision_flips": int(((reference >= threshold) != (candidate >= threshold)).sum())}
    if labels is not None and len(np.unique(labels)) == 2:
        out["auc_change"] = float(roc_auc_score(labels, candidate) - roc_auc_score(labels,
                                                                                  reference))
    return out


INT8_OUTPUT_STEP = 1 / 256   # TFLite int8 LOGISTIC output: scale 1/256, zero point -128


def _quantization_note(report, calibration, heldout, threshold=0.5):
    """The card's statement on the quantized formats: calibration data, measured parity (its
    decision flips at ``threshold``), the int8 output step and the caveat."""
    note = {"calibration_ecgs": calibration, "parity_measured_on": heldout,
            "decision_threshold": threshold}
    for kind in ("dynamic_int8", "int8"):
        if kind in report:
            note[kind] = {k: report[kind][k] for k in ("max_abs_diff", "mean_abs_diff",
                                                       "decision_flips")}
    if "int8" in report:
        note["int8"]["output_step"] = INT8_OUTPUT_STEP
    note["caveat"] = (
        "int8 probabilities come in steps of 1/256 and differ from the Keras model by up to "
        "max_abs_diff on the held-out ECGs above, which come from the same source as the "
        "calibration ECGs; on ECGs from another source (device, site, population) the "
        "difference can be larger (docs/deployment.md). Near the decision threshold this flips "
        "decisions: use float32/float16 there, or compare int8 with the SavedModel on your "
        "own ECGs (ecg-moco predict) first.")
    return note


def export_all(model, out_dir, heldout, heldout_labels=None, representative=None,
               formats=FORMATS, tolerance=None, card_extra=None, heldout_groups=None,
               task_name="positive", threshold=0.5, threshold_set_by="--threshold of ecg-moco "
               "export"):
    """Export ``model`` (a Keras classifier) to every format, check parity, write the card.

    ``heldout``: ECGs (n, 12, 5000) for the parity check; ``representative``: training ECGs for
    int8 calibration (default: ``heldout``). With ``heldout_labels`` the card's
    ``heldout_metrics`` (AUC with a bootstrap CI over ``heldout_groups``, e.g. patient ids) are
    computed from the exported SavedModel's outputs, the artefact that ships, not from the
    in-memory model. A TFLite format beyond its tolerance is left out (its file removed,
    ``kept: false`` in the card's parity, a warning); a SavedModel beyond its tolerance raises
    :class:`ParityError` (after writing the card, so it can be inspected). Writes
    ``model_card.json`` and a readable ``MODEL_CARD.md``. ``task_name`` names what the
    probability is of; ``threshold`` is the decision threshold the card states (with the
    held-out sensitivity / specificity at it; ``threshold_set_by``: where it comes from), the
    one ``ecg-moco predict`` applies by default.
    """
    import tensorflow as tf

    from . import __version__

    tol = {**TOLERANCE, **(tolerance or {})}
    os.makedirs(out_dir, exist_ok=True)
    stale = [p for p in [os.path.join(out_dir, "savedmodel"), os.path.join(out_dir,
                         "model_card.json"), os.path.join(out_dir, "MODEL_CARD.md")] + [os.path.join(out_dir, f"model_{k}.tflite")
                                                for k in FORMATS[1:]] if os.path.exists(p)]
    if stale:                  # never leave another model's files beside the new card
        print(f"replacing the earlier export in {out_dir} ({len(stale)} files)")
        for p in stale:
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    sm = export_savedmodel(model, os.path.join(out_dir, "savedmodel"))
    ref = model.predict(np.asarray(heldout, np.float32), verbose=0).ravel()
    paths = {"savedmodel": sm}
    for kind in formats:
        if kind != "savedmodel":
            paths[kind] = export_tflite(sm, os.path.join(out_dir, f"model_{kind}.tflite"), kind,
                                        representative if representative is not None
                                        else heldout)
    report, failures, warnings, outputs = {}, [], [], {}
    for kind, path in paths.items():
        p = outputs[kind] = Predictor(path)(heldout)
        size = (sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
                    for f in fs) if os.path.isdir(path) else os.path.getsize(path))
        report[kind] = {"path": os.path.relpath(path, out_dir), "bytes": size,
                        **parity(ref, p, heldout_labels, threshold), "tolerance": tol[kind]}
        report[kind]["kept"] = bool(report[kind]["max_abs_diff"] <= tol[kind])
        if not report[kind]["kept"]:
            why = f"{kind}: max |diff| {report[kind]['max_abs_diff']:.4g} > {tol[kind]}"
            if kind == "savedmodel":
                failures.append(why)
            else:                  # left out: the formats that pass still ship
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                del outputs[kind]
                warnings.append(f"{why} on the {len(heldout)} held-out ECGs: left out (its "
                                f"file removed); raise its tolerance to keep it")
        elif kind.endswith("int8") and report[kind]["max_abs_diff"] > tol["float16"]:
            warnings.append(f"{kind} differs from the Keras model by up to "
                            f"{report[kind]['max_abs_diff']:.3f} (more than a float format "
                            f"may: {tol['float16']:g}) on the {len(heldout)} held-out ECGs; "
                            f"{report[kind]['decision_flips']} decision(s) at "
                            f"{threshold:.4g} flip. "
                            "See the model card's 'quantization' caveat before using it near "
                            "the threshold")
    for w in warnings:
        print(f"warning: {w}")
    import keras

    card = {
        "task": {"name": task_name, "output": f"probability = P({task_name}), sigmoid"},
        "intended_use": (f"Research on detecting {task_name} from resting 12-lead, 10 s ECGs "
                         "with this toolkit (screening studies, method comparison). Not a "
                         "medical device: not for diagnosis or treatment decisions without "
                         "a validation for that use."),
        "limitations": [
            "Valid only for ECGs like the training data (see training_data): other "
            "populations, devices, filters or label definitions need a new validation.",
            "The held-out metrics below come from one split of one data set; their CI is a "
            "patient bootstrap of that split, not of other sites.",
            f"The decision threshold ({threshold:.4g}; {threshold_set_by}) is not tuned on "
            "the held-out ECGs; choose it for the intended sensitivity on your own "
            "validation data (`ecg-moco predict --threshold`).",
            "Quantized formats change probabilities: see parity (max |difference| per "
            "format) before using them."],
        "threshold": {"value": float(threshold), "set_by": threshold_set_by,
                      "used_by": "ecg-moco predict, unless its --threshold is given"},
        "input": {"name": "ecg_mv", "dtype": "float32", "shape": [None, *model.input.shape[1:]],
                  "layout": "batch x leads x samples", "leads": ["I", "II", "III", "aVR", "aVL",
                                                                 "aVF", "V1", "V2", "V3", "V4",
                                                                 "V5", "V6"],
                  "sampling_rate_hz": 500, "units": "mV"},
        "preprocessing": "read_record(): leads reordered by name, resampled to 500 Hz, central "
                         "10 s or zero-padded; per-lead data-set normalization is inside the "
                         "model (no per-ECG scaling)",
        "outputs": {"probability": f"P({task_name}), sigmoid", "embedding": "encoder features "
                    "(SavedModel only)"},
        "parity": {"heldout_ecgs": int(len(heldout)), "formats": report,
                   "warnings": warnings},
        "versions": {"ecg_moco_tf": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
        **(card_extra or {}),
    }
    if any(k.endswith("int8") for k in report):
        card["quantization"] = _quantization_note(
            report, card.get("calibration_ecgs", f"{len(representative)} ECGs given for "
                             "calibration" if representative is not None else
                             f"the {len(heldout)} held-out ECGs (no calibration set given)"),
            card.get("heldout_ecgs", f"{len(heldout)} held-out ECGs"), threshold)
    if heldout_labels is not None and len(np.unique(heldout_labels)) == 2:
        from .evaluation import evaluate

        m = evaluate(np.asarray(heldout_labels), outputs["savedmodel"], heldout_groups)
        card["heldout_metrics"] = {"computed_from": "savedmodel", **{k: m[k] for k in (
            "n_ecgs", "n_patients", "n_positive", "auc", "auc_ci_low", "auc_ci_high", "brier")}}
        from .evaluation.metrics import threshold_metrics

        card["threshold"]["heldout"] = threshold_metrics(np.asarray(heldout_labels),
                                                         outputs["savedmodel"], threshold)
    with open(os.path.join(out_dir, "model_card.json"), "w") as f:
        json.dump(_json_safe(card), f, indent=1, default=str, allow_nan=False)
    with open(os.path.join(out_dir, "MODEL_CARD.md"), "w") as f:
        f.write(card_markdown(card))
    if failures:
        raise ParityError("export parity check failed:\n  " + "\n  ".join(failures))
    return card


def card_markdown(card):
    """A readable MODEL_CARD.md from the card dict that ``export_all`` writes as JSON."""
    t, thr = card["task"], card["threshold"]
    lines = [f"# Model card: {t['name']}", "", f"Output: {t['output']}.", "",
             "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {x}" for x in card["limitations"]]
    lines += ["", "## Decision threshold", "",
              f"{thr['value']:.4g} ({thr['set_by']}); used by {thr['used_by']}."]
    if "heldout" in thr:
        h = thr["heldout"]
        lines.append("Held-out at this threshold: " + ", ".join(
            f"{k} {v:.3f}" for k, v in h.items() if isinstance(v, float)) + ".")
    m = card.get("heldout_metrics")
    if m:
        lines += ["", "## Held-out performance", "",
                  f"AUC {m['auc']:.4f} [{m['auc_ci_low']:.4f}, {m['auc_ci_high']:.4f}] on "
                  f"{m['n_ecgs']} ECGs of {m['n_patients']} patients ({m['n_positive']} "
                  f"positive), computed from the {m['computed_from']}; Brier {m['brier']:.4f}."]
    lines += ["", "## Formats and parity", "", f"On {card['parity']['heldout_ecgs']} held-out "
              "ECGs, against the Keras model:", "",
              "| format | kept | file | kB | max abs diff | tolerance | decisions flipped |",
              "|---|---|---|---|---|---|---|"]
    for kind, r in card["parity"]["formats"].items():
        lines.append(f"| {kind} | {'yes' if r.get('kept', True) else 'no (left out)'} | "
                     f"{r['path']} | {r['bytes'] / 1e3:.1f} | {r['max_abs_diff']:.3g} | "
                     f"{r['tolerance']} | {r.get('decision_flips', '')} |")
    lines += [f"- {w}" for w in card["parity"]["warnings"]]
    i = card["input"]
    lines += ["", "## Input", "", f"`{i['name']}`: {i['dtype']} {i['shape']} ({i['layout']}), "
              f"leads {', '.join(i['leads'])}, {i['sampling_rate_hz']} Hz, {i['units']}. "
              f"{card['preprocessing']}.", "", "## Versions", "",
              ", ".join(f"{k} {v}" for k, v in card["versions"].items()), ""]
    return "\n".join(lines)


def _sample(df, n, seed):
    """All rows (``n`` <= 0 or >= len) or a seeded random sample of ``n`` rows, in order."""
    return df if n <= 0 or n >= len(df) else df.sample(n, random_state=seed).sort_index()


def export_from_manifest(model_path, df, out_dir, heldout_split="test",
                         calibration_split="train2", max_heldout=0, max_calibration=200, seed=0,
                         formats=FORMATS, tolerance=None, card_extra=None,
                         on_error="raise", options=None, task_name=None, threshold=None):
    """:func:`export_all` for a classifier file and a manifest with splits.

    Parity and the card's held-out metrics use every ECG of ``heldout_split`` (or a seeded
    sample of ``max_heldout``); full-int8 calibration a seeded sample of ``max_calibration``
    ECGs of ``calibration_split``. The card says which. Records are read with ``options``
    (a ``ReadOptions``); an unreadable one raises (``on_error="raise"``) or is left out
    (``"skip"``: listed with the reason in the card's ``skipped_records``). The task, the
    experiment (which splits trained and validated the model) and the pretrained encoder come
    from the ``provenance.json`` that fine-tuning wrote beside the model (``task_name``
    overrides). ``threshold`` None: the validation threshold stored there (else 0.5).
    """
    import pandas as pd

    from .data import ReadOptions, load_records, split_summary
    from .data.splits import experiment_view
    from .models import load_model
    from .provenance import read_provenance, stored_threshold, task_of

    threshold, set_by = ((float(threshold), "--threshold of ecg-moco export")
                         if threshold is not None else stored_threshold(model_path))
    model = check_classifier(load_model(model_path), model_path)      # before any work
    _check_not_trained_on(model_path, df[df["split"] == heldout_split], heldout_split)
    parts, problems = {}, []
    for name, split, n in (("heldout", heldout_split, max_heldout),
                           ("calibration", calibration_split, max_calibration)):
        rows = df[df["split"] == split]
        if not len(rows):
            raise ValueError(f"the manifest has no '{split}' rows for the {name} ECGs; "
                             f"choose another --{name}_split")
        sample = _sample(rows, n, seed)
        parts[name] = load_records(sample, on_error=on_error, progress=False,
                                   options=options or ReadOptions())
        bad = parts[name].problems
        problems.append(bad)
        parts[name + "_selection"] = (
            f"{len(parts[name].signals)} of {len(rows)} '{split}' ECGs"
            + ("" if len(sample) == len(rows) else f" (random sample of {len(sample)}, seed "
               f"{seed})") + (f"; {len(bad)} unreadable left out" if len(bad) else ""))
    held = parts["heldout"].manifest
    prov = read_provenance(model_path)
    experiment = prov.get("experiment", "proposed")
    view = experiment_view(df, experiment)

    def summary(*frames):
        frames = [f for f in frames if f is not None and len(f)]
        return (split_summary(pd.concat(frames)).reset_index().to_dict(orient="records")
                if frames else [])

    enc = prov.get("pretrained_encoder") or {}
    extra = {"source_model": model_path,
             "training_data": {
                 "experiment": experiment + ("" if "experiment" in prov else
                                             " (assumed: no provenance.json beside the model)"),
                 "fine_tuning": summary(view["train"]),
                 "pretraining": (enc.get("shipped_name") and f"shipped encoder "
                                 f"{enc['shipped_name']} (see its MODEL_CARD.md)") or
                                summary(view["pretrain_train"], view["pretrain_valid"])},
             "validation_data": {"use": "early stopping and learning-rate choice",
                                 "splits": summary(view["valid"])},
             "test_data": {"split": heldout_split, "ecgs": parts["heldout_selection"],
                           "splits": summary(held),
                           "metrics": "heldout_metrics; threshold.heldout"},
             "pretraining": prov or {"note": "no provenance.json beside the model"},
             "all_splits": split_summary(df).reset_index().to_dict(orient="records"),
             "heldout_ecgs": parts["heldout_selection"],
             "calibration_ecgs": parts["calibration_selection"],
             "skipped_records": pd.concat(problems).drop_duplicates().to_dict("records"),
             **(card_extra or {})}
    labels = _labels_or_none(held)
    return export_all(model, out_dir, parts["heldout"].signals,
                      labels, parts["calibration"].signals, formats, tolerance, extra,
                      heldout_groups=held["patient_id"].to_numpy(),
                      task_name=task_of(model_path, task_name), threshold=threshold,
                      threshold_set_by=set_by)


def _check_not_trained_on(model_path, held, split):
    """``ValueError`` when held-out ECGs (or their patients) are among those the model was
    fine-tuned or validated on (``fine_tuning_records.csv`` beside a ``.keras``): a manifest
    with other splits than the model's would give the card flattering test figures."""
    import pandas as pd

    from .training.finetune import TRAINED_ON

    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), TRAINED_ON)
    if not os.path.exists(path):
        return
    seen = pd.read_csv(path, dtype=str)
    records = held["record"].astype(str).isin(set(seen["record"]))
    patients = held["patient_id"].astype(str).isin(set(seen["patient_id"]))
    if records.any() or patients.any():
        example = held.loc[records | patients, "record"].iloc[0]
        raise ValueError(
            f"{int(records.sum())} ECGs and {int(patients.sum())} ECGs' patients of the "
            f"'{split}' split were used to fine-tune or validate {model_path} (e.g. {example}; "
            f"{path} lists them): give the manifest with the splits the model was fine-tuned "
            "on, whose test split it has not seen")


def _labels_or_none(df):
    """0/1 labels of a manifest as ints, or None when any is missing."""
    import pandas as pd

    y = pd.to_numeric(df["label"], errors="coerce") if "label" in df else None
    return None if y is None or y.isna().any() else y.astype(int).to_numpy()
