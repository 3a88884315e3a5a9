#!/bin/bash
# Device preview: every DBSCAN and region fold of world 0 in parallel, one CPU thread each.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
W=$PWD/.dev/long/seed0; R=/tmp/long_out; mkdir -p $R $W/logs
for sf in dbscan_256m:0 dbscan_256m:1 dbscan_256m:2 dbscan_256m:3 dbscan_256m:4 region:0 region:1 region:2 region:3; do
  s=${sf%:*}; f=${sf#*:}
  python3 .dev/long/fold.py $W $R $s $f > $W/logs/${s}_$f.log 2>&1 &
done
wait
ls $R; for f in $W/logs/*.log; do echo "== $f"; tail -n 2 $f | cut -c1-200; done
cd $R && tar czf $OUT/long_p30.tgz *.parquet *.json
