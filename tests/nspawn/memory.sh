# Memory limit checks (issue 17), sourced by run.sh after the tuning checks, with tutord
# stopped. Uses run.sh's cx/ok/fail/say and tuning.sh's as_tutord/tutord_journal.
# With a model loaded, tutord starts root's tutord-memory@<MiB>.service, which sets
# MemoryHigh=/MemoryMax= of tutord.service from the plan (src/tuning/memory.rs).

if [ ! -x "$BINDIR/tutord-engine" ] || [ -z "${TUTORD_NSPAWN_MODEL:-}" ] || [ -n "${TUTORD_NSPAWN_DEB:-}" ]; then
    say "memory limit checks skipped: they need BINDIR/tutord-engine and TUTORD_NSPAWN_MODEL (not in package mode)"
else
    printf '[llm]\nmodel = "/usr/share/tutord-test/model.gguf"\nmax_tokens = 8\n' |
        cx sh -c 'mkdir -p /etc/tutord/tutord.toml.d && cat >/etc/tutord/tutord.toml.d/70-memory-test.toml'
    cx systemctl set-property --runtime tutord.service MemoryHigh=infinity MemoryMax=infinity
    cx systemctl reset-failed tutord >/dev/null 2>&1
    since=$(cx date '+%Y-%m-%d %H:%M:%S')
    if out=$(cx timeout 120 systemctl start tutord 2>&1); then
        ok "tutord started with the model"
    else
        fail "systemctl start tutord with the model: $out"
    fi
    line=
    for _ in $(seq 20); do
        line=$(tutord_journal --since "$since" | grep -m1 'memory limit for the plan' || true)
        [ -n "$line" ] && break
        sleep 0.5
    done
    high=$(cx systemctl show -p MemoryHigh --value tutord)
    max=$(cx systemctl show -p MemoryMax --value tutord)
    if [ -n "$line" ] && [ "$high" != infinity ] && [ "$max" != infinity ] && [ "$high" -le "$max" ] &&
        printf '%s' "$line" | grep -qF "MemoryHigh=$(( high >> 20 )) MiB, MemoryMax=$(( max >> 20 )) MiB"; then
        ok "tutord.service is limited from the plan: MemoryHigh=$high MemoryMax=$max; journal: $(printf '%s' "$line" | cut -c1-160)"
    else
        fail "memory limit: MemoryHigh=$high MemoryMax=$max, journal: '${line:-none}'; $(cx journalctl -u 'tutord-memory@*' --no-pager -o cat 2>&1 | tail -n 3 | tr '\n' ' ')"
    fi
    # The limit is tutord's own cgroup's: the kernel applies it where the container's cgroup2
    # tree has the memory controller. A host that keeps memory on cgroup v1 (the CI machines:
    # systemd 252 hybrid) gives the container none; systemd still records the limit (above).
    cg=$(cx systemctl show -p ControlGroup --value tutord)
    if ! cx grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        say "note: this container's cgroup2 tree has no memory controller (the host's memory controller is on cgroup v1): the kernel's memory.max is not checked here, on a board it is /sys/fs/cgroup$cg/memory.max"
    elif [ "$(cx cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null)" = "$max" ]; then
        ok "the kernel applies it: /sys/fs/cgroup$cg/memory.max = $max"
    else
        fail "/sys/fs/cgroup$cg/memory.max = '$(cx cat "/sys/fs/cgroup$cg/memory.max" 2>&1)', expected $max"
    fi
    # The instance is a number of MiB in range, checked by root's helper too.
    if out=$(cx systemctl start tutord-memory@10.service 2>&1); then
        fail "tutord-memory@10 (under 64 MiB) was applied"
    elif cx journalctl -u tutord-memory@10.service --no-pager -o cat | grep -q "under 64 MiB"; then
        ok "root's helper refuses a limit tutord could not start under (tutord-memory@10)"
    else
        fail "tutord-memory@10 failed without saying why: $out"
    fi
    if out=$(as_tutord busctl call --allow-interactive-authorization=no org.freedesktop.systemd1 \
            /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StopUnit ss tutord-memory@1024.service replace 2>&1); then
        fail "user tutord may stop tutord-memory@1024: $out"
    else
        ok "user tutord may start tutord-memory@<MiB> only, not stop it: $(oneline "$out" | cut -c1-100)"
    fi
    cx systemctl stop tutord >/dev/null 2>&1
    cx rm -f /etc/tutord/tutord.toml.d/70-memory-test.toml
    cx systemctl set-property --runtime tutord.service MemoryHigh=infinity MemoryMax=infinity
fi
