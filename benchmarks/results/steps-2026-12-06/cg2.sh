#!/bin/bash
# usage: cg2.sh TREE SCRIPT ARGS... (last arg reps replaced by 50 and 250) -> instructions per rep
tree=$1; script=$2; shift 2
. /work/main/.venv/bin/activate
cd /work/$tree
for r in 50 250; do
  PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg2.$tree.$r.$$ python $script $r "$@" >/dev/null 2>&1
  eval "ir$r=$(callgrind_annotate /tmp/cg2.$tree.$r.$$ 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')"
  rm -f /tmp/cg2.$tree.$r.$$
done
echo "$tree $script kIr/rep $(( (ir250 - ir50) / 200 / 1000 ))"
