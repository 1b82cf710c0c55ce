#!/bin/bash
. /work/main/.venv/bin/activate
b=$1; R=$2; N=$3
rm -f /tmp/pP/s2_old_$b.txt /tmp/pP/s2_new_$b.txt
for r in $(seq $R); do
  if (( r % 2 )); then order="old new"; else order="new old"; fi
  for k in $order; do
    if [ $k = old ]; then p=/tmp/pP/mainwt; else p=/work/wt-P; fi
    PYTHONPATH=$p python /tmp/pP/steptime.py $N $b >> /tmp/pP/s2_${k}_$b.txt
  done
done
python - <<PY
import json, numpy as np
for k in ("old","new"):
    per=[np.median(json.loads(l)) for l in open(f"/tmp/pP/s2_{k}_$b.txt")]
    ts=[t for line in open(f"/tmp/pP/s2_{k}_$b.txt") for t in json.loads(line)]
    print(k, "batch $b", "median %.2f ms (per-process medians: %s)" % (np.median(ts)*1e3, " ".join("%.2f"%(p*1e3) for p in per)))
PY
