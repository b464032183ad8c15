# Watchdog checks (issue 8), sourced by run.sh after the tuning checks, with tutord stopped.
# Uses run.sh's cx/ok/fail/say and tuning.sh's main_pid/unit_state/tutord_journal.
# The test-only fault switch TUTORD_TEST_FAULT=hang-engine makes the engine worker hang once
# the model is loaded (no heartbeat, no answer). tutord's supervisor kills it and starts
# another, which hangs too; tutord then stops pinging the watchdog, and systemd kills and
# restarts it after the unit's own WatchdogSec= (30 s): about a minute in all.

if [ ! -x "$BINDIR/tutord-engine" ] || [ -z "${TUTORD_NSPAWN_MODEL:-}" ] || [ -n "${TUTORD_NSPAWN_DEB:-}" ]; then
    say "watchdog checks skipped: they need BINDIR/tutord-engine and TUTORD_NSPAWN_MODEL (not in package mode)"
else
    printf '[llm]\nmodel = "/usr/share/tutord-test/model.gguf"\nmax_tokens = 8\n' |
        cx sh -c 'mkdir -p /etc/tutord/tutord.toml.d && cat >/etc/tutord/tutord.toml.d/70-watchdog-test.toml'
    printf '[Service]\nEnvironment=TUTORD_TEST_FAULT=hang-engine\n' |
        cx sh -c 'mkdir -p /run/systemd/system/tutord.service.d && cat >/run/systemd/system/tutord.service.d/70-hang-engine.conf'
    cx systemctl daemon-reload
    cx systemctl reset-failed tutord >/dev/null 2>&1
    since=$(cx date '+%Y-%m-%d %H:%M:%S')
    if out=$(cx timeout 120 systemctl start tutord 2>&1); then
        wdog=$(cx systemctl show -p WatchdogUSec --value tutord)
        ok "tutord started with a hanging engine worker (TUTORD_TEST_FAULT=hang-engine, WatchdogUSec=$wdog)"
    else
        fail "systemctl start tutord with the hang fault: $out"
    fi
    pid=$(main_pid)
    case "$(tutord_journal --since "$since")" in
        *"model /usr/share/tutord-test/model.gguf loaded"*) ok "the engine worker loaded the model in the container" ;;
        *) fail "the engine worker did not load /usr/share/tutord-test/model.gguf" ;;
    esac
    # Hang 1 at ~10 s, hang 2 at ~22 s, then WatchdogSec (30 s) without a ping, then RestartSec.
    wd_t0=$(date +%s)
    restarted=
    for i in $(seq 150); do
        now=$(main_pid)
        if [ -n "$now" ] && [ "$now" != 0 ] && [ "$now" != "$pid" ]; then restarted=$now; break; fi
        sleep 1
    done
    journal=$(cx journalctl -u tutord --since "$since" --no-pager -o cat 2>/dev/null)
    if [ -n "$restarted" ]; then
        ok "systemd restarted tutord $(( $(date +%s) - wd_t0 )) s after its start (pid $pid → $restarted)"
    else
        fail "tutord (pid $pid) was not restarted within 150 s (state $(unit_state tutord))"
    fi
    for want in "no heartbeat for 10s: killed it" "liveness check failed, not pinging the watchdog" "Watchdog timeout"; do
        if printf '%s\n' "$journal" | grep -qF "$want"; then
            ok "journal: $(printf '%s\n' "$journal" | grep -F "$want" | head -n1 | cut -c1-200)"
        else
            fail "journal lacks \"$want\""
        fi
    done
    cx systemctl stop tutord >/dev/null 2>&1
    cx rm -f /etc/tutord/tutord.toml.d/70-watchdog-test.toml /run/systemd/system/tutord.service.d/70-hang-engine.conf
    cx systemctl daemon-reload
fi
