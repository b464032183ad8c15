# Crash-loop checks (issue 17), sourced by run.sh with tutord stopped. Uses run.sh's
# cx/ok/fail/say. tutord pointed at a bus that does not exist exits 69 at once; systemd
# restarts it with the unit's back-off (RestartSec=2s, RestartSteps=6, RestartMaxDelaySec=5min):
# each wait longer than the last, not a restart every 2 s for ever.

printf '[Service]\nEnvironment=DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/no-such-bus\n' |
    cx sh -c 'mkdir -p /run/systemd/system/tutord.service.d && cat >/run/systemd/system/tutord.service.d/70-no-bus.conf'
cx systemctl daemon-reload
cx systemctl reset-failed tutord >/dev/null 2>&1
since=$(cx date '+%Y-%m-%d %H:%M:%S')
cx systemctl start --no-block tutord
# Starts at 0, ~2, ~6.6, ~17 s: four starts within 30 s.
starts=()
for _ in $(seq 60); do
    mapfile -t starts < <(cx journalctl -u tutord --since "$since" --no-pager -o short-unix 2>/dev/null |
        awk '/Starting tutord.service/ {print $1}')
    [ "${#starts[@]}" -ge 4 ] && break
    sleep 1
done
cx systemctl stop tutord >/dev/null 2>&1
if [ "${#starts[@]}" -ge 4 ]; then
    gaps=$(awk -v a="${starts[0]}" -v b="${starts[1]}" -v c="${starts[2]}" -v d="${starts[3]}" \
        'BEGIN { printf "%.1f %.1f %.1f", b - a, c - b, d - c }')
    read -r g1 g2 g3 <<<"$gaps"
    if awk -v g1="$g1" -v g2="$g2" -v g3="$g3" 'BEGIN { exit !(g2 > g1 * 1.5 && g3 > g2 * 1.5) }'; then
        ok "a crash loop backs off: restarts after $g1 s, $g2 s, $g3 s (exit 69, no bus)"
    else
        fail "restarts after $g1 s, $g2 s, $g3 s: not backing off (RestartSteps=, RestartMaxDelaySec=)"
    fi
else
    fail "expected 4 starts of a crash-looping tutord within 60 s, saw ${#starts[@]}"
fi
limit=$(cx systemctl show -p StartLimitBurst -p StartLimitIntervalUSec --value tutord | tr '\n' ' ')
case "$limit" in
    "1h 12 "*) ok "start limit: 12 starts per hour, then the unit stays failed (visible, not a silent loop)" ;;
    *) fail "start limit is '$limit', expected '12 1h'" ;;
esac
cx rm -f /run/systemd/system/tutord.service.d/70-no-bus.conf
cx systemctl daemon-reload
cx systemctl reset-failed tutord >/dev/null 2>&1
