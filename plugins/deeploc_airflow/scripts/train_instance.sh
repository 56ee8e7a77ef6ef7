# The training instance's job (its user data, after the settings the launch writes above this line):
# set up, train with a hard time limit, leave the log and a result, power off. The instance is launched
# with shutdown behaviour "terminate", so powering off ends it; a second timer powers it off even if
# this script hangs, and the Airflow task watches both the result and the instance's state.
: "${SETUP:?}" "${CONSTRAINTS:?}" "${WHEEL:?}" "${PY:?}" "${RESULT:?}" "${LOG_URI:?}" "${HOURS:?}" "${ARGS[0]:?}"
shutdown -h "+$((HOURS * 60 + 20))"
LOG=/var/log/deeploc-train.log
(
  set -euxo pipefail
  aws s3 cp "$SETUP" /tmp/deeploc-node-setup.sh
  bash /tmp/deeploc-node-setup.sh "$CONSTRAINTS" "$WHEEL" "$PY" gpu
  timeout --kill-after=5m "${HOURS}h" "$PY" -m deeploc.step "$RESULT" "${ARGS[@]}"
) > "$LOG" 2>&1
rc=$?
aws s3 cp "$LOG" "$LOG_URI" || true
if ! aws s3 ls "$RESULT" > /dev/null; then
  # Set-up failed, or the time limit (exit 124) stopped the run before it could say so itself.
  printf '{"ok": false, "terminal": %s, "error": "the instance job ended with exit status %s%s"}' \
    "$([ "$rc" = 124 ] && echo true || echo false)" "$rc" \
    "$([ "$rc" = 124 ] && echo ' (the hard time limit)')" | aws s3 cp - "$RESULT"
fi
shutdown -h now
