# The training instance's job (its user data, after the settings the launch writes above this line):
# set up, train with a hard time limit, leave the log and a result, power off. The instance is launched
# with shutdown behaviour "terminate", so powering off ends it; a second timer powers it off even if
# this script hangs, and the Airflow task watches both the result and the instance's state.
: "${SETUP:?}" "${WHEELS:?}" "${WHEEL:?}" "${PY:?}" "${RESULT:?}" "${LOG_URI:?}" "${HOURS:?}" "${ARGS[0]:?}"
shutdown -h "+$((HOURS * 60 + 20))"
LOG=/var/log/deeploc-train.log
touch "$LOG"
# The log reaches the lake every few minutes, not only at the end: a lost instance keeps what it wrote.
(while sleep 180; do aws s3 cp --quiet "$LOG" "$LOG_URI" || true; done) &
syncer=$!
# A spot instance gets a two-minute notice before it is reclaimed (instance metadata, IMDSv2): training
# is told (SIGTERM), keeps a checkpoint of where it stopped and records a result worth another try.
imds=http://169.254.169.254/latest
(while sleep 5; do
   token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$imds/api/token") || continue
   if curl -sf -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/spot/instance-action" > /dev/null; then
     echo "deeploc: spot interruption notice; stopping training" >> "$LOG"
     pkill -TERM -f "deeploc.step" || true
     break
   fi
 done) &
watcher=$!
(
  set -euxo pipefail
  aws s3 cp "$SETUP" /tmp/deeploc-node-setup.sh
  bash /tmp/deeploc-node-setup.sh "$WHEELS" "$WHEEL" "$PY" gpu
  timeout --kill-after=5m "${HOURS}h" "$PY" -m deeploc.step "$RESULT" "${ARGS[@]}"
) >> "$LOG" 2>&1
rc=$?
kill "$syncer" "$watcher" 2> /dev/null || true
aws s3 cp "$LOG" "$LOG_URI" || true
if ! aws s3 ls "$RESULT" > /dev/null; then
  # Set-up failed, or the time limit (exit 124) stopped the run before it could say so itself.
  printf '{"ok": false, "terminal": %s, "error": "the instance job ended with exit status %s%s"}' \
    "$([ "$rc" = 124 ] && echo true || echo false)" "$rc" \
    "$([ "$rc" = 124 ] && echo ' (the hard time limit)')" | aws s3 cp - "$RESULT"
fi
shutdown -h now
