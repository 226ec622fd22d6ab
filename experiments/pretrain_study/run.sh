#!/usr/bin/env bash
# Pretraining study of issue 23 part 2: candidates (a), (b), (c), (d) at about the same number of
# optimizer steps (~675, batch 64; the shipped encoder: 450), each judged by the cross-fold
# linear probe on every fold's valid2 (the test folds are scored, report only).
# From the repository root:  bash experiments/pretrain_study/run.sh CV_RUN
# CV_RUN: the --out of `ecg-moco reproduce --flagfile=flags/ptbxl_mi_crossfold.flags` (its
# fold_*/manifest_with_splits.csv). Writes runs/pretrain_study/; ~2 h on 2 cores.
set -euo pipefail
CV_RUN=${1:?give the cross-fold run folder}
PY=${PY:-python}
S=runs/pretrain_study
mkdir -p $S
[ -f runs/ptbxl_pool_encoder/manifest.csv ] || $PY -m ecg_moco_tf.cli.main ptbxl \
    --ptbxl_root=../shared/data/ptbxl-subset --ptbxl_pool=../shared/data/ptbxl-pool \
    --ptbxl_pretrain_folds= --out=runs/ptbxl_pool_encoder/manifest.csv
[ -f $S/synth/manifest.csv ] || $PY -m ecg_moco_tf.cli.main synth --out=$S/synth \
    --num_patients=520 --seed=23
$PY experiments/pretrain_study/mix_manifest.py --pool=runs/ptbxl_pool_encoder/manifest.csv \
    --synth=$S/synth/manifest.csv --out=$S/mixed/manifest.csv
if [[ " ${CANDIDATES:-b_synthetic_then_real} " == *" b_synthetic_then_real "* ]]; then
    [ -f $S/synth_large/manifest.csv ] || $PY -m ecg_moco_tf.cli.main synth \
        --out=$S/synth_large --num_patients=5200 --seed=24
    $PY experiments/pretrain_study/mix_manifest.py --synth=$S/synth_large/manifest.csv \
        --out=$S/synth_large/pretrain_manifest.csv --seed=1
    [ -d $S/synth_large_shards ] || $PY -m ecg_moco_tf.cli.main convert \
        --manifest=$S/synth_large/pretrain_manifest.csv --out=$S/synth_large_shards
    [ -f $S/b_synthetic_stage/encoder.keras ] || $PY -m ecg_moco_tf.cli.main pretrain \
        --flagfile=experiments/pretrain_study/b_synthetic_stage.flags --overwrite \
        > $S/b_synthetic_stage.log 2>&1
fi
for c in ${CANDIDATES:-a_real_longer d_stronger_views c_real_synthetic_mixed b_synthetic_then_real}; do
    if [ ! -f $S/$c/encoder.keras ]; then
        $PY -m ecg_moco_tf.cli.main pretrain --flagfile=experiments/pretrain_study/$c.flags \
            --overwrite > $S/$c.log 2>&1
    fi
    [ -s $S/$c.probe.jsonl ] || $PY experiments/probe_crossfold.py --cv_run=$CV_RUN \
        --encoder=$S/$c/encoder.keras --random_seeds= > $S/$c.probe.jsonl 2> $S/$c.probe.err
done
