# Tuning checks (issue 5; issue 17's privileges), sourced by run.sh after the lifecycle
# checks, with tutord stopped. Uses run.sh's cx/ok/fail/say. Dummy "nonessential" services
# run in the container; root's configuration lists them for tutord-tuning.service to stop
# (plus a protected unit, an unknown unit and a CPU that does not exist: each must give a
# warning while tutord keeps serving). Then:
#   a process running as tutord can neither create a transient unit (systemd 257 asks polkit
#   with the unit's name) nor start or stop any unit but tutord's own helpers;
#   starting tutord stops the dummies (through root's helper) and nothing protected or
#   unlisted; every tutord thread has the configured affinity; `systemctl stop tutord`
#   starts them again; kill -9 + the automatic restart reconciles from the store; kill -9 +
#   `systemctl stop tutord` restores them (StopPropagatedFrom=).

unit_state() { cx systemctl is-active "$1" 2>/dev/null; }
main_pid() { cx systemctl show -p MainPID --value tutord; }
# wait_state UNIT STATE: up to 10 s
wait_state() {
    local i
    for i in $(seq 100); do [ "$(unit_state "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}
expect_state() {  # UNIT STATE WHY
    local st; st=$(unit_state "$1")
    if [ "$st" = "$2" ]; then ok "$1 is $2 ($3)"; else fail "$1 is $st, expected $2 ($3)"; fi
}
tutord_journal() { cx journalctl -u tutord --no-pager -o cat "$@" 2>/dev/null; }
# Waits until tutord is active with a new main PID (not $1).
wait_restarted() {
    local i pid
    for i in $(seq 150); do
        pid=$(main_pid)
        if [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$1" ] && [ "$(unit_state tutord)" = active ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# The last CPU of the machine: a configured placement that differs from "all".
last_cpu=$(( $(nproc --all) - 1 ))

for u in dummy-a dummy-b dummy-idle dummy-unlisted; do
    cat >"$WORK/$u.service" <<EOT
[Unit]
Description=nonessential dummy $u (tutord tuning test)
[Service]
ExecStart=/bin/sleep infinity
EOT
    cx sh -c "cat >/etc/systemd/system/$u.service" <"$WORK/$u.service"
done
# dummy-a holds 64 MiB (a shell variable), so that stopping it frees memory worth logging.
cat >"$WORK/dummy-a.service" <<'EOT'
[Unit]
Description=nonessential dummy holding 64 MiB (tutord tuning test)
[Service]
ExecStart=/bin/sh -c 'x=$$(head -c 67108864 /dev/zero | tr "\\000" a); sleep infinity'
EOT
cx sh -c "cat >/etc/systemd/system/dummy-a.service" <"$WORK/dummy-a.service"
cat >"$WORK/50-tuning-test.toml" <<EOT
[tuning]
stop_units = ["dummy-a", "dummy-b.service", "dummy-idle.service", "dbus.service", "no-such-unit.service"]
cpus = [$last_cpu, 999]
thermal_interval_s = 1
EOT
cx sh -c 'mkdir -p /etc/tutord/tutord.toml.d && cat >/etc/tutord/tutord.toml.d/50-tuning-test.toml' <"$WORK/50-tuning-test.toml"
cx systemctl daemon-reload
if cx systemctl start dummy-a dummy-b dummy-unlisted; then
    ok "dummy nonessential services running (dummy-a dummy-b dummy-unlisted; dummy-idle stays stopped)"
else
    fail "cannot start the dummy services"
fi
if cx test -f /usr/share/polkit-1/rules.d/50-tutord.rules && cx test -f /usr/lib/systemd/system/tutord-tuning.service &&
   cx sh -c 'command -v /usr/lib/polkit-1/polkitd >/dev/null'; then
    ok "polkitd, tutord's polkit rule and tutord-tuning.service are installed"
else
    fail "polkitd, /usr/share/polkit-1/rules.d/50-tutord.rules or tutord-tuning.service missing (tests/nspawn/packages, run.sh binds)"
fi

# ---- no path from uid tutord to root (issue 17): as user tutord, over systemd's D-Bus API
as_tutord() { cx setpriv --reuid=tutord --regid=tutord --clear-groups env -i PATH=/usr/bin:/bin "$@"; }
say "systemd $(cx systemctl --version | head -n1)"
cx rm -f /run/tutord-pwned
# StartTransientUnit NAME: a oneshot service running `touch /run/tutord-pwned` as root.
transient() {
    as_tutord busctl call --allow-interactive-authorization=no org.freedesktop.systemd1 \
        /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StartTransientUnit \
        'ssa(sv)a(sa(sv))' "$1" fail 2 Type s oneshot ExecStart 'a(sasb)' 1 /bin/touch 2 /bin/touch /run/tutord-pwned false 0 2>&1
}
# The same call from root works: the refusals below are about who asks, not a bad call.
if out=$(cx busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
        StartTransientUnit 'ssa(sv)a(sa(sv))' tutord-test-transient.service fail 2 Type s oneshot \
        ExecStart 'a(sasb)' 1 /bin/true 1 /bin/true false 0 2>&1); then
    ok "root can create a transient unit with this call (control)"
else
    fail "the transient-unit call fails even for root: $out"
fi
for name in cups.service tutord-tuning.service tutord-nvpmodel@0.service tutord-memory@1024.service dummy-unlisted.service; do
    if out=$(transient "$name"); then
        fail "user tutord created a transient unit $name: $out"
    elif printf '%s' "$out" | grep -qiE 'denied|authenticat|exists|already loaded'; then
        ok "user tutord cannot create a transient $name: $(oneline "$out" | cut -c1-160)"
    else
        fail "the transient $name failed for another reason: $out"
    fi
done
sleep 0.5
if cx test -e /run/tutord-pwned; then fail "a transient unit ran a command as root"; else ok "no command ran as root"; fi
for call in "StartUnit dummy-unlisted.service" "StopUnit dbus.service" "StopUnit dummy-a.service"; do
    if out=$(as_tutord busctl call --allow-interactive-authorization=no org.freedesktop.systemd1 \
            /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager ${call% *} ss "${call#* }" replace 2>&1); then
        fail "user tutord may $call: $out"
    else
        ok "user tutord may not $call: $(oneline "$out" | cut -c1-120)"
    fi
done
expect_state dummy-a active "untouched by the refused call"

# ---- start: the dummies stop, protected and refused ones keep running
since=$(cx date '+%Y-%m-%d %H:%M:%S')
# Each check starts tutord afresh: clear systemd's start counter (since systemd 255 it survives
# daemon-reload), so that the start limit counts no test's earlier starts.
cx systemctl reset-failed tutord >/dev/null 2>&1
if out=$(cx timeout 60 systemctl start tutord 2>&1); then
    ok "tutord started with [tuning] stop_units and cpus = [$last_cpu, 999]"
else
    fail "systemctl start tutord with tuning: $out"
fi
expect_state tutord active "a bad tuning entry is a warning, not a failure"
expect_state dummy-a inactive "stopped by tutord"
expect_state dummy-b inactive "stopped by tutord"
expect_state dummy-idle inactive "was not running: left alone"
expect_state dbus active "protected"
expect_state dummy-unlisted active "not listed"
expect_state tutord-tuning active "started by tutord: root's side of tuning"
journal=$(tutord_journal --since "$since")
for want in "dbus.service is protected" "no-such-unit.service does not exist" \
            "CPU 999 does not exist" "stopped 2 units (dummy-a.service dummy-b.service)" "MemAvailable" \
            "GB/s, after"; do
    if printf '%s\n' "$journal" | grep -qF "$want"; then
        ok "journal: $(printf '%s\n' "$journal" | grep -F "$want" | head -n1 | cut -c1-220)"
    else
        fail "journal lacks \"$want\""
    fi
done
ids=$(cx journalctl -u tutord --since "$since" -o export --no-pager 2>/dev/null | grep -a '^MESSAGE_ID=' | sort -u | tr '\n' ' ')
case "$ids" in
    *4f18b8b12da843b28a6b53ca70b540af*) ok "journal has TUNING_APPLIED (4f18b8b1...)" ;;
    *) fail "no TUNING_APPLIED MESSAGE_ID in the journal ($ids)" ;;
esac
# The benchmark (before and after tuning) and the plan (issue 4).
for id in 81f33183ab7c44a3bbdaa986a6c83be0:BENCHMARKED 787cdaa98af248aabd9aa4681d926c6a:PLANNED; do
    case "$ids" in
        *"${id%%:*}"*) ok "journal has ${id##*:} (${id:0:8}...)" ;;
        *) fail "no ${id##*:} MESSAGE_ID in the journal ($ids)" ;;
    esac
done

# ---- affinity: every thread of tutord on the configured CPU
pid=$(main_pid)
lists=$(cx sh -c "for s in /proc/$pid/task/*/status; do grep '^Cpus_allowed_list' \$s | cut -f2; done" | sort | uniq -c | tr -s ' \n' ' ')
nthreads=$(cx sh -c "ls /proc/$pid/task | wc -l")
if [ -n "$lists" ] && [ "$(cx sh -c "for s in /proc/$pid/task/*/status; do grep '^Cpus_allowed_list' \$s | cut -f2; done" | sort -u)" = "$last_cpu" ]; then
    ok "all $nthreads threads of tutord (pid $pid) have Cpus_allowed_list $last_cpu"
else
    fail "tutord's threads' Cpus_allowed_list: $lists (expected all $last_cpu)"
fi

# ---- D-Bus and tutorctl
if out=$(cx tutorctl tuning 2>&1); then
    printf '%s\n' "$out" | sed 's/^/  tutorctl tuning: /'
    if printf '%s\n' "$out" | grep -q "dummy-a.service dummy-b.service" &&
       printf '%s\n' "$out" | grep -q "all on CPUs $last_cpu"; then
        ok "tutorctl tuning shows the stopped units and the affinity"
    else
        fail "tutorctl tuning does not show the stopped units and the affinity"
    fi
else
    fail "tutorctl tuning: $out"
fi

# ---- stop: the dummies run again
if out=$(cx timeout 60 systemctl stop tutord 2>&1); then ok "systemctl stop tutord"; else fail "systemctl stop tutord: $out"; fi
wait_state dummy-a active
expect_state dummy-a active "started again when tutord stopped"
expect_state dummy-b active "started again when tutord stopped"
expect_state dummy-idle inactive "never touched"
case "$(tutord_journal --since "$since")" in
    *"tuning undone: start dummy-b.service, start dummy-a.service"*) ok "journal: tuning undone, newest first" ;;
    *) fail "journal lacks 'tuning undone: start dummy-b.service, start dummy-a.service'" ;;
esac

# ---- kill -9, then systemd's automatic restart (Restart=on-failure): reconciled, re-tuned
cx systemctl reset-failed tutord >/dev/null 2>&1
cx systemctl start tutord >/dev/null 2>&1
wait_state dummy-a inactive
pid=$(main_pid)
since=$(cx date '+%Y-%m-%d %H:%M:%S')
cx systemctl kill --kill-who=main --signal=SIGKILL tutord
if wait_restarted "$pid"; then
    ok "tutord restarted by systemd after kill -9 (pid $pid → $(main_pid))"
else
    fail "tutord did not come back after kill -9 (state $(unit_state tutord))"
fi
case "$(tutord_journal --since "$since")" in
    *"left 1 tuning changes in place"*"undid 1"*) ok "journal: the restart undid the killed run's change (the helper) and tuned anew" ;;
    *) fail "journal lacks the reconcile message after kill -9" ;;
esac
expect_state dummy-a inactive "stopped again through the restarted tutord"

# ---- kill -9, no restart: `systemctl stop tutord` stops the helper too, which restores them
pid=$(main_pid)
cx systemctl kill --kill-who=main --signal=SIGKILL tutord
for i in $(seq 50); do [ "$(unit_state tutord)" != active ] && break; sleep 0.1; done
cx systemctl stop tutord >/dev/null 2>&1   # cancels the automatic restart
wait_state dummy-a active
expect_state tutord-tuning inactive "stopped with tutord (StopPropagatedFrom=)"
expect_state dummy-a active "restored by the helper's stop, without tutord"
expect_state dummy-b active "restored by the helper's stop, without tutord"
# The killed run's journal row is reconciled at the next start, with tuning off: no error.
since=$(cx date '+%Y-%m-%d %H:%M:%S')
printf '[tuning]\nmode = "off"\n' | cx sh -c 'cat >/etc/tutord/tutord.toml.d/60-tuning-off.toml'
cx systemctl reset-failed tutord >/dev/null 2>&1
if out=$(cx timeout 60 systemctl start tutord 2>&1); then ok "tutord started with [tuning] mode = off"; else fail "start with mode off: $out"; fi
case "$(tutord_journal --since "$since")" in
    *"left 1 tuning changes in place"*"undid 1"*) ok "journal: the killed run's change reconciled at the next start" ;;
    *) fail "journal lacks the reconcile message with tuning off" ;;
esac
expect_state dummy-a active "tuning off stops nothing"
expect_state tutord-tuning inactive "tuning off starts no helper"
cx systemctl stop tutord >/dev/null 2>&1
cx rm -f /etc/tutord/tutord.toml.d/60-tuning-off.toml

# ---- the Jetson helpers under their sandbox (issue 17): stand-in nvpmodel and
# jetson_clocks that log their arguments and write where the real ones do
cx sh -c 'mkdir -p /usr/sbin /var/lib/nvpmodel && cat >/usr/sbin/nvpmodel && chmod 755 /usr/sbin/nvpmodel' <<'EOT'
#!/bin/sh
# stand-in for NVIDIA's nvpmodel (tests/nspawn/tuning.sh)
if [ "$1" = -q ]; then echo "NV Power Mode: 15W"; echo 1; exit 0; fi
echo "$*" >>/var/lib/nvpmodel/calls
EOT
cx systemctl daemon-reload
if cx systemctl start tutord-nvpmodel@7.service && [ "$(cx cat /var/lib/nvpmodel/calls)" = "-m 7" ]; then
    ok "tutord-nvpmodel@7 ran 'nvpmodel -m 7' in its sandbox"
else
    fail "tutord-nvpmodel@7: $(cx systemctl status tutord-nvpmodel@7.service 2>&1 | tail -n 5 | tr '\n' ' ')"
fi
cx systemctl stop tutord-nvpmodel@7.service
case "$(cx cat /var/lib/nvpmodel/calls | tail -n1)" in
    "-m 1") ok "stopping it restored the previous mode (nvpmodel -m 1)" ;;
    *) fail "stop did not restore the previous mode: $(cx cat /var/lib/nvpmodel/calls | tr '\n' ' ')" ;;
esac
if cx systemctl start tutord-nvpmodel@7x.service 2>/dev/null; then
    fail "a non-numeric power mode instance started"
else
    ok "a non-numeric power mode instance is refused"
fi
cx rm -rf /usr/sbin/nvpmodel /var/lib/nvpmodel
cx systemctl daemon-reload

# ---- a stop during the boot (issue 15), with the same units to stop
# shellcheck source=tests/nspawn/stop.sh
source "$HERE/stop.sh"
cx rm -f /etc/tutord/tutord.toml.d/50-tuning-test.toml
