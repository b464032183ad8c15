# A stop during the boot (issue 15), sourced by tuning.sh while tutord is stopped and its
# [tuning] stop_units (dummy-a, dummy-b) are configured. `systemctl stop tutord` during the
# boot benchmark, and again during a model load, must end tutord within 5 s (not wait for the
# boot, nor for systemd's SIGKILL), with the units it stopped running again and the journal
# saying why. Uses run.sh's cx/ok/fail and tuning.sh's unit_state/wait_state/expect_state.

stop_during() {  # WHAT STATUS_TEXT
    local what=$1 want=$2 st=
    local since i t0 took journal
    since=$(cx date '+%Y-%m-%d %H:%M:%S')
    cx systemctl reset-failed tutord >/dev/null 2>&1
    cx systemctl start --no-block tutord
    for i in $(seq 600); do
        st=$(cx systemctl show -p StatusText --value tutord 2>/dev/null)
        [ "$st" = "$want" ] && break
        sleep 0.05
    done
    if [ "$st" != "$want" ]; then
        fail "stop during $what: tutord never said \"$want\" (last: \"$st\")"
        cx systemctl stop tutord >/dev/null 2>&1
        return
    fi
    expect_state dummy-a inactive "stopped by tutord's tuning before the $what"
    t0=$(date +%s%N)
    cx timeout 30 systemctl stop tutord >/dev/null 2>&1
    took=$(( ($(date +%s%N) - t0) / 1000000 ))
    st=$(unit_state tutord)
    if [ "$st" != active ] && [ "$took" -lt 5000 ]; then
        ok "systemctl stop during the $what: tutord $st after $took ms"
    else
        fail "systemctl stop during the $what: tutord $st after $took ms (expected inactive within 5000 ms)"
    fi
    wait_state dummy-a active
    expect_state dummy-a active "started again after a stop during the $what"
    expect_state dummy-b active "started again after a stop during the $what"
    journal=$(tutord_journal --since "$since")
    for w in "SIGTERM during boot: the boot ends here" "tuning undone" "tutord stopped"; do
        if printf '%s\n' "$journal" | grep -qF "$w"; then
            ok "journal after a stop during the $what: $(printf '%s\n' "$journal" | grep -F "$w" | head -n1 | cut -c1-160)"
        else
            fail "journal after a stop during the $what lacks \"$w\""
        fi
    done
}

# An 8 s benchmark that the cache cannot answer (max_age_days = 0).
printf '[bench]\nbudget_ms = 8000\nmax_age_days = 0\n' |
    cx sh -c 'cat >/etc/tutord/tutord.toml.d/65-stop-test.toml'
stop_during "boot benchmark" "Measuring memory bandwidth"
cx rm -f /etc/tutord/tutord.toml.d/65-stop-test.toml

# A model load 4 s longer than it is (the worker's slow-load test fault).
if [ -x "$BINDIR/tutord-engine" ] && [ -n "${TUTORD_NSPAWN_MODEL:-}" ] && [ -z "${TUTORD_NSPAWN_DEB:-}" ]; then
    printf '[llm]\nmodel = "/usr/share/tutord-test/model.gguf"\n' |
        cx sh -c 'cat >/etc/tutord/tutord.toml.d/65-stop-test.toml'
    printf '[Service]\nEnvironment=TUTORD_TEST_FAULT=slow-load\n' |
        cx sh -c 'mkdir -p /run/systemd/system/tutord.service.d && cat >/run/systemd/system/tutord.service.d/65-slow-load.conf'
    cx systemctl daemon-reload
    stop_during "model load" "Loading the language model"
    cx rm -f /etc/tutord/tutord.toml.d/65-stop-test.toml /run/systemd/system/tutord.service.d/65-slow-load.conf
    cx systemctl daemon-reload
elif [ -n "${TUTORD_NSPAWN_DEB:-}" ]; then
    say "stop during a model load: checked by the binary-mode run (tests/systemd_nspawn.rs), not in package mode"
else
    fail "stop during a model load not checked: it needs BINDIR/tutord-engine and TUTORD_NSPAWN_MODEL"
fi
