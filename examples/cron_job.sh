#!/bin/sh
# Nightly clustering job for cron, Airflow (BashOperator) or Slurm (sbatch).
#
#   0 2 * * *  /opt/jobs/cron_job.sh /data/embeddings.zarr /data/clusters >> /var/log/kmeans.log 2>&1
#
# The fit state is checkpointed after every iteration: if the job is killed
# (node failure, SIGKILL, time limit), the next run of the same command resumes
# where it stopped and produces the same model as an uninterrupted run.
set -u

INPUT=${1:?usage: cron_job.sh INPUT.zarr OUTDIR}
OUTDIR=${2:?usage: cron_job.sh INPUT.zarr OUTDIR}
RUN=$(date +%Y-%m-%d)

daskmeans fit "$INPUT" --k 64 --seed 0 --max-iter 300 \
    --out "$OUTDIR/$RUN" --checkpoint "$OUTDIR/.checkpoint-$RUN"
status=$?

case $status in
    0) rm -rf "$OUTDIR/.checkpoint-$RUN"
       ln -sfn "$RUN" "$OUTDIR/latest" ;;                 # model.json, labels.zarr, report.json
    2) echo "kmeans: bad input or usage; fix the job, do not retry" >&2 ;;
    1) echo "kmeans: failed inside daskmeans (the line above says why; add --verbose for" \
            "the traceback); the next run resumes from the checkpoint" >&2 ;;
    *) echo "kmeans: stopped with status $status (130/143: interrupted); the next run" \
            "resumes from the checkpoint" >&2 ;;
esac
exit $status
