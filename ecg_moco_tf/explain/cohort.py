"""Explain a cohort: maps, 12-lead figures, lead x wave attribution and faithfulness.

What ``ecg-moco explain`` and the ``explain`` stage of ``ecg-moco reproduce`` run. Output
folder, per method (``gradcam``, ``gradcam++``, ``scorecam``):

- ``<method>/maps.npz``: record ids, explained class, maps float16 (N, 12, 5000);
- ``<method>/ecgs.csv``: per ECG: label, explained class, ``p_<task>`` probability (classifier),
  explained score, delineation lead/beats/filled boundaries, energy in mask and pointing hit
  (where a ground-truth mask exists);
- ``<method>/attribution_per_ecg.csv``, ``attribution.csv`` (cohort means per group),
  ``attribution.{png,svg}``;
- ``<method>/faithfulness.json`` and ``deletion.png`` (only for ECGs with a ``mask``);
- ``<method>/figures/<record>_{4x3,12}.{png,svg}``: the most confident ECGs of each group;
- ``summary.md``, ``results.json``; ``problems.csv`` lists every record left out and why.
"""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ecg_moco_tf.data.manifest import load_records  # noqa: E402
from ecg_moco_tf.data.records import ReadOptions  # noqa: E402
from ecg_moco_tf.data.synthetic import read_mask  # noqa: E402

from . import attribution as attr  # noqa: E402
from .ecgplot import plot_ecg  # noqa: E402
from .faithfulness import (FRACTIONS, energy_in_mask, faithfulness,  # noqa: E402
                           pointing_game)
from .gradcam import (METHODS, class_prototypes, explained_scores,  # noqa: E402
                      gradcam, is_classifier, resolve_layer, resolve_targets,
                      score_model)


def _groups(labels, targets):
    """Group name per ECG: by label where known, else by the explained class."""
    return np.array([("positive (label 1)" if lab == 1 else "negative (label 0)")
                     if not np.isnan(lab) else f"unlabelled, explained as {int(t)}"
                     for lab, t in zip(labels, targets)])


def _masks(rows):
    """Indices of rows with a ground-truth mask, and the masks."""
    if "mask" not in rows:
        return np.array([], int), None
    paths = rows["mask"].astype(object)
    idx = np.array([i for i, p in enumerate(paths) if isinstance(p, str) and p.strip()], int)
    if not len(idx):
        return idx, None
    root = rows.attrs.get("root", ".")
    return idx, np.stack([read_mask(os.path.join(root, paths.iloc[i])) for i in idx])


def _delineate_all(x, records, progress):
    from tqdm.auto import tqdm

    codes, info, problems = [None] * len(x), [{}] * len(x), []
    for i in tqdm(range(len(x)), desc="delineating beats", unit="ecg", disable=not progress):
        try:
            codes[i], info[i] = attr.delineate(x[i], record=records[i])
        except attr.DelineationError as e:
            problems.append({"record": records[i], "problem": f"attribution left out: {e}"})
    return codes, info, problems


def _plot_deletion(curves, out, title):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(np.array(FRACTIONS) * 100, curves["map"], "o-", label="most attributed first")
    ax.plot(np.array(FRACTIONS) * 100, curves["random"], "s--", color="0.5",
            label="random maps (same grid)")
    ax.set_xlabel("samples erased (%)")
    ax.set_ylabel("mean explained score")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_examples(x, maps, table, groups, out_dir, n_plots, layouts, formats, method,
                   task_name="positive"):
    paths = []
    for group in sorted(set(groups)):
        idx = np.where(groups == group)[0]
        for i in idx[np.argsort(-table["score"].to_numpy()[idx], kind="stable")][:n_plots]:
            r = table.iloc[i]
            col = f"p_{task_name}"
            prob = f"  P({task_name}) {r[col]:.3f}" if col in r else ""
            none = "  (no positive evidence: map empty)" if maps[i].max() == 0 else ""
            title = (f"{r['record']}  {group}{prob}  {method} for class {r['target']}, "
                     f"score {r['score']:.3f}{none}")
            name = os.path.basename(str(r["record"]))
            for layout in layouts:
                paths += plot_ecg(x[i], os.path.join(out_dir, "figures", f"{name}_{layout}"),
                                  cam=maps[i], layout=layout, title=title, formats=formats)
    return paths


def explain_cohort(model, df, out_dir, methods=("gradcam",), layer=None,
                   target="auto", reference=None, n_plots=2, layouts=("4x3", "12"),
                   formats=("png", "svg"), seed=0, n_random=20, max_n=None, progress=True,
                   options=None, task_name="positive"):
    """Run the explanations of ``model`` (classifier or encoder) on manifest ``df``.

    Args:
        target: 'auto' ('label' if every ECG is labelled, else 'predicted'), or see
            :func:`~ecg_moco_tf.explain.gradcam.resolve_targets`.
        reference: manifest whose labelled ECGs give the class prototypes (encoder only);
            default ``df`` itself.
        n_plots: 12-lead figures per group (most confident first).
        options: how records are read (a ``ReadOptions``; default the standard ones).
        task_name: what the classifier detects: column ``p_<task>`` and figure titles.
    Returns the results dict also written to ``results.json``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    os.makedirs(out_dir, exist_ok=True)
    options = options or ReadOptions()
    loaded = load_records(df, on_error="skip", progress=progress, options=options)
    x, rows = loaded.signals, loaded.manifest
    problems = loaded.problems.to_dict("records")
    if not len(x):
        pd.DataFrame(problems).to_csv(os.path.join(out_dir, "problems.csv"), index=False)
        raise ValueError(f"none of the {len(df)} records could be read; see "
                         f"{os.path.join(out_dir, 'problems.csv')}")
    records = rows["record"].astype(str).to_numpy()
    labels = pd.to_numeric(rows["label"], errors="coerce").to_numpy(float)
    classifier = is_classifier(model)
    probs = model.predict(x, batch_size=64, verbose=0)[:, 0] if classifier else None
    prototypes = None
    if not classifier:
        ref = rows if reference is None else reference
        ref_x = x if reference is None else load_records(reference, progress=progress,
                                                         options=options).signals
        ref_y = pd.to_numeric(ref["label"], errors="coerce").to_numpy(float)
        keep = ~np.isnan(ref_y)
        if not ((ref_y[keep] == 0).any() and (ref_y[keep] == 1).any()):
            raise ValueError("explaining an encoder needs labelled ECGs of both classes for the "
                             "class prototypes: give labels in the records' manifest or a "
                             "labelled reference manifest (--reference)")
        prototypes = class_prototypes(model, ref_x[keep], ref_y[keep].astype(int))
    if target == "auto":
        target = "label" if not np.isnan(labels).any() else "predicted"
    targets = resolve_targets(target, labels, probs)
    groups = _groups(labels, targets)
    layer = resolve_layer(model, layer)
    scorer = score_model(model, prototypes)
    codes, delin, bad = _delineate_all(x, records, progress)
    problems += bad
    ok = np.array([c is not None for c in codes])
    mask_idx, masks = _masks(rows)
    results = {"records": int(len(df)), "explained": int(len(x)), "left_out": len(problems),
               "model": "classifier" if classifier else "encoder", "layer": layer,
               "target": target, "methods": {}}
    with_codes = [j for j, i in enumerate(mask_idx) if ok[i]]
    if with_codes:     # where the phenotype really is, in the same lead x wave terms
        idx = mask_idx[with_codes]
        truth = attr.cohort_table(attr.per_ecg_table(
            records[idx], np.full(len(idx), "ground-truth mask"),
            np.stack([attr.wave_shares(masks[j], codes[i]) for j, i in zip(with_codes, idx)]),
            np.stack([attr.time_fractions(codes[i]) for i in idx])))
        truth.to_csv(os.path.join(out_dir, "mask_attribution.csv"), index=False)
        attr.plot_attribution(truth, os.path.join(out_dir, "mask_attribution"), formats,
                              title="ground-truth phenotype mask: lead x wave")
        results["mask_attribution"] = truth
    for method in methods:
        d = os.path.join(out_dir, method.replace("+", "p"))
        os.makedirs(d, exist_ok=True)
        maps = gradcam(model, x, method, layer, targets, prototypes, max_n=max_n,
                       progress=progress)
        steps = model.get_layer(layer).output.shape[2]     # time steps of the layer's map
        np.savez_compressed(os.path.join(d, "maps.npz"), record=records, target=targets,
                            maps=maps.astype(np.float16))
        table = pd.DataFrame({"record": records, "label": labels, "group": groups,
                              "target": targets})
        if classifier:
            table[f"p_{task_name}"] = probs
        table["score"] = explained_scores(model, x, targets, scorer=scorer)
        table["map_empty"] = maps.max(axis=(1, 2)) == 0
        table["delineation_lead"] = [i.get("lead") for i in delin]
        table["beats"] = [i.get("beats") for i in delin]
        table["filled_boundaries"] = [i.get("filled_boundaries") for i in delin]
        out = {"n_no_evidence": int(table["map_empty"].sum()), "files": {}}
        if ok.any():
            per = attr.per_ecg_table(records[ok], groups[ok], np.stack(
                [attr.wave_shares(maps[i], codes[i]) for i in np.where(ok)[0]]),
                np.stack([attr.time_fractions(codes[i]) for i in np.where(ok)[0]]))
            per.to_csv(os.path.join(d, "attribution_per_ecg.csv"), index=False)
            cohort = attr.cohort_table(per)
            cohort.to_csv(os.path.join(d, "attribution.csv"), index=False)
            out["attribution"] = cohort
            out["files"]["attribution"] = attr.plot_attribution(
                cohort, os.path.join(d, "attribution"), formats,
                title=f"{method} at {layer}: lead x wave attribution")
        if len(mask_idx):
            if (targets[mask_idx] == 1).all():
                fmaps = maps[mask_idx]
            else:   # masks mark the LVSD phenotype: score the maps of class 1
                fmaps = gradcam(model, x[mask_idx], method, layer, np.ones(len(mask_idx)),
                                prototypes, max_n=max_n)
            summary, curves = faithfulness(
                fmaps, masks, lambda z: explained_scores(model, z, np.ones(len(z)), scorer=scorer),
                x[mask_idx], steps, n_random=n_random, seed=seed)
            summary["deletion_curve"] = {"fractions": list(FRACTIONS),
                                         "map": curves["map"].tolist(),
                                         "random": curves["random"].tolist()}
            with open(os.path.join(d, "faithfulness.json"), "w") as f:
                json.dump(summary, f, indent=1)
            out["faithfulness"] = summary
            out["files"]["deletion"] = _plot_deletion(
                curves, os.path.join(d, "deletion.png"), f"{method}: deletion, "
                f"{len(mask_idx)} ECGs with a ground-truth mask")
            table.loc[mask_idx, "energy_in_mask"] = energy_in_mask(fmaps, masks)
            table.loc[mask_idx, "pointing_hit"] = pointing_game(fmaps, masks)
        table.to_csv(os.path.join(d, "ecgs.csv"), index=False)
        out["files"]["figures"] = _plot_examples(x, maps, table, groups, d, n_plots,
                                                 layouts, formats, method, task_name)
        results["methods"][method] = out
    pd.DataFrame(problems, columns=["record", "problem"]).to_csv(
        os.path.join(out_dir, "problems.csv"), index=False)
    _write_summary(results, out_dir)
    return results


def _write_summary(results, out_dir):
    """summary.md (tables) and results.json (numbers and paths)."""
    lines = [f"# Explanations ({results['model']}, layer `{results['layer']}`, "
             f"explained class: {results['target']})", "",
             f"{results['explained']} of {results['records']} ECGs explained; "
             f"{results['left_out']} record(s) or attribution(s) left out (problems.csv).", ""]
    faith = {m: r["faithfulness"] for m, r in results["methods"].items() if "faithfulness" in r}
    if faith:
        lines += ["## Faithfulness against the ground-truth mask", "",
                  "| method | ECGs | mask area | energy in mask | random maps | pointing game "
                  "| random maps | deletion AUC | random maps |", "|---" * 9 + "|"]
        for m, s in faith.items():
            lines.append(f"| {m} | {s['n_ecgs']} | {s['mask_area_fraction']:.3f} | "
                         f"{s['energy_in_mask']:.3f} | {s['energy_in_mask_random']:.3f} | "
                         f"{s['pointing_game']:.3f} | {s['pointing_game_random']:.3f} | "
                         f"{s['deletion_area']:.3f} | {s['deletion_area_random']:.3f} |")
        lines += ["", "Deletion AUC: mean explained score over 0-50 % erased; lower = the map "
                  "points at what the model uses.", ""]
    if "mask_attribution" in results:
        lines += ["## Where the ground-truth mask lies (reference for the tables below), %", "",
                  "![mask](mask_attribution.png)", "",
                  (attr.pivot(results["mask_attribution"], "ground-truth mask") * 100).round(1)
                  .to_markdown(), ""]
    for m, r in results["methods"].items():
        if "attribution" not in r:
            continue
        lines += [f"## {m}: share of map mass per lead and wave (%)", "",
                  f"![attribution]({m.replace('+', 'p')}/attribution.png)", ""]
        for group in sorted(r["attribution"]["group"].unique()):
            lines += [f"### {group}", "", (attr.pivot(r["attribution"], group) * 100).round(1)
                      .to_markdown(), "", "enrichment (1 = uniform):", "",
                      attr.pivot(r["attribution"], group, "enrichment").round(2).to_markdown(),
                      ""]
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(lines))
    serial = {k: v for k, v in results.items() if k not in ("mask_attribution", "methods")}
    serial["methods"] = {m: {k: v for k, v in r.items() if k != "attribution"}
                         for m, r in results["methods"].items()}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(serial, f, indent=1, default=str)
